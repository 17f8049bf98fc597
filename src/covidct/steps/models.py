"""The steps of ``workflow/rules/models.smk``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)


def build_hdf5(
    npy: list[str],
    out_train: str | Path,
    out_val: str | Path,
    out_test: str | Path,
    out_split: str | Path,
    patients: list[dict],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    salt: str = "covidct-split",
    shape=(64, 128, 128),
    hu_window=(-1000.0, 400.0),
    dtype: str = "float16",
) -> dict:
    """Split labeled patients by subject into train/val/test and stream their arrays into three HDF5 files.

    Args:
        npy: One ``.npy`` per entry of ``patients``, same order.
        patients: Labeled patients: dicts with patient_id, label, score ("" if unknown), split ("" or
            pinned) and subject_id ("" = the scan is its own subject).
    """
    import pandas as pd

    from covidct.models.data import write_hdf5
    from covidct.split import SPLITS, assign_split, subject_key

    if len(npy) != len(patients):
        raise CovidctError(f"{len(npy)} arrays for {len(patients)} patients")
    ids = [p["patient_id"] for p in patients]
    subjects = {p["patient_id"]: subject_key(p["patient_id"], p.get("subject_id", "")) for p in patients}
    splits = assign_split(
        ids, val_fraction, test_fraction, salt, {p["patient_id"]: p.get("split", "") for p in patients}, subjects
    )

    def samples(which):
        for path, p in zip(npy, patients):
            if splits[p["patient_id"]] != which:
                continue
            array = np.load(path, mmap_mode="r")
            score = float(p["score"]) if str(p.get("score", "")).strip() else float("nan")
            yield p["patient_id"], np.asarray(array), int(p["label"]), score

    outputs = dict(zip(SPLITS, (out_train, out_val, out_test)))
    counts = {which: write_hdf5(path, samples(which), shape, hu_window, dtype) for which, path in outputs.items()}
    table = pd.DataFrame(
        {
            "patient_id": ids,
            "subject_id": [subjects[i] for i in ids],
            "split": [splits[i] for i in ids],
            "label": [p["label"] for p in patients],
            "score": [p.get("score", "") for p in patients],
        }
    )
    with atomic_path(out_split, suffix=".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    n_subjects = {which: table[table["split"] == which]["subject_id"].nunique() for which in SPLITS}
    log.info("datasets: %s scans; subjects %s", counts, n_subjects)
    return counts


def train_classifier(
    train_set: str | Path,
    val_set: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_training: str | Path,
    out_roc: str | Path,
    train: dict,
) -> dict:
    """Train the COVID-19 classifier with the ``train`` config block (``covidct.models.train``)."""
    from covidct.models.train import train_classifier as fit

    settings = {k: v for k, v in train.items() if k != "scorer"}
    return fit(train_set, val_set, out_model, out_sidecar, out_history, out_metrics, out_training, out_roc, **settings)


def train_scorer(
    train_set: str | Path,
    val_set: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_training: str | Path,
    out_scatter: str | Path,
    out_confusion: str | Path,
    train: dict,
) -> dict:
    """Train the severity scorer with the ``train`` config block and its ``scorer`` settings."""
    from covidct.models.train import train_scorer as fit

    settings = {k: v for k, v in train.items() if k != "scorer"}
    scorer = train.get("scorer", {})
    return fit(
        train_set,
        val_set,
        out_model,
        out_sidecar,
        out_history,
        out_metrics,
        out_training,
        out_scatter,
        out_confusion,
        positives_only=scorer.get("positives_only", True),
        loss=scorer.get("loss", "huber"),
        **settings,
    )


def predict(
    npy: list[str],
    split: str | Path,
    classifier: str | Path,
    classifier_sidecar: str | Path,
    scorer: str | Path,
    out_csv: str | Path,
    patient_ids: list[str],
    infection: list[str] | None = None,
    severity: list[str] | None = None,
    labeled: list[str] = (),
) -> None:
    """Predictions for every patient (labeled or not): probability, label, score, class, CTSI, the
    segmentation severity (``seg_*``) from each patient's infection JSON and the clinical read-out
    (CTSS or zone score, per-region scores, PO, PHO, lesion types, PO class) from each patient's
    severity JSON, when given.

    ``split`` is train/val/test from the data sets the models were trained on, ``new`` for a labeled
    patient the models have not seen (``retrain: false``), ``unlabeled`` otherwise."""
    import pandas as pd

    from covidct.models.predict import SEG_COLUMNS, predict_arrays, write_predictions
    from covidct.severity.readout import readout_row

    splits = pd.read_csv(split, sep="\t", dtype=str).set_index("patient_id")["split"].to_dict()
    threshold = float(read_json(classifier_sidecar)["threshold"])
    rows = predict_arrays(((pid, np.load(path)) for pid, path in zip(patient_ids, npy)), classifier, scorer, threshold)
    for row in rows:
        row["split"] = splits.get(row["patient_id"], "unlabeled" if row["patient_id"] not in labeled else "new")
    for row, path in zip(rows, infection or []):
        seg = read_json(path)
        if seg["patient_id"] != row["patient_id"]:
            raise CovidctError(f"infection result {path} is for another patient", row["patient_id"])
        row.update({k: seg[k] for k in SEG_COLUMNS})
    for row, path in zip(rows, severity or []):
        result = read_json(path)
        if result["patient_id"] != row["patient_id"]:
            raise CovidctError(f"severity read-out {path} is for another patient", row["patient_id"])
        row.update(readout_row(result))
    write_predictions(rows, out_csv)


#: What the demo's metrics page says first.
DEMO_WARNING = (
    "Demo cohort: these numbers only show that the pipeline runs. The synthetic patients are few and "
    "the networks tiny; nothing here measures how well the models work."
)


def evaluate(
    predictions: str | Path,
    split: str | Path,
    classifier_sidecar: str | Path,
    scorer_sidecar: str | Path,
    out_evaluation: str | Path,
    out_roc: str | Path,
    out_calibration: str | Path,
    out_scatter: str | Path,
    out_confusion: str | Path,
    evaluation: dict | None = None,
    demo: bool = False,
) -> dict:
    """Test-split figures of both models (the headline), val figures apart, with bootstrap intervals by
    subject, calibration, baselines, and "not interpretable" below ``evaluation["min_subjects"]``;
    test plots. ``evaluation`` is the config block (bootstrap, seed, min_subjects, confidence,
    calibration_bins)."""
    import pandas as pd

    from covidct.evaluation.reports import evaluate_predictions
    from covidct.report.plots import calibration, roc_curve, score_scatter, severity_confusion

    e = {
        "bootstrap": 2000,
        "seed": 0,
        "min_subjects": 10,
        "confidence": 0.95,
        "calibration_bins": 5,
        **(evaluation or {}),
    }
    preds = pd.read_csv(predictions, dtype={"patient_id": str})
    table = pd.read_csv(split, sep="\t", dtype=str, keep_default_na=False)
    clf, reg = read_json(classifier_sidecar), read_json(scorer_sidecar)
    positives_only = bool(reg.get("positives_only", True))
    result = evaluate_predictions(
        preds,
        table,
        float(clf["threshold"]),
        positives_only,
        float(reg["train_mean"]),
        e["bootstrap"],
        e["seed"],
        e["min_subjects"],
        e["confidence"],
        e["calibration_bins"],
    )
    result["demo"] = demo
    if demo:
        result["warning"] = DEMO_WARNING
    write_json(out_evaluation, result)
    test = table[table["split"] == "test"].merge(
        preds[["patient_id", "covid_probability", "score", "seg_score"]].rename(columns={"score": "predicted"}),
        on="patient_id",
    )
    c = result["classifier"]["test"]
    suffix = "" if c["interpretable"] else f": {c['reason']}"
    auc = c["metrics"]["auc"]["value"] if c["interpretable"] else None
    roc_curve(test["label"].astype(int), test["covid_probability"], out_roc, auc, title=f"ROC (test){suffix}")
    calibration(c["calibration"], out_calibration, title=f"Calibration (test){suffix}")
    scored = test[(test["score"] != "") & ((test["label"] == "1") | (not positives_only))]
    r = result["scorer"]["test"]
    rsuffix = "" if r["interpretable"] else f": {r['reason']}"
    score_scatter(
        scored["score"].astype(float),
        scored["predicted"],
        out_scatter,
        title=f"Severity score (test){rsuffix}",
        baseline=pd.to_numeric(scored["seg_score"], errors="coerce"),
        baseline_label="segmentation (seg_score)",
    )
    severity_confusion(
        scored["score"].astype(float), scored["predicted"], out_confusion, title=f"Severity class (test){rsuffix}"
    )
    log.info(
        "evaluation: test classifier %s; scorer %s", c["reason"] or "interpretable", r["reason"] or "interpretable"
    )
    return result


def cross_validate(
    train_set: str | Path,
    val_set: str | Path,
    split: str | Path,
    out_cv: str | Path,
    folds: int,
    salt: str,
    train: dict,
    evaluation: dict | None = None,
) -> dict:
    """k-fold cross-validation of both models over train + val by subject (``covidct.models.train.cross_validate``)."""
    from covidct.models.train import cross_validate as run

    e = {"bootstrap": 2000, "min_subjects": 10, **(evaluation or {})}
    common = {k: v for k, v in train.items() if k != "scorer"}
    scorer = {
        **common,
        "loss": train.get("scorer", {}).get("loss", "huber"),
        "positives_only": train.get("scorer", {}).get("positives_only", True),
    }
    return run(train_set, val_set, split, out_cv, folds, salt, e["bootstrap"], e["min_subjects"], common, scorer)


def summarize(
    evaluation: str | Path,
    classifier: str | Path,
    scorer: str | Path,
    infection: str | Path,
    split: str | Path,
    out_metrics: str | Path,
    out_cohort: str | Path,
    out_label: str | Path,
    out_severity: str | Path,
    out_ctsi: str | Path,
    n_unlabeled: int = 0,
    cross_validation: str | Path | list | None = None,
) -> None:
    """The metrics page of the report (``covidct.report.metrics_page``), plus the cohort summary
    (``covidct.report.cohort``).

    It leads with the test split's figures and their confidence intervals (or "not interpretable
    (n=...)"), with the baselines beside them; then cross-validation when it was run; then the
    validation figures, apart, as the split that chose checkpoints and threshold. ``classifier``,
    ``scorer`` and ``infection`` are the training metrics of the three models; ``cross_validation``
    the cross-validation results, or nothing (None or an empty list) when it was not run.
    """
    from covidct.report.cohort import cohort_summary
    from covidct.report.metrics_page import metrics_page

    cohort_summary(split, n_unlabeled, out_cohort, out_label, out_severity, out_ctsi)
    page = metrics_page(
        read_json(evaluation),
        read_json(classifier),
        read_json(scorer),
        read_json(infection),
        read_json(cross_validation) if cross_validation else None,
    )  # [] when not run
    with atomic_path(out_metrics, suffix=".html") as tmp:
        tmp.write_text(page)
