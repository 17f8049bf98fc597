"""Figures for the report, drawn on ``covidct.figures``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from covidct.evaluation.metrics import roc
from covidct.figures import figure, save
from covidct.severity import SEVERITY_CLASSES, severity_class


def training_curves(history: dict, path: str | Path, keys: list[str]) -> None:
    """One panel per metric: train and val per epoch."""
    fig = figure(figsize=(5 * len(keys), 3.5))
    axes = fig.subplots(1, len(keys))
    for ax, key in zip(np.atleast_1d(axes), keys):
        epochs = np.arange(1, len(history.get(key, [])) + 1)
        ax.plot(epochs, history.get(key, []), label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"val {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    save(fig, path)


def roc_curve(y, p, path: str | Path, auc: float | None, title: str = "ROC") -> None:
    fpr, tpr, _ = roc(np.asarray(y), np.asarray(p))
    fig = figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.plot(fpr, tpr, drawstyle="steps-post", label=f"AUC {auc:.3f}" if auc is not None else "AUC n/a")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title)
    ax.legend(loc="lower right")
    save(fig, path)


def score_scatter(
    true, pred, path: str | Path, title: str = "Severity score", baseline=None, baseline_label: str = ""
) -> None:
    fig = figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.scatter(true, pred, s=18, label="scorer")
    if baseline is not None:
        ax.scatter(true, baseline, s=14, marker="x", label=baseline_label)
        ax.legend(loc="upper left")
    ax.plot([0, 100], [0, 100], "k--", lw=0.8)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("true score (% lung involved)")
    ax.set_ylabel("predicted score")
    ax.set_title(title)
    save(fig, path)


def severity_confusion(true, pred, path: str | Path, title: str = "Severity class") -> None:
    k = len(SEVERITY_CLASSES)
    cm = np.zeros((k, k), int)
    for t, p in zip(true, pred):
        cm[severity_class(float(t)), severity_class(float(np.clip(p, 0, 100)))] += 1
    fig = figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center")
    ax.set_xticks(range(k), SEVERITY_CLASSES, rotation=45)
    ax.set_yticks(range(k), SEVERITY_CLASSES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    save(fig, path)


def calibration(table: list[dict], path: str | Path, title: str = "Calibration") -> None:
    """Reliability diagram from ``covidct.evaluation.calibration_curve``: observed share of positives
    against the mean predicted probability per bin, marker size by the scans in the bin."""
    fig = figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    if table:
        x = [b["mean_predicted"] for b in table]
        y = [b["observed"] for b in table]
        ax.plot(x, y, "-o", label="classifier")
        for b in table:
            ax.annotate(
                f"n={b['n']}",
                (b["mean_predicted"], b["observed"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share of COVID-19")
    ax.set_title(title)
    ax.legend(loc="upper left")
    save(fig, path)


def bar_counts(tables: dict[str, dict[str, int]], path: str | Path, title: str, xlabel: str) -> None:
    """Grouped bars: {series name: {category: count}}."""
    cats = list(next(iter(tables.values())).keys()) if tables else []
    fig = figure(figsize=(max(4, 0.35 * len(cats) + 2), 3.5))
    ax = fig.subplots()
    width = 0.8 / max(len(tables), 1)
    for i, (name, counts) in enumerate(tables.items()):
        ax.bar(np.arange(len(cats)) + i * width, [counts[c] for c in cats], width, label=name)
    ax.set_xticks(np.arange(len(cats)) + width * (len(tables) - 1) / 2, cats, rotation=45 if len(cats) > 6 else 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("patients")
    ax.set_title(title)
    ax.legend()
    save(fig, path)


def evaluation_plots(
    result: dict,
    predictions: pd.DataFrame,
    split_table: pd.DataFrame,
    positives_only: bool,
    out_roc: str | Path,
    out_calibration: str | Path,
    out_scatter: str | Path,
    out_confusion: str | Path,
) -> None:
    """The test split's figures of an evaluation (``covidct.evaluation.reports.evaluate_predictions``'
    ``result``): ROC and calibration of the classifier, scatter (with the segmentation read-out as
    baseline) and severity-class confusion of the scorer; a title says when the figures are not
    interpretable. ``predictions``: ``predictions.csv``; ``split_table``: ``split.tsv`` (text)."""
    columns = ["patient_id", "covid_probability", "score", "seg_score"]
    test = split_table[split_table["split"] == "test"].merge(
        predictions[columns].rename(columns={"score": "predicted"}), on="patient_id"
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
