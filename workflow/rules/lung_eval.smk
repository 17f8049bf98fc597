# Lung masks against reference contours, for patients whose sheet row names a lung_reference.
# The job reads the reference's path from the sheet (config["patients"]): a raw path may carry real
# identifiers, so Snakemake only sees its keyed hash (a changed path still re-runs the patient).
rule evaluate_lung_mask:
    input:
        labels="results/lung_mask/{patient}_labels.nii.gz",
    output:
        json="results/lung_eval/{patient}.json",
    log:
        "results/logs/evaluate_lung_mask/{patient}.log",
    benchmark:
        "results/benchmarks/evaluate_lung_mask/{patient}.tsv"
    params:
        reference_digest=get_lung_reference_digest,
        right_roi=config["lung_eval"]["right_roi"],
        left_roi=config["lung_eval"]["left_roi"],
        lesion_roi=config["lung_eval"]["lesion_roi"],
        contour_shift_mm=config["lung_eval"]["contour_shift_mm"],
    resources:
        mem_mb=get_mem_mb(2000, per_input_mb=50),  # the reference (not seen by Snakemake) is rasterized on the grid
        runtime=20,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule lung_eval_table:
    input:
        results=expand("results/lung_eval/{patient}.json", patient=LUNG_REFERENCED),
    output:
        csv=report("results/metrics/lung_eval.csv", caption="../report/lung_eval.rst", category="Lung mask QC"),
    log:
        "results/logs/lung_eval_table.log",
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
