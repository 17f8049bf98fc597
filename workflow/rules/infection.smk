rule synth_infection_training:
    output:
        directory(INFECTION_DEMO_DIR),
    log:
        "results/logs/synth_infection_training.log",
    params:
        n=config["infection"]["demo_volumes"],
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/synth_infection_training.py"


rule train_infection_unet:
    input:
        get_infection_source_dirs,
    output:
        model="results/models/infection_unet.keras",
        sidecar="results/models/infection_unet.json",
        metrics="results/metrics/infection_unet.json",
    log:
        "results/logs/train_infection_unet.log",
    benchmark:
        "results/benchmarks/train_infection_unet.tsv"
    params:
        sources=INFECTION_SOURCES,
        infection=config["infection"],
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/train_infection_unet.py"


rule evaluate_infection_unet:
    input:
        model="results/models/infection_unet.keras",
        sidecar="results/models/infection_unet.json",
    output:
        "results/metrics/infection_unet_test.json",
    log:
        "results/logs/evaluate_infection_unet.log",
    params:
        images=lambda wildcards: config["infection"]["test"]["images"],
        masks=lambda wildcards: config["infection"]["test"]["masks"],
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/evaluate_infection_unet.py"


rule segment_infection:
    input:
        volume="results/resampled/{patient}.nii.gz",
        mask="results/lung_mask/{patient}.nii.gz",
        labels="results/lung_mask/{patient}_labels.nii.gz",
        model="results/models/infection_unet.keras",
        sidecar="results/models/infection_unet.json",
    output:
        mask="results/infection_mask/{patient}.nii.gz",
        json="results/infection_mask/{patient}.json",
        png=report(
            "results/qc/{patient}_infection.png",
            caption="../report/infection_qc.rst",
            category="Infection QC",
            labels={"patient": "{patient}"},
        ),
    log:
        "results/logs/segment_infection/{patient}.log",
    benchmark:
        "results/benchmarks/segment_infection/{patient}.tsv"
    params:
        n_slices=config["qc"]["n_slices"],
    resources:
        gpu=1,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/segment_infection.py"
