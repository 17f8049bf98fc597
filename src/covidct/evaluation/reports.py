"""The read-outs of the evaluate step: classifier and scorer reports on a split with intervals,
calibration and baselines, and the rule that says when a figure means nothing.

- a figure from too few subjects, or from a test set missing a class, is reported as
  "not interpretable (n=...)" instead of as a number;
- every model metric has its baselines beside it: the classifier against the training
  prevalence, the scorer against the training mean and against the infection U-Net's
  segmentation read-out (percent of lung infected), with the paired bootstrap interval of the
  difference, so a model that does not beat them is visibly so."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from covidct import config
from covidct.errors import CovidctError
from covidct.evaluation.bootstrap import (
    CONFIDENCE,
    N_BOOTSTRAP,
    N_CLASSES,
    bootstrap_weights,
    estimate,
    finite_or_none,
    paired_difference,
    subject_codes,
    w_accuracy,
    w_auc,
    w_brier,
    w_class_exact,
    w_class_within_one,
    w_mae,
    w_pearson,
    w_quadratic_kappa,
    w_rmse,
    w_sensitivity,
    w_specificity,
)
from covidct.severity import severity_classes

#: Fewer subjects than this in a test set: its figures are not interpretable (config ``evaluation.min_subjects``).
MIN_SUBJECTS = config.default("evaluation.min_subjects")


#: Equal-width bins of predicted probability for the calibration curve (config ``evaluation.calibration_bins``).
CALIBRATION_BINS = config.default("evaluation.calibration_bins")


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``evaluation`` configuration block (defaults: the schema's)."""

    folds: int = config.default("evaluation.folds")
    bootstrap: int = N_BOOTSTRAP
    confidence: float = CONFIDENCE
    min_subjects: int = MIN_SUBJECTS
    calibration_bins: int = CALIBRATION_BINS
    seed: int = config.default("evaluation.seed")

    @classmethod
    def from_config(cls, evaluation: dict | None) -> EvaluationSettings:
        """The settings of an ``evaluation`` config block (missing keys: the schema's defaults)."""
        return cls(**(evaluation or {}))


@dataclass(frozen=True)
class Metric:
    """One figure of a model's reports.

    Attributes:
        name: Its key in the JSON.
        label: What a reader sees (the metrics page).
        weighted: Its weighted estimator (``covidct.evaluation.bootstrap``).
        on_class: It scores the predicted class (the thresholded probability), not the probability.
    """

    name: str
    label: str
    weighted: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    on_class: bool = False


#: The classifier's figures in reading order: the one table of the evaluation, the pooled cross-validation
#: figures and the metrics page.
CLASSIFIER_METRICS = (
    Metric("auc", "AUC", w_auc),
    Metric("accuracy", "accuracy", w_accuracy, on_class=True),
    Metric("sensitivity", "sensitivity", w_sensitivity, on_class=True),
    Metric("specificity", "specificity", w_specificity, on_class=True),
    Metric("brier", "Brier score (lower is better)", w_brier),
)


#: The scorer's figures in reading order.
SCORER_METRICS = (
    Metric("mae", "MAE (points of % lung)", w_mae),
    Metric("rmse", "RMSE", w_rmse),
    Metric("pearson_r", "Pearson r", w_pearson),
    Metric("class_exact_accuracy", "severity class exact", w_class_exact),
    Metric("class_within_one_accuracy", "severity class within one", w_class_within_one),
    Metric("quadratic_weighted_kappa", "severity class quadratic-weighted kappa", w_quadratic_kappa),
)


#: The figures of each cross-validation fold (the plain metrics of ``covidct.evaluation.metrics``: the
#: tables above but the Brier score and the kappa), summarised as mean +- sd over folds.
FOLD_METRICS = {
    "classifier": tuple(m.name for m in CLASSIFIER_METRICS if m.name != "brier"),
    "scorer": tuple(m.name for m in SCORER_METRICS if m.name != "quadratic_weighted_kappa"),
}


def classifier_estimates(
    y: np.ndarray, pred: np.ndarray, p: np.ndarray, boot: np.ndarray, confidence: float = CONFIDENCE
) -> dict:
    """Every CLASSIFIER_METRICS figure with its bootstrap interval: ``pred`` the predicted classes, ``p``
    the probabilities, ``boot`` the bootstrap weights."""
    return {m.name: estimate(m.weighted, y, pred if m.on_class else p, boot, confidence) for m in CLASSIFIER_METRICS}


def scorer_estimates(t: np.ndarray, p: np.ndarray, boot: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """Every SCORER_METRICS figure with its bootstrap interval (``t`` true, ``p`` predicted scores)."""
    return {m.name: estimate(m.weighted, t, p, boot, confidence) for m in SCORER_METRICS}


def interpretability(n_subjects: int, min_subjects: int = MIN_SUBJECTS, classes_present: Sequence[bool] = ()) -> dict:
    """Whether figures from this many subjects can be read as results.

    >>> interpretability(3)["reason"]
    'not interpretable (n=3 subjects; at least 10 are needed)'
    >>> interpretability(40, classes_present=[True, False])["reason"]
    'not interpretable (n=40 subjects; one class is absent)'
    >>> interpretability(40)["interpretable"]
    True
    """
    if n_subjects < min_subjects:
        reason = f"not interpretable (n={n_subjects} subjects; at least {min_subjects} are needed)"
    elif classes_present and not all(classes_present):
        reason = f"not interpretable (n={n_subjects} subjects; one class is absent)"
    else:
        return {"interpretable": True, "reason": "", "n_subjects": int(n_subjects)}
    return {"interpretable": False, "reason": reason, "n_subjects": int(n_subjects)}


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Reliability table: per equal-width bin of predicted probability, the scans in it, their mean
    predicted probability and the observed share of positives (empty bins left out).

    >>> table = calibration_curve(np.array([0, 1, 1, 1]), np.array([0.1, 0.9, 0.8, 0.3]), bins=2)
    >>> table[0]
    {'bin': '0.0-0.5', 'n': 2, 'mean_predicted': 0.2, 'observed': 0.5}
    >>> table[1]
    {'bin': '0.5-1.0', 'n': 2, 'mean_predicted': 0.85, 'observed': 1.0}
    """
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 0, 1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "n": int(sel.sum()),
                    "mean_predicted": round(float(p[sel].mean()), 4),
                    "observed": round(float(y[sel].mean()), 4),
                }
            )
    return out


def classifier_report(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    subjects: Sequence[str],
    train_prevalence: float,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
    min_subjects: int = MIN_SUBJECTS,
    confidence: float = CONFIDENCE,
    bins: int = CALIBRATION_BINS,
) -> dict:
    """Classifier metrics on one split with bootstrap intervals by subject, calibration and baselines.

    Args:
        y: True labels (0/1) of the scans.
        p: Predicted COVID-19 probabilities.
        threshold: The decision threshold (chosen on val, never on this split).
        subjects: Each scan's subject pseudonym.
        train_prevalence: Share of positives in the training split (the prevalence baseline).
        n_boot: Bootstrap replicates.
        seed: Seed of the bootstrap.
        min_subjects: Fewer subjects than this: not interpretable.
        confidence: Coverage of the intervals.
        bins: Calibration bins.
    """
    y, p = np.asarray(y, int), np.asarray(p, float)
    pred = (p >= threshold).astype(int)
    boot = bootstrap_weights(subjects, n_boot, seed)
    _, n_subjects = subject_codes(subjects)
    verdict = interpretability(n_subjects, min_subjects, [bool((y == 1).any()), bool((y == 0).any())])
    majority = int(train_prevalence >= 0.5)
    prevalence = np.full(len(y), float(train_prevalence))
    metrics = classifier_estimates(y, pred, p, boot, confidence)
    tn = int(((y == 0) & (pred == 0)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    fn = int(((y == 1) & (pred == 0)).sum())
    tp = int(((y == 1) & (pred == 1)).sum())
    return withhold(
        {
            **verdict,
            "n_scans": int(len(y)),
            "n_positive": int(y.sum()),
            "threshold": float(threshold),
            "metrics": metrics,
            "confusion_matrix": {"labels": ["negative", "positive"], "rows_true_cols_pred": [[tn, fp], [fn, tp]]},
            "calibration": calibration_curve(y, p, bins),
            "baselines": {
                "train_prevalence": round(float(train_prevalence), 4),
                "prevalence_accuracy": estimate(w_accuracy, y, np.full(len(y), majority), boot, confidence),
                "prevalence_brier": estimate(w_brier, y, prevalence, boot, confidence),
                "prevalence_auc": 0.5,
                "brier_minus_prevalence": (
                    paired_difference(w_brier, y, p, prevalence, boot, confidence) if len(y) else None
                ),
            },
        }
    )


def scorer_report(
    t: np.ndarray,
    p: np.ndarray,
    subjects: Sequence[str],
    train_mean: float | np.ndarray,
    segmentation: np.ndarray | None = None,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
    min_subjects: int = MIN_SUBJECTS,
    confidence: float = CONFIDENCE,
) -> dict:
    """Scorer metrics on one split with bootstrap intervals by subject and baselines.

    Args:
        t: True scores (percent of lung involved).
        p: Predicted scores.
        subjects: Each scan's subject pseudonym.
        train_mean: Mean score of the scorer's training patients (the constant baseline); one value
            per scan where scans come from models trained on different patients (cross-validation).
        segmentation: The infection U-Net's ``seg_score`` of the same scans (NaN where missing), or None.
        n_boot: Bootstrap replicates.
        seed: Seed of the bootstrap.
        min_subjects: Fewer subjects than this: not interpretable.
        confidence: Coverage of the intervals.
    """
    t, p = np.asarray(t, float), np.clip(np.asarray(p, float), 0, 100)
    boot = bootstrap_weights(subjects, n_boot, seed)
    _, n_subjects = subject_codes(subjects)
    verdict = interpretability(n_subjects, min_subjects)
    metrics = scorer_estimates(t, p, boot, confidence)
    distance = np.abs(severity_classes(t) - severity_classes(p))
    mean = np.broadcast_to(np.asarray(train_mean, dtype=float), t.shape)
    baselines: dict = {
        "train_mean": finite_or_none(np.mean(np.asarray(train_mean, dtype=float))),
        "train_mean_mae": estimate(w_mae, t, mean, boot, confidence),
        "mae_minus_train_mean": paired_difference(w_mae, t, p, mean, boot, confidence) if len(t) else None,
    }
    if segmentation is not None:
        seg = np.asarray(segmentation, float)
        have = np.isfinite(seg)
        baselines["segmentation_n"] = int(have.sum())
        if have.all() and len(t):
            baselines["segmentation_mae"] = estimate(w_mae, t, seg, boot, confidence)
            baselines["segmentation_pearson_r"] = estimate(w_pearson, t, seg, boot, confidence)
            baselines["mae_minus_segmentation"] = paired_difference(w_mae, t, p, seg, boot, confidence)
    return withhold(
        {
            **verdict,
            "n_scans": int(len(t)),
            "metrics": metrics,
            "class_distance_counts": {str(k): int((distance == k).sum()) for k in range(N_CLASSES)},
            "baselines": baselines,
        }
    )


def withhold(report: dict) -> dict:
    """A report whose figures are not interpretable keeps its counts but not its figures: every
    estimate becomes ``{"value": None, ..., "withheld": "not interpretable (n=...)"}``, so no reader
    of the JSON can quote them."""
    if report["interpretable"]:
        return report

    def blank(node):
        if isinstance(node, dict) and "value" in node and "ci_low" in node:
            return {"value": None, "ci_low": None, "ci_high": None, "n_boot": 0, "withheld": report["reason"]}
        if isinstance(node, dict):
            return {k: blank(v) for k, v in node.items()}
        return node

    report = dict(report)
    report["metrics"] = blank(report["metrics"])
    if "baselines" in report:
        report["baselines"] = blank(report["baselines"])
    return report


#: Splits reported, the headline first; val chose checkpoints and the threshold.
REPORTED_SPLITS = ("test", "val")


VAL_CAVEAT = "chose the checkpoints and the classifier's threshold: optimistic, shown apart"


def evaluate_predictions(
    predictions,
    split_table,
    threshold: float,
    scorer_positives_only: bool,
    scorer_train_mean: float,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
    min_subjects: int = MIN_SUBJECTS,
    confidence: float = CONFIDENCE,
    bins: int = CALIBRATION_BINS,
) -> dict:
    """Test (headline) and val figures of both models from the predictions table.

    Args:
        predictions: ``predictions.csv`` as a DataFrame (patient_id, covid_probability, score, seg_score).
        split_table: ``split.tsv`` as a DataFrame of strings (patient_id, subject_id, split, label, score).
        threshold: The classifier's decision threshold (chosen on val).
        scorer_positives_only: The scorer was trained on COVID-positive patients only; it is judged
            on the same kind of patients.
        scorer_train_mean: Mean score of the scorer's training patients (its constant baseline).
        n_boot, seed, min_subjects, confidence, bins: See ``classifier_report``.

    Returns:
        ``{"classifier": {split: report}, "scorer": {split: report}, ...}``.
    """
    preds = predictions.rename(columns={"score": "predicted_score"}).drop(columns=["split"], errors="ignore")
    table = split_table.merge(preds, on="patient_id", how="left")
    missing = table[table["covid_probability"].isna()]["patient_id"].tolist()
    if missing:
        raise CovidctError(f"no prediction for labeled patient(s) {', '.join(missing[:5])}")
    subject = table["subject_id"].where(table["subject_id"] != "", table["patient_id"])
    train = table[table["split"] == "train"]
    prevalence = float((train["label"] == "1").mean()) if len(train) else float("nan")
    out: dict = {
        "headline_split": "test",
        "confidence": confidence,
        "n_boot": n_boot,
        "min_subjects": min_subjects,
        "threshold": threshold,
        "splits": {},
        "classifier": {},
        "scorer": {},
    }
    for split in REPORTED_SPLITS:
        part = table[table["split"] == split]
        out["splits"][split] = {"scans": int(len(part)), "subjects": int(subject[part.index].nunique())}
        clf = classifier_report(
            part["label"].astype(int).to_numpy(),
            part["covid_probability"].astype(float).to_numpy(),
            threshold,
            subject[part.index].tolist(),
            prevalence,
            n_boot,
            seed,
            min_subjects,
            confidence,
            bins,
        )
        scored = part[(part["score"] != "") & ((part["label"] == "1") | (not scorer_positives_only))]
        seg = pd.to_numeric(scored["seg_score"], errors="coerce").to_numpy() if "seg_score" in scored else None
        reg = scorer_report(
            scored["score"].astype(float).to_numpy(),
            scored["predicted_score"].astype(float).to_numpy(),
            subject[scored.index].tolist(),
            scorer_train_mean,
            seg,
            n_boot,
            seed,
            min_subjects,
            confidence,
        )
        if split == "val":
            clf["note"] = reg["note"] = VAL_CAVEAT
        out["classifier"][split], out["scorer"][split] = clf, reg
    return out


def pooled_classifier_report(
    labels: np.ndarray,
    p: np.ndarray,
    thresholds: np.ndarray,
    subjects: Sequence[str],
    n_boot: int = N_BOOTSTRAP,
    min_subjects: int = MIN_SUBJECTS,
) -> dict:
    """Pooled out-of-fold classifier figures of a cross-validation: each scan judged at its own fold's
    threshold, bootstrap intervals by subject."""
    pred = (p >= thresholds).astype(int)
    boot = bootstrap_weights(subjects, n_boot)
    _, n_subjects = subject_codes(subjects)
    out = interpretability(n_subjects, min_subjects, [bool((labels == 1).any()), bool((labels == 0).any())])
    out["metrics"] = classifier_estimates(labels, pred, p, boot)
    return withhold(out)


#: What the demo's evaluation (and its metrics page) says first.
DEMO_WARNING = (
    "Demo cohort: these numbers only show that the pipeline runs. The synthetic patients are few and "
    "the networks tiny; nothing here measures how well the models work."
)
