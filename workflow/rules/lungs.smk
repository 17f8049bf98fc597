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
    resources:
        gpu=1,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/segment_lungs.py"


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
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/qc_montage.py"
