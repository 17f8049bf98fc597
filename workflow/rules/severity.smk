# The clinical severity read-out of every patient (lobe or zone scores, PO, PHO, lesion types) and
# its cohort table and plots. Lobes come from segment_lobes (lungs.smk) when a lobe model is configured.
# Lesion types come from the infection U-Net's lesion-type map (1 ground-glass, 2 consolidation) when it has a
# lesion-type head; a binary U-Net writes an all-zero map, and the read-out then uses HU bands.
rule severity_readout:
    input:
        volume="results/resampled/{patient}.nii.gz",
        labels="results/lung_mask/{patient}_labels.nii.gz",
        infection="results/infection_mask/{patient}.nii.gz",
        types="results/infection_mask/{patient}_types.nii.gz",
        infection_info="results/infection_mask/{patient}.json",
        hu_info="results/hu/{patient}.json",
        lobes=get_lobe_map,
    output:
        json="results/severity/{patient}.json",
        png=report(
            "results/severity/{patient}.png",
            caption="../report/severity_panel.rst",
            category="Severity read-out",
            labels={"patient": "{patient}"},
        ),
    log:
        "results/logs/severity_readout/{patient}.log",
    benchmark:
        "results/benchmarks/severity_readout/{patient}.tsv"
    params:
        high_opacity_hu=config["severity"]["high_opacity_hu"],
        consolidation_above_hu=config["severity"]["consolidation_above_hu"],
        min_lesion_ml=config["severity"]["min_lesion_ml"],
    resources:
        # the volume and three maps in memory, a few masks of the lungs' box besides
        mem_mb=get_mem_mb(1000, per_input_mb=40),
        runtime=get_runtime(5, per_input_mb=0.2),
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule severity_cohort:
    input:
        readouts=expand("results/severity/{patient}.json", patient=PATIENTS),
    output:
        csv=report("results/severity/cohort.csv", caption="../report/severity_cohort.rst", category="Severity read-out"),
    log:
        "results/logs/severity_cohort.log",
    params:
        patients=get_severity_patients,
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


if HAS_SHEET_SCORES:

    localrules:
        severity_vs_score,

    rule severity_vs_score:
        input:
            table="results/severity/cohort.csv",
        output:
            png=report(
                "results/plots/cohort_po_vs_score.png",
                caption="../report/severity_vs_score.rst",
                category="Severity read-out",
            ),
        log:
            "results/logs/severity_vs_score.log",
        resources:
            mem_mb=1000,
            runtime=10,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"


if HAS_FOLLOW_UP:

    localrules:
        severity_followup,

    rule severity_followup:
        input:
            table="results/severity/cohort.csv",
        output:
            png=report(
                "results/plots/cohort_followup.png",
                caption="../report/severity_followup.rst",
                category="Severity read-out",
            ),
        log:
            "results/logs/severity_followup.log",
        resources:
            mem_mb=1000,
            runtime=10,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"
