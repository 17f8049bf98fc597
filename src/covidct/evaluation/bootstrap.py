"""Weighted metrics and the bootstrap by subject.

Every metric is computed with per-scan weights, so that a bootstrap replicate is just a weight
vector (how often each scan's subject was drawn) and thousands of replicates are one vectorised
computation. Intervals are percentile bootstrap intervals that resample *subjects* with replacement
(all scans of a drawn subject come along), so scans of one person never count as independent
evidence. Each ``w_*`` metric takes arrays of n scans and weights of shape (n,) or (B, n) and returns
one value per row (NaN where undefined, e.g. sensitivity without positives)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from covidct import config
from covidct.severity import SEVERITY_CLASSES, severity_classes

#: Coverage of the confidence intervals: config ``evaluation.confidence``.
CONFIDENCE = config.default("evaluation.confidence")


#: Bootstrap replicates (resampled sets of subjects): config ``evaluation.bootstrap``.
N_BOOTSTRAP = config.default("evaluation.bootstrap")


#: Severity classes compared by the quadratic-weighted kappa.
N_CLASSES = len(SEVERITY_CLASSES)


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
    return np.where(
        disagree_expected > 1e-12,
        1 - disagree_observed / np.where(disagree_expected > 1e-12, disagree_expected, 1),
        np.nan,
    )


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


def estimate(
    metric: Callable[..., np.ndarray], a: np.ndarray, b: np.ndarray, boot: np.ndarray, confidence: float = CONFIDENCE
) -> dict:
    """Point estimate (every scan weighted 1) and percentile bootstrap interval of ``metric(a, b, w)``.

    Returns:
        ``{"value", "ci_low", "ci_high", "n_boot"}``; ``n_boot`` counts the replicates where
        the metric was defined (e.g. AUC needs both classes among the drawn subjects). Values are
        None where undefined.
    """
    value = float(metric(a, b, np.ones(len(a)))[0]) if len(a) else float("nan")
    reps = metric(a, b, boot) if len(a) else np.array([])
    return interval(value, reps, confidence)


def paired_difference(
    metric: Callable[..., np.ndarray],
    truth: np.ndarray,
    model: np.ndarray,
    baseline: np.ndarray,
    boot: np.ndarray,
    confidence: float = CONFIDENCE,
) -> dict:
    """``metric(truth, model) - metric(truth, baseline)`` on the same subjects of each replicate.

    Returns:
        ``{"value", "ci_low", "ci_high", "n_boot"}`` of the difference.
    """
    ones = np.ones((1, len(truth)))
    value = float((metric(truth, model, ones) - metric(truth, baseline, ones))[0])
    reps = metric(truth, model, boot) - metric(truth, baseline, boot)
    return interval(value, reps, confidence)


def interval(value: float, reps: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """``{"value", "ci_low", "ci_high", "n_boot"}``: the percentile interval of the finite replicates."""
    reps = reps[np.isfinite(reps)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha]) if len(reps) else (np.nan, np.nan)
    return {
        "value": finite_or_none(value),
        "ci_low": finite_or_none(low),
        "ci_high": finite_or_none(high),
        "n_boot": int(len(reps)),
    }


def finite_or_none(v) -> float | None:
    """A figure as JSON holds it: rounded to 6 decimals, None when not finite.

    >>> finite_or_none(0.1234567), finite_or_none(float("nan"))
    (0.123457, None)
    """
    v = float(v)
    return round(v, 6) if np.isfinite(v) else None
