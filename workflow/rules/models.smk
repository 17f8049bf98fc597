# With `retrain: false` the data sets and models already under results/ are used as they are
# (common.smk checks that they exist): new patients are predicted, nothing is retrained.
if RETRAIN:

    rule build_hdf5:
        input:
            npy=get_labeled_npys,
        output:
            train="results/dataset/train.h5",
            val="results/dataset/val.h5",
            test="results/dataset/test.h5",
            split="results/dataset/split.tsv",
        log:
            "results/logs/build_hdf5.log",
        benchmark:
            "results/benchmarks/build_hdf5.tsv"
        params:
            patients=get_labeled_patients,
            val_fraction=config["split"]["val_fraction"],
            test_fraction=config["split"]["test_fraction"],
            salt=config["split"]["salt"],
            shape=config["export"]["shape"],
            hu_window=config["export"]["hu_window"],
            dtype=config["dataset"]["dtype"],
        resources:
            mem_mb=2000,  # streamed: one array at a time
            runtime=get_runtime(10, per_input_mb=0.05),
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"


    rule train_classifier:
        input:
            train_set="results/dataset/train.h5",
            val_set="results/dataset/val.h5",
            split="results/dataset/split.tsv",
        output:
            model="results/models/classifier.keras",
            sidecar="results/models/classifier.json",
            history="results/models/classifier_history.csv",
            metrics="results/metrics/classifier.json",
            card="results/models/classifier.card.json",
            card_md="results/models/classifier.card.md",
            training=report("results/plots/classifier_training.png", caption="../report/classifier_training.rst",
                            category="Classifier"),
            roc=report("results/plots/classifier_roc.png", caption="../report/classifier_roc.rst", category="Classifier"),
        log:
            "results/logs/train_classifier.log",
        benchmark:
            "results/benchmarks/train_classifier.tsv"
        params:
            train=config["train"],
            demo_patients=DEMO_LABELED,
        threads: 2
        resources:
            gpu=1,
            cpus_per_task=get_cpus,
            mem_mb=16000,
            runtime=720,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"


    rule train_scorer:
        input:
            train_set="results/dataset/train.h5",
            val_set="results/dataset/val.h5",
            split="results/dataset/split.tsv",
        output:
            model="results/models/scorer.keras",
            sidecar="results/models/scorer.json",
            history="results/models/scorer_history.csv",
            metrics="results/metrics/scorer.json",
            card="results/models/scorer.card.json",
            card_md="results/models/scorer.card.md",
            training=report("results/plots/scorer_training.png", caption="../report/scorer_training.rst",
                            category="Scorer"),
            scatter=report("results/plots/scorer_scatter.png", caption="../report/scorer_scatter.rst", category="Scorer"),
            confusion=report("results/plots/scorer_severity_confusion.png", caption="../report/scorer_confusion.rst",
                             category="Scorer"),
        log:
            "results/logs/train_scorer.log",
        benchmark:
            "results/benchmarks/train_scorer.tsv"
        params:
            train=config["train"],
            demo_patients=DEMO_LABELED,
        threads: 2
        resources:
            gpu=1,
            cpus_per_task=get_cpus,
            mem_mb=16000,
            runtime=720,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"


rule predict:
    input:
        npy=expand("results/npy/{patient}.npy", patient=PATIENTS),
        split="results/dataset/split.tsv",
        classifier="results/models/classifier.keras",
        classifier_sidecar="results/models/classifier.json",
        scorer="results/models/scorer.keras",
        infection=expand("results/infection_mask/{patient}.json", patient=PATIENTS),
        severity=expand("results/severity/{patient}.json", patient=PATIENTS),
        classifier_card=get_model_card("classifier"),
        scorer_card=get_model_card("scorer"),
    output:
        csv=report("results/predictions.csv", caption="../report/predictions.rst", category="Predictions"),
    log:
        "results/logs/predict.log",
    params:
        patient_ids=PATIENTS,
        labeled=LABELED,
        demo_patients=DEMO_PATIENTS,
        allow_synthetic=config["allow_synthetic_models"],
    resources:
        mem_mb=get_mem_mb(4000, per_input_mb=2),
        runtime=get_runtime(10, per_input_mb=0.05),
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


rule evaluate:
    input:
        predictions="results/predictions.csv",
        split="results/dataset/split.tsv",
        classifier_sidecar="results/models/classifier.json",
        scorer_sidecar="results/models/scorer.json",
    output:
        evaluation="results/metrics/evaluation.json",
        roc=report("results/plots/test_roc.png", caption="../report/test_roc.rst", category="Evaluation (test)"),
        calibration=report("results/plots/test_calibration.png", caption="../report/test_calibration.rst",
                           category="Evaluation (test)"),
        scatter=report("results/plots/test_scatter.png", caption="../report/test_scatter.rst",
                       category="Evaluation (test)"),
        confusion=report("results/plots/test_severity_confusion.png", caption="../report/test_confusion.rst",
                         category="Evaluation (test)"),
    log:
        "results/logs/evaluate.log",
    params:
        evaluation=config["evaluation"],
        demo=IS_DEMO_COHORT,
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"


if RETRAIN and config["evaluation"]["folds"]:

    rule cross_validate:
        input:
            train_set="results/dataset/train.h5",
            val_set="results/dataset/val.h5",
            split="results/dataset/split.tsv",
        output:
            cv="results/metrics/cross_validation.json",
        log:
            "results/logs/cross_validate.log",
        benchmark:
            "results/benchmarks/cross_validate.tsv"
        params:
            folds=config["evaluation"]["folds"],
            salt=config["split"]["salt"],
            train=config["train"],
            evaluation=config["evaluation"],
        threads: 2
        resources:
            gpu=1,
            cpus_per_task=get_cpus,
            mem_mb=16000,
            runtime=720 * config["evaluation"]["folds"],
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"


rule summarize:
    input:
        evaluation="results/metrics/evaluation.json",
        classifier="results/metrics/classifier.json",
        scorer="results/metrics/scorer.json",
        infection="results/metrics/infection_unet.json",
        split="results/dataset/split.tsv",
        cross_validation=get_cross_validation,
        classifier_card=get_model_card("classifier"),
        scorer_card=get_model_card("scorer"),
        infection_card="results/models/infection_unet.card.json",
    output:
        metrics=report("results/metrics/summary.html", caption="../report/metrics.rst", category="Metrics"),
        cohort=report("results/metrics/cohort.csv", caption="../report/cohort.rst", category="Cohort"),
        label=report("results/plots/cohort_label.png", caption="../report/cohort.rst", category="Cohort"),
        severity=report("results/plots/cohort_severity.png", caption="../report/cohort.rst", category="Cohort"),
        ctsi=report("results/plots/cohort_ctsi.png", caption="../report/cohort.rst", category="Cohort"),
    log:
        "results/logs/summarize.log",
    params:
        n_unlabeled=len(UNLABELED),
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/covidct.yaml"
    script:
        "../scripts/step.py"
