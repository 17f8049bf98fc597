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


# The infection U-Net's training source when the config names none: synthetic phantoms (not demo patients).
rule synth_infection_training:
    output:
        dir=directory(INFECTION_DEMO_DIR),
    log:
        "results/logs/synth_infection_training.log",
    params:
        n=config["infection"]["demo_volumes"],
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
