"""Metrics of the classifier and the scorer, in plain numpy (hand-checkable)."""

from __future__ import annotations

import numpy as np

from covidct.severity import SEVERITY_CLASSES, severity_class


def roc(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: (false positive rate, true positive rate, thresholds), thresholds descending."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    thresholds = np.r_[np.inf, np.unique(p)[::-1]]
    pos, neg = max(y.sum(), 1), max((~y).sum(), 1)
    tpr = np.array([(p[y] >= t).sum() / pos for t in thresholds])
    fpr = np.array([(p[~y] >= t).sum() / neg for t in thresholds])
    return fpr, tpr, thresholds


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None with a single class.

    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    if y.all() or not y.any():
        return None
    diff = p[y][:, None] - p[~y][None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Decision threshold maximising sensitivity + specificity - 1 on (val) data; 0.5 with one class."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return 0.5
    fpr, tpr, thr = roc(y, p)
    i = int(np.argmax(tpr - fpr))
    return float(min(thr[i], 1.0))


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, AUC, sensitivity, specificity and the confusion matrix [[TN, FP], [FN, TP]]."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    tn = int(((y == 0) & (pred == 0)).sum())
    fp = int(((y == 0) & (pred == 1)).sum())
    fn = int(((y == 1) & (pred == 0)).sum())
    tp = int(((y == 1) & (pred == 1)).sum())
    return {
        "threshold": float(threshold),
        "n": int(len(y)),
        "accuracy": (tp + tn) / len(y) if len(y) else None,
        "auc": auc(y, p),
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "confusion_matrix": {"labels": ["negative", "positive"], "rows_true_cols_pred": [[tn, fp], [fn, tp]]},
    }


def class_distance_table(true_scores, pred_scores) -> dict[int, int]:
    """Counts of patients by |true class - predicted class|, 0..4 (the original study's table)."""
    d = [abs(severity_class(t) - severity_class(float(np.clip(p, 0, 100)))) for t, p in zip(true_scores, pred_scores)]
    return {k: int(sum(1 for v in d if v == k)) for k in range(len(SEVERITY_CLASSES))}


def regression_metrics(true_scores, pred_scores) -> dict:
    """MAE, RMSE, Pearson r, severity-class exact and within-one-class accuracy, class-distance table."""
    t = np.asarray(true_scores, dtype=float)
    p = np.clip(np.asarray(pred_scores, dtype=float), 0, 100)
    table = class_distance_table(t, p)
    n = len(t)
    r = float(np.corrcoef(t, p)[0, 1]) if n > 1 and t.std() > 0 and p.std() > 0 else None
    return {
        "n": n,
        "mae": float(np.mean(np.abs(t - p))),
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "pearson_r": r,
        "class_exact_accuracy": table[0] / n if n else None,
        "class_within_one_accuracy": (table[0] + table[1]) / n if n else None,
        "class_distance_counts": {str(k): v for k, v in table.items()},
    }
