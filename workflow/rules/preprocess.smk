rule dicom_to_hu:
    input:
        dicom="results/anonymized/{patient}",
        anonymize_summary="results/anonymized/{patient}.json",
        verified="results/verify/{patient}.json",
    output:
        volume="results/hu/{patient}.nii.gz",
        info="results/hu/{patient}.json",
        # resampled from the volume in memory, in the same job: one process per patient, not two
        resampled="results/resampled/{patient}.nii.gz",
    log:
        "results/logs/dicom_to_hu/{patient}.log",
    benchmark:
        "results/benchmarks/dicom_to_hu/{patient}.tsv"
    params:
        series_uid=get_series_override,
        min_slices=config["hu"]["min_slices"],
        max_slices=config["hu"]["max_slices"],
        spacing_mm=config["resample"]["spacing_mm"],
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
