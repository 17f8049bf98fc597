# One job per variant and fold of the U-Net's cross-validation, so that a workstation trains them side by side;
# on a cluster they share one group job with the final training (profiles/slurm).
rule cross_validate_infection_unet:
    input:
        sources_dirs=get_infection_source_dirs,
    output:
        dir=directory("results/models/infection_cv/{variant}_fold{fold}"),
    log:
        "results/logs/cross_validate_infection_unet/{variant}_fold{fold}.log",
    benchmark:
        "results/benchmarks/cross_validate_infection_unet/{variant}_fold{fold}.tsv"
    params:
        sources=INFECTION_SOURCES,
        infection=INFECTION_FOLD_PARAMS,
        spacing_mm=config["resample"]["spacing_mm"],
    wildcard_constraints:
        variant=r"[a-z_]+",
        fold=r"[0-9]+",
    priority: 10
    threads: 2
    resources:
        gpu=1,
        cpus_per_task=get_cpus,
        mem_mb=12000,
        runtime=INFECTION_RUN_MINUTES,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule train_infection_unet:
    input:
        sources_dirs=get_infection_source_dirs,
        fold_dirs=INFECTION_FOLD_DIRS,
    output:
        model="results/models/infection_unet.keras",
        sidecar="results/models/infection_unet.json",
        metrics="results/metrics/infection_unet.json",
        card="results/models/infection_unet.card.json",
        card_md="results/models/infection_unet.card.md",
    log:
        "results/logs/train_infection_unet.log",
    benchmark:
        "results/benchmarks/train_infection_unet.tsv"
    params:
        sources=INFECTION_SOURCES,
        infection=config["infection"],
        spacing_mm=config["resample"]["spacing_mm"],
    threads: 2
    resources:
        gpu=1,
        cpus_per_task=get_cpus,
        mem_mb=12000,
        runtime=INFECTION_RUN_MINUTES,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule evaluate_infection_unet:
    input:
        model="results/models/infection_unet.keras",
        sidecar="results/models/infection_unet.json",
    output:
        metrics="results/metrics/infection_unet_test.json",
    log:
        "results/logs/evaluate_infection_unet.log",
    params:
        images=lambda wildcards: config["infection"]["test"]["images"],
        masks=lambda wildcards: config["infection"]["test"]["masks"],
        labels=lambda wildcards: config["infection"]["test"].get("labels", "binary"),
        lungs=lambda wildcards: config["infection"]["test"].get("lungs"),
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule segment_infection:
    input:
        volume="results/resampled/{patient}.nii.gz",
        mask="results/lung_mask/{patient}.nii.gz",
        labels="results/lung_mask/{patient}_labels.nii.gz",
        model="results/models/infection_unet.keras",
        sidecar="results/models/infection_unet.json",
        card="results/models/infection_unet.card.json",
    output:
        mask="results/infection_mask/{patient}.nii.gz",
        types="results/infection_mask/{patient}_types.nii.gz",
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
        demo_patient=lambda wildcards: is_demo_patient(wildcards.patient),
        allow_synthetic=config["allow_synthetic_models"],
    resources:
        gpu=1,
        mem_mb=get_mem_mb(1500, per_input_mb=30),
        runtime=get_runtime(10, per_input_mb=1),
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
