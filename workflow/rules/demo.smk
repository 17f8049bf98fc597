rule synth_patient:
    output:
        dicom=directory(f"{DEMO_DIR}/dicom/{{patient}}"),
        truth=f"{DEMO_DIR}/truth/{{patient}}.json",
    log:
        "results/logs/synth_patient/{patient}.log",
    params:
        truth_dir=get_output_dir,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/synth_patient.py"


rule reject_sheet_row:
    output:
        "results/rejected/row{row}.txt",
    log:
        "results/logs/reject_sheet_row/row{row}.log",
    params:
        message=get_rejected_message,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/reject_sheet_row.py"
