rule anonymize_dicom:
    input:
        demo=get_demo_input,
    output:
        dicom=directory("results/anonymized/{patient}"),
        summary="results/anonymized/{patient}.json",
    log:
        "results/logs/anonymize_dicom/{patient}.log",
    benchmark:
        "results/benchmarks/anonymize_dicom/{patient}.tsv"
    # The job reads its raw folder from the sheet (config["patients"]); the sheet's own path is
    # not a param, so renaming or moving the sheet re-runs nothing. The folder's keyed hash is.
    params:
        raw_digest=get_raw_dicom_digest,
        allow_demo_key=lambda wildcards: is_demo_patient(wildcards.patient),
        key_file=config["anonymize"]["key_file"],
        dates=config["anonymize"]["dates"],
    # the files are anonymized and written by two processes
    threads: 2
    resources:
        mem_mb=get_mem_mb(1500),  # Snakemake does not see the raw folder: datasets are cached up to 512 MiB
        runtime=30,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule verify_anonymization:
    input:
        dicom="results/anonymized/{patient}",
    output:
        report="results/verify/{patient}.json",
    log:
        "results/logs/verify_anonymization/{patient}.log",
    benchmark:
        "results/benchmarks/verify_anonymization/{patient}.tsv"
    # The job reads its raw folder from the sheet (config["patients"]); the sheet's own path is
    # not a param, so renaming or moving the sheet re-runs nothing. The folder's keyed hash is.
    params:
        raw_digest=get_raw_dicom_digest,
    # the original and the anonymized folder are read at once, one process each
    threads: 2
    resources:
        mem_mb=get_mem_mb(1500),
        runtime=30,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
