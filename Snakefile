# covidct: chest CT DICOM -> anonymized DICOM -> HU volume -> resampled volume ->
# lung mask -> model-ready .npy, per patient. See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/anonymize.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/lungs.smk"
include: "workflow/rules/lung_eval.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/infection.smk"
include: "workflow/rules/severity.smk"
include: "workflow/rules/clinical.smk"


# Cheap cohort tables, plots and markers run where Snakemake runs, not as cluster jobs
# (severity_vs_score and severity_followup, which exist only for some sheets, say so in severity.smk).
localrules:
    all,
    reject_sheet_row,
    severity_cohort,
    lung_eval_table,
    summarize,


rule all:
    default_target: True
    input:
        get_final_output(),
