rule segment_lungs:
    input:
        volume="results/resampled/{patient}.nii.gz",
    output:
        mask="results/lung_mask/{patient}.nii.gz",
        labels="results/lung_mask/{patient}_labels.nii.gz",
        provenance="results/lung_mask/{patient}.json",
    log:
        "results/logs/segment_lungs/{patient}.log",
    benchmark:
        "results/benchmarks/segment_lungs/{patient}.tsv"
    params:
        backend=config["lung_mask"]["backend"],
        weights=config["lung_mask"]["weights"],
        force_cpu=config["lung_mask"]["force_cpu"],
        batch_size=config["lung_mask"]["batch_size"],
        threshold=get_threshold_params,
    # the threshold backend fills the two lungs in two processes
    threads: 2
    resources:
        gpu=1,
        # measured: about 70 MB of memory per MB of compressed resampled volume (threshold backend);
        # lungmask holds the network and a float copy of the volume besides
        mem_mb=get_mem_mb(1500 if config["lung_mask"]["backend"] == "threshold" else 4000, per_input_mb=100),
        runtime=get_runtime(10, per_input_mb=1 if config["lung_mask"]["backend"] == "threshold" else 5),
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


# Lobes for the severity read-out, only when a lobe model is configured (lung_mask.lobes.model).
if LOBE_MODEL:

    rule segment_lobes:
        input:
            volume="results/resampled/{patient}.nii.gz",
        output:
            lobes="results/lobes/{patient}.nii.gz",
            provenance="results/lobes/{patient}.json",
        log:
            "results/logs/segment_lobes/{patient}.log",
        benchmark:
            "results/benchmarks/segment_lobes/{patient}.tsv"
        params:
            model=LOBE_MODEL,
            weights=config["lung_mask"]["lobes"]["weights"],
            r231_weights=config["lung_mask"]["weights"],
            force_cpu=config["lung_mask"]["force_cpu"],
            batch_size=config["lung_mask"]["batch_size"],
        resources:
            gpu=1,
            # like lungmask R231 (one network), twice with the R231 fusion, whose post-processing
            # labels every lobe piece of the volume
            mem_mb=get_mem_mb(4000 if LOBE_MODEL == "LTRCLobes" else 6000, per_input_mb=100),
            runtime=get_runtime(10, per_input_mb=5 if LOBE_MODEL == "LTRCLobes" else 12),
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"


rule qc_montage:
    input:
        volume="results/resampled/{patient}.nii.gz",
        labels="results/lung_mask/{patient}_labels.nii.gz",
        provenance="results/lung_mask/{patient}.json",
    output:
        png=report(
            "results/qc/{patient}.png",
            caption="../report/qc_montage.rst",
            category="Lung mask QC",
            labels={"patient": "{patient}"},
        ),
    log:
        "results/logs/qc_montage/{patient}.log",
    benchmark:
        "results/benchmarks/qc_montage/{patient}.tsv"
    params:
        n_slices=config["qc"]["n_slices"],
    resources:
        mem_mb=get_mem_mb(500, per_input_mb=30),
        runtime=10,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
