rule dicom_to_hu:
    input:
        dicom="results/anonymized/{patient}",
        anonymize_summary="results/anonymized/{patient}.json",
        verified="results/verify/{patient}.json",
    output:
        volume="results/hu/{patient}.nii.gz",
        info="results/hu/{patient}.json",
    log:
        "results/logs/dicom_to_hu/{patient}.log",
    benchmark:
        "results/benchmarks/dicom_to_hu/{patient}.tsv"
    params:
        series_uid=get_series_override,
        min_slices=config["hu"]["min_slices"],
        max_slices=config["hu"]["max_slices"],
    # two processes decode the pixel data
    threads: 2
    resources:
        # the raw series is not an input Snakemake can size: enough for max_slices of 512 x 512
        mem_mb=get_mem_mb(2000 + config["hu"]["max_slices"] // 2),
        runtime=30,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule resample_volume:
    input:
        volume="results/hu/{patient}.nii.gz",
    output:
        volume="results/resampled/{patient}.nii.gz",
    log:
        "results/logs/resample_volume/{patient}.log",
    benchmark:
        "results/benchmarks/resample_volume/{patient}.tsv"
    params:
        spacing_mm=config["resample"]["spacing_mm"],
    resources:
        mem_mb=get_mem_mb(1000, per_input_mb=20),  # a .nii.gz holds about a third of its voxels' bytes
        runtime=10,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
