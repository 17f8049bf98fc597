rule synth_patient:
    output:
        dicom=directory(f"{DEMO_DIR}/dicom/{{patient}}"),
        truth=f"{DEMO_DIR}/truth/{{patient}}.json",
        lung_truth=f"{DEMO_DIR}/truth/{{patient}}_lung.nii.gz",
        lesion_truth=f"{DEMO_DIR}/truth/{{patient}}_lesion.nii.gz",
        lobe_truth=f"{DEMO_DIR}/truth/{{patient}}_lobes.nii.gz",
    log:
        "results/logs/synth_patient/{patient}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule reject_sheet_row:
    output:
        marker="results/rejected/row{row}.txt",
    log:
        "results/logs/reject_sheet_row/row{row}.log",
    params:
        message=get_rejected_message,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
