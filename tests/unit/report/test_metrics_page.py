"""The metrics page reads the one metrics table: every classifier and scorer figure, and the folds' ones."""

from __future__ import annotations

from covidct.evaluation.reports import CLASSIFIER_METRICS, FOLD_METRICS, SCORER_METRICS
from covidct.report.metrics_page import cards_section, classifier_section, cv_section, scorer_section


def _estimate(value):
    return {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1, "n_boot": 100}


def test_sections_show_every_figure_of_the_table():
    clf = {
        "interpretable": True,
        "n_scans": 20,
        "n_subjects": 12,
        "n_positive": 8,
        "threshold": 0.4,
        "metrics": {m.name: _estimate(0.5) for m in CLASSIFIER_METRICS},
        "confusion_matrix": {"rows_true_cols_pred": [[5, 1], [2, 6]]},
        "baselines": {
            "prevalence_accuracy": _estimate(0.6),
            "prevalence_brier": _estimate(0.2),
            "train_prevalence": 0.4,
        },
    }
    page = classifier_section(clf, "test", 0.95)
    assert all(m.label in page for m in CLASSIFIER_METRICS) and "0.500 [0.400, 0.600]" in page
    reg = {
        "interpretable": True,
        "n_scans": 20,
        "n_subjects": 12,
        "metrics": {m.name: _estimate(3.0) for m in SCORER_METRICS},
        "class_distance_counts": {"0": 10},
        "baselines": {"train_mean": 20.0, "train_mean_mae": _estimate(9.0)},
    }
    assert all(m.label in scorer_section(reg, "test", 0.95) for m in SCORER_METRICS)
    assert FOLD_METRICS["classifier"] == ("auc", "accuracy", "sensitivity", "specificity")
    cv = {
        "folds": 3,
        "n_subjects": 12,
        "scheme": "by subject",
        "mean_sd": {
            model: {k: {"mean": 0.5, "sd": 0.1, "n_folds": 3} for k in keys} for model, keys in FOLD_METRICS.items()
        },
        "per_fold": [],
        "pooled_out_of_fold": {"classifier": {"interpretable": False, "reason": "not interpretable (n=4)"}},
    }
    text = cv_section(cv)
    assert all(f"<td>{k}</td>" in text for keys in FOLD_METRICS.values() for k in keys)


def test_models_section_says_what_each_model_learned_from():
    real = {"model": "classifier", "trained_on": "real", "code_version": "0.1.0+abc",
            "sources": [{"name": "patient sheet", "kind": "real", "patients": 40, "subjects": 31}]}  # fmt: skip
    synthetic = {"model": "infection_unet", "trained_on": "synthetic", "code_version": "0.1.0+abc",
                 "sources": [{"name": "infection_train/volumes", "kind": "synthetic", "volumes": 6}]}  # fmt: skip
    page = cards_section([real, synthetic])
    assert "patient sheet (real: patients 40, subjects 31)" in page and "volumes 6" in page
    assert "synthetic phantoms only: infection_unet" in page and "allow_synthetic_models" in page
    assert "synthetic phantoms only" not in cards_section([real])
