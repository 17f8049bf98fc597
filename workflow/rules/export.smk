rule export_npy:
    input:
        volume="results/resampled/{patient}.nii.gz",
        mask="results/lung_mask/{patient}.nii.gz",
    output:
        npy="results/npy/{patient}.npy",
    log:
        "results/logs/export_npy/{patient}.log",
    benchmark:
        "results/benchmarks/export_npy/{patient}.tsv"
    params:
        shape=config["export"]["shape"],
        margin_mm=config["export"]["margin_mm"],
        hu_window=config["export"]["hu_window"],
    resources:
        mem_mb=get_mem_mb(500, per_input_mb=30),
        runtime=10,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
