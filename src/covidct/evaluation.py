"""Honest evaluation of the classifier and the scorer on patients they were not tuned on.

Everything here works on predictions and truths (plain arrays), never on models:

- every metric is computed with per-scan weights, so that a bootstrap replicate is just a
  weight vector (how often each scan's subject was drawn) and thousands of replicates are
  one vectorised computation;
- confidence intervals are percentile bootstrap intervals that resample *subjects* with
  replacement (all scans of a drawn subject come along), so scans of one person never count
  as independent evidence;
- a figure from too few subjects, or from a test set missing a class, is reported as
  "not interpretable (n=...)" instead of as a number;
- every model metric has its baselines beside it: the classifier against the training
  prevalence, the scorer against the training mean and against the infection U-Net's
  segmentation read-out (percent of lung infected), with the paired bootstrap interval of the
  difference, so a model that does not beat them is visibly so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from covidct.dataset import SEVERITY_CLASSES, severity_class

log = logging.getLogger(__name__)

#: Coverage of the confidence intervals.
CONFIDENCE = 0.95
#: Bootstrap replicates (resampled sets of subjects).
N_BOOTSTRAP = 2000
#: Fewer subjects than this in a test set: its figures are not interpretable.
MIN_SUBJECTS = 10
#: Equal-width bins of predicted probability for the calibration curve.
CALIBRATION_BINS = 5
#: Severity classes compared by the quadratic-weighted kappa.
N_CLASSES = len(SEVERITY_CLASSES)


# ----------------------------------------------------------------- weighted metrics
# Each takes arrays of n scans and weights W of shape (n,) or (B, n) and returns one value per
# row of W (NaN where undefined, e.g. sensitivity without positives).


def _rows(w: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(w, dtype=float))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def w_accuracy(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Share of scans whose predicted label is right."""
    w = _rows(w)
    return _ratio(w @ (np.asarray(y) == np.asarray(pred)), w.sum(1))


def w_sensitivity(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """True positive rate."""
    y, pred, w = np.asarray(y).astype(bool), np.asarray(pred).astype(bool), _rows(w)
    return _ratio(w @ (y & pred), w @ y)


def w_specificity(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """True negative rate."""
    y, pred, w = np.asarray(y).astype(bool), np.asarray(pred).astype(bool), _rows(w)
    return _ratio(w @ (~y & ~pred), w @ ~y)


def w_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Area under the ROC curve: the weighted share of (positive, negative) pairs ordered right,
    ties counting half (Mann-Whitney)."""
    y, p, w = np.asarray(y).astype(bool), np.asarray(p, dtype=float), _rows(w)
    if y.all() or not y.any():
        return np.full(len(w), np.nan)
    diff = p[y][:, None] - p[~y][None, :]
    order = (diff > 0) + 0.5 * (diff == 0)
    wp, wn = w[:, y], w[:, ~y]
    return _ratio(np.einsum("bi,ij,bj->b", wp, order, wn), wp.sum(1) * wn.sum(1))


def w_brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean squared difference between predicted probability and the 0/1 truth."""
    w = _rows(w)
    return _ratio(w @ (np.asarray(p, float) - np.asarray(y, float)) ** 2, w.sum(1))


def w_mae(t: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean absolute error."""
    w = _rows(w)
    return _ratio(w @ np.abs(np.asarray(t, float) - np.asarray(p, float)), w.sum(1))


def w_rmse(t: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Root mean squared error."""
    w = _rows(w)
    return np.sqrt(_ratio(w @ (np.asarray(t, float) - np.asarray(p, float)) ** 2, w.sum(1)))


def w_pearson(t: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson correlation; NaN when either side has no spread."""
    t, p, w = np.asarray(t, float), np.asarray(p, float), _rows(w)
    total = w.sum(1)
    mt, mp = _ratio(w @ t, total), _ratio(w @ p, total)
    dt, dp = t[None, :] - mt[:, None], p[None, :] - mp[:, None]
    cov = (w * dt * dp).sum(1)
    var_t, var_p = (w * dt**2).sum(1), (w * dp**2).sum(1)
    tiny = 1e-12 * np.maximum(total, 1.0)
    return np.where((var_t > tiny) & (var_p > tiny), cov / np.sqrt(np.maximum(var_t * var_p, 1e-300)), np.nan)


def severity_classes(scores: Sequence[float]) -> np.ndarray:
    """Severity class index (0 Low .. 4 Critical) of each score, scores clipped to 0-100."""
    return np.array([severity_class(float(np.clip(s, 0, 100))) for s in scores], dtype=int)


def w_class_exact(t: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Share of scans whose predicted severity class is the true one."""
    return w_accuracy(severity_classes(t), severity_classes(p), w)


def w_class_within_one(t: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Share of scans whose predicted severity class is at most one class off."""
    w = _rows(w)
    return _ratio(w @ (np.abs(severity_classes(t) - severity_classes(p)) <= 1), w.sum(1))


def w_quadratic_kappa(t: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Quadratic-weighted Cohen's kappa of the severity classes (the usual agreement measure for
    ordinal grades): 1 - sum(W O) / sum(W E), W_ij = (i - j)^2 / (K - 1)^2, O the confusion
    matrix, E the one expected by chance from its margins. NaN when chance disagreement is 0
    (e.g. every scan in one class on both sides)."""
    a = np.eye(N_CLASSES)[severity_classes(t)]
    b = np.eye(N_CLASSES)[severity_classes(p)]
    w = _rows(w)
    observed = np.einsum("bn,ni,nj->bij", w, a, b)
    total = observed.sum((1, 2))
    expected = np.einsum("bi,bj->bij", observed.sum(2), observed.sum(1)) / np.where(total > 0, total, 1)[:, None, None]
    idx = np.arange(N_CLASSES)
    weights = (idx[:, None] - idx[None, :]) ** 2 / (N_CLASSES - 1) ** 2
    disagree_expected = (weights * expected).sum((1, 2))
    disagree_observed = (weights * observed).sum((1, 2))
    return np.where(disagree_expected > 1e-12, 1 - disagree_observed / np.where(disagree_expected > 1e-12,
                                                                                disagree_expected, 1), np.nan)


# ---------------------------------------------------------------------- bootstrap


def subject_codes(subjects: Sequence[str]) -> tuple[np.ndarray, int]:
    """Each scan's subject as an integer code 0..S-1, and S."""
    _, codes = np.unique(np.asarray(subjects, dtype=str), return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1 if len(codes) else 0


def bootstrap_weights(subjects: Sequence[str], n_boot: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(n_boot, n_scans) weights: in each replicate, S subjects drawn with replacement out of S,
    and every scan weighted by how often its subject was drawn."""
    codes, n_subjects = subject_codes(subjects)
    if n_subjects == 0:
        return np.zeros((n_boot, 0))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=n_boot)
    return draws[:, codes].astype(float)


def estimate(metric: Callable[..., np.ndarray], a: np.ndarray, b: np.ndarray, boot: np.ndarray,
             confidence: float = CONFIDENCE) -> dict:
    """Point estimate (every scan weighted 1) and percentile bootstrap interval of ``metric(a, b, w)``.

    Returns:
        ``{"value", "ci_low", "ci_high", "n_boot"}``; ``n_boot`` counts the replicates where
        the metric was defined (e.g. AUC needs both classes among the drawn subjects). Values are
        None where undefined.
    """
    value = float(metric(a, b, np.ones(len(a)))[0]) if len(a) else float("nan")
    reps = metric(a, b, boot) if len(a) else np.array([])
    reps = reps[np.isfinite(reps)]
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(reps, [alpha, 1 - alpha]) if len(reps) else (np.nan, np.nan))
    return {"value": _num(value), "ci_low": _num(low), "ci_high": _num(high), "n_boot": int(len(reps))}


def paired_difference(metric: Callable[..., np.ndarray], truth: np.ndarray, model: np.ndarray,
                      baseline: np.ndarray, boot: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """``metric(truth, model) - metric(truth, baseline)`` on the same subjects of each replicate.

    Returns:
        ``{"value", "ci_low", "ci_high", "n_boot"}`` of the difference.
    """
    ones = np.ones((1, len(truth)))
    value = float((metric(truth, model, ones) - metric(truth, baseline, ones))[0])
    reps = metric(truth, model, boot) - metric(truth, baseline, boot)
    reps = reps[np.isfinite(reps)]
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(reps, [alpha, 1 - alpha]) if len(reps) else (np.nan, np.nan))
    return {"value": _num(value), "ci_low": _num(low), "ci_high": _num(high), "n_boot": int(len(reps))}


def _num(v) -> float | None:
    v = float(v)
    return round(v, 6) if np.isfinite(v) else None


# ----------------------------------------------------------------------- read-outs


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

    >>> calibration_curve(np.array([0, 1, 1, 1]), np.array([0.1, 0.9, 0.8, 0.3]), bins=2)
    [{'bin': '0.0-0.5', 'n': 2, 'mean_predicted': 0.2, 'observed': 0.5}, {'bin': '0.5-1.0', 'n': 2, 'mean_predicted': 0.85, 'observed': 1.0}]
    """
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 0, 1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(sel.sum()),
                        "mean_predicted": round(float(p[sel].mean()), 4), "observed": round(float(y[sel].mean()), 4)})
    return out


def classifier_report(y: np.ndarray, p: np.ndarray, threshold: float, subjects: Sequence[str],
                      train_prevalence: float, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                      min_subjects: int = MIN_SUBJECTS, confidence: float = CONFIDENCE,
                      bins: int = CALIBRATION_BINS) -> dict:
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
    metrics = {name: estimate(fn, y, b, boot, confidence) for name, fn, b in (
        ("accuracy", w_accuracy, pred), ("sensitivity", w_sensitivity, pred), ("specificity", w_specificity, pred),
        ("auc", w_auc, p), ("brier", w_brier, p))}
    tn = int(((y == 0) & (pred == 0)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    fn = int(((y == 1) & (pred == 0)).sum())
    tp = int(((y == 1) & (pred == 1)).sum())
    return withhold({
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
            "brier_minus_prevalence": (paired_difference(w_brier, y, p, prevalence, boot, confidence)
                                       if len(y) else None),
        },
    })


def scorer_report(t: np.ndarray, p: np.ndarray, subjects: Sequence[str], train_mean: float | np.ndarray,
                  segmentation: np.ndarray | None = None, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                  min_subjects: int = MIN_SUBJECTS, confidence: float = CONFIDENCE) -> dict:
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
    metrics = {name: estimate(fn, t, p, boot, confidence) for name, fn in (
        ("mae", w_mae), ("rmse", w_rmse), ("pearson_r", w_pearson), ("class_exact_accuracy", w_class_exact),
        ("class_within_one_accuracy", w_class_within_one), ("quadratic_weighted_kappa", w_quadratic_kappa))}
    distance = np.abs(severity_classes(t) - severity_classes(p))
    mean = np.broadcast_to(np.asarray(train_mean, dtype=float), t.shape)
    baselines: dict = {
        "train_mean": _num(np.mean(np.asarray(train_mean, dtype=float))),
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
    return withhold({
        **verdict,
        "n_scans": int(len(t)),
        "metrics": metrics,
        "class_distance_counts": {str(k): int((distance == k).sum()) for k in range(N_CLASSES)},
        "baselines": baselines,
    })


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


# --------------------------------------------------------------- the evaluate step

#: Splits reported, the headline first; val chose checkpoints and the threshold.
REPORTED_SPLITS = ("test", "val")
VAL_CAVEAT = "chose the checkpoints and the classifier's threshold: optimistic, shown apart"


def evaluate_predictions(predictions, split_table, threshold: float, scorer_positives_only: bool,
                         scorer_train_mean: float, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                         min_subjects: int = MIN_SUBJECTS, confidence: float = CONFIDENCE,
                         bins: int = CALIBRATION_BINS) -> dict:
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
    import pandas as pd

    preds = predictions.rename(columns={"score": "predicted_score"}).drop(columns=["split"], errors="ignore")
    table = split_table.merge(preds, on="patient_id", how="left")
    missing = table[table["covid_probability"].isna()]["patient_id"].tolist()
    if missing:
        from covidct.errors import CovidctError

        raise CovidctError(f"no prediction for labeled patient(s) {', '.join(missing[:5])}")
    subject = table["subject_id"].where(table["subject_id"] != "", table["patient_id"])
    train = table[table["split"] == "train"]
    prevalence = float((train["label"] == "1").mean()) if len(train) else float("nan")
    out: dict = {"headline_split": "test", "confidence": confidence, "n_boot": n_boot, "min_subjects": min_subjects,
                 "threshold": threshold, "splits": {}, "classifier": {}, "scorer": {}}
    for split in REPORTED_SPLITS:
        part = table[table["split"] == split]
        out["splits"][split] = {"scans": int(len(part)), "subjects": int(subject[part.index].nunique())}
        clf = classifier_report(part["label"].astype(int).to_numpy(), part["covid_probability"].astype(float).to_numpy(),
                                threshold, subject[part.index].tolist(), prevalence, n_boot, seed, min_subjects,
                                confidence, bins)
        scored = part[(part["score"] != "") & ((part["label"] == "1") | (not scorer_positives_only))]
        seg = (pd.to_numeric(scored["seg_score"], errors="coerce").to_numpy() if "seg_score" in scored else None)
        reg = scorer_report(scored["score"].astype(float).to_numpy(), scored["predicted_score"].astype(float).to_numpy(),
                            subject[scored.index].tolist(), scorer_train_mean, seg, n_boot, seed, min_subjects,
                            confidence)
        if split == "val":
            clf["note"] = reg["note"] = VAL_CAVEAT
        out["classifier"][split], out["scorer"][split] = clf, reg
    return out
