"""Honest evaluation: weighted metrics, bootstrap by subject, coverage, "not interpretable", baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from covidct.evaluation.bootstrap import (
    bootstrap_weights,
    estimate,
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
from covidct.evaluation.metrics import auc, classification_metrics, regression_metrics
from covidct.evaluation.reports import classifier_report, evaluate_predictions, scorer_report, severity_classes


def _kappa_by_loop(t_classes, p_classes, k=5):
    """Quadratic-weighted kappa written out the textbook way (independent of the vectorised one)."""
    n = len(t_classes)
    observed = np.zeros((k, k))
    for a, b in zip(t_classes, p_classes):
        observed[a, b] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / n
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = (i - j) ** 2 / (k - 1) ** 2
            num += w * observed[i, j]
            den += w * expected[i, j]
    return 1 - num / den


def test_weighted_metrics_with_unit_weights_equal_the_plain_ones():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    pred = (p >= 0.5).astype(int)
    ones = np.ones(40)
    plain = classification_metrics(y, p, 0.5)
    assert w_auc(y, p, ones)[0] == pytest.approx(auc(y, p))
    assert w_accuracy(y, pred, ones)[0] == pytest.approx(plain["accuracy"])
    assert w_sensitivity(y, pred, ones)[0] == pytest.approx(plain["sensitivity"])
    assert w_specificity(y, pred, ones)[0] == pytest.approx(plain["specificity"])
    assert w_brier(y, p, ones)[0] == pytest.approx(np.mean((p - y) ** 2))
    t = rng.uniform(0, 100, 40)
    q = np.clip(t + rng.normal(0, 12, 40), 0, 100)
    reg = regression_metrics(t, q)
    for fn, key in (
        (w_mae, "mae"),
        (w_rmse, "rmse"),
        (w_pearson, "pearson_r"),
        (w_class_exact, "class_exact_accuracy"),
        (w_class_within_one, "class_within_one_accuracy"),
    ):
        assert fn(t, q, ones)[0] == pytest.approx(reg[key]), key


def test_a_weight_of_two_is_a_duplicated_scan():
    rng = np.random.default_rng(1)
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.2, 0.6, 0.7, 0.4, 0.9, 0.1])
    w = np.array([1, 2, 1, 3, 1, 0])
    dup = np.repeat(np.arange(6), w)
    assert w_auc(y, p, w)[0] == pytest.approx(auc(y[dup], p[dup]))
    t = rng.uniform(0, 100, 6)
    q = rng.uniform(0, 100, 6)
    assert w_quadratic_kappa(t, q, w)[0] == pytest.approx(
        _kappa_by_loop(severity_classes(t[dup]), severity_classes(q[dup]))
    )
    assert w_pearson(t, q, w)[0] == pytest.approx(np.corrcoef(t[dup], q[dup])[0, 1])


def test_quadratic_weighted_kappa_by_hand():
    t = np.array([5, 25, 45, 65, 85, 10, 30, 50])  # classes 0 1 2 3 4 0 1 2
    assert w_quadratic_kappa(t, t, np.ones(8))[0] == pytest.approx(1.0)
    # a constant prediction agrees no better than chance
    assert w_quadratic_kappa(t, np.full(8, 50.0), np.ones(8))[0] == pytest.approx(0.0)
    p = np.array([5, 45, 45, 85, 85, 30, 10, 50])  # classes 0 2 2 4 4 1 0 2
    expected = _kappa_by_loop(severity_classes(t), severity_classes(p))
    assert w_quadratic_kappa(t, p, np.ones(8))[0] == pytest.approx(expected)
    assert 0 < expected < 1
    # every scan in one class on both sides: undefined, not 1 or 0
    assert np.isnan(w_quadratic_kappa(np.full(4, 5.0), np.full(4, 7.0), np.ones(4))[0])


def test_bootstrap_draws_subjects_with_all_their_scans():
    subjects = ["a", "a", "a", "b", "c", "c", "d"]
    w = bootstrap_weights(subjects, n_boot=500, seed=3)
    assert w.shape == (500, 7)
    # the scans of one subject always carry the same weight, and 4 subjects are drawn per replicate
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 4] == w[:, 5])
    codes, n = subject_codes(subjects)
    assert n == 4
    per_subject = np.stack([w[:, list(codes).index(c)] for c in range(4)], axis=1)
    assert np.all(per_subject.sum(1) == 4)
    assert bootstrap_weights(subjects, 10, seed=3).tolist() == bootstrap_weights(subjects, 10, seed=3).tolist()


def _correlated_cohort(rng, n_subjects, d):
    """Two scans per subject sharing the label and half of the noise (scans of one person are alike)."""
    labels = rng.integers(0, 2, n_subjects)
    y = np.repeat(labels, 2)
    shared = np.repeat(rng.normal(0, 1, n_subjects), 2)
    score = d * y + np.sqrt(0.7) * shared + np.sqrt(0.3) * rng.normal(0, 1, 2 * n_subjects)
    p = 1 / (1 + np.exp(-(score - d / 2)))
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], 2)
    return y, p, subjects


def test_intervals_cover_the_true_value_at_about_the_nominal_rate():
    """Repeated simulation from a population whose AUC, accuracy and MAE are known: the 95% interval by
    subject covers them in about 95% of the test sets; resampling scans as if independent does not."""
    rng = np.random.default_rng(2024)
    d = 1.2
    # binormal with equal unit variances: AUC = Phi(d / sqrt(2)); threshold at d/2: accuracy = Phi(d / 2)
    true_auc, true_acc = norm.cdf(d / np.sqrt(2)), norm.cdf(d / 2)
    true_mae = 10 * np.sqrt(2 / np.pi)  # errors N(0, 10^2): E|e| = 10 sqrt(2/pi)
    reps, n_subjects = 250, 40
    covered = {"auc": 0, "accuracy": 0, "mae": 0, "auc_by_scan": 0}
    for r in range(reps):
        y, p, subjects = _correlated_cohort(rng, n_subjects, d)
        boot = bootstrap_weights(subjects, 1000, seed=r)
        by_scan = bootstrap_weights(np.arange(len(y)).astype(str), 1000, seed=r)
        t = rng.uniform(0, 100, 2 * n_subjects)
        err = np.repeat(rng.normal(0, np.sqrt(70), n_subjects), 2) + rng.normal(0, np.sqrt(30), 2 * n_subjects)
        checks = (
            ("auc", estimate(w_auc, y, p, boot), true_auc),
            ("accuracy", estimate(w_accuracy, y, (p >= 0.5).astype(int), boot), true_acc),
            ("mae", estimate(w_mae, t, t + err, boot), true_mae),
            ("auc_by_scan", estimate(w_auc, y, p, by_scan), true_auc),
        )
        for name, est, truth in checks:
            covered[name] += est["ci_low"] <= truth <= est["ci_high"]
    rate = {k: v / reps for k, v in covered.items()}
    for name in ("auc", "accuracy", "mae"):
        assert 0.88 <= rate[name] <= 0.99, rate
    # scans of one subject counted as independent: intervals too narrow, coverage clearly below nominal
    assert rate["auc_by_scan"] < rate["auc"] - 0.04, rate


def test_too_few_subjects_or_one_class_is_not_interpretable_and_withholds_figures():
    rng = np.random.default_rng(5)
    y, p, subjects = _correlated_cohort(rng, 4, 2.0)
    rep = classifier_report(y, p, 0.5, subjects, train_prevalence=0.5, n_boot=200)
    assert not rep["interpretable"] and rep["reason"] == "not interpretable (n=4 subjects; at least 10 are needed)"
    assert all(m["value"] is None and m["withheld"] == rep["reason"] for m in rep["metrics"].values())
    assert rep["baselines"]["prevalence_accuracy"]["value"] is None
    assert rep["n_scans"] == 8 and sum(map(sum, rep["confusion_matrix"]["rows_true_cols_pred"])) == 8
    y1 = np.ones(30, int)
    one_class = classifier_report(y1, np.full(30, 0.8), 0.5, [f"s{i}" for i in range(30)], 0.5, n_boot=100)
    assert one_class["reason"] == "not interpretable (n=30 subjects; one class is absent)"
    y, p, subjects = _correlated_cohort(rng, 30, 2.0)
    big = classifier_report(y, p, 0.5, subjects, train_prevalence=0.5, n_boot=200)
    assert big["interpretable"] and big["metrics"]["auc"]["value"] > 0.7
    assert big["metrics"]["auc"]["ci_low"] <= big["metrics"]["auc"]["value"] <= big["metrics"]["auc"]["ci_high"]


def test_scorer_baselines_show_a_model_that_does_not_beat_the_segmentation():
    rng = np.random.default_rng(6)
    n = 40
    t = rng.uniform(0, 90, n)
    model = np.clip(t + rng.normal(0, 20, n), 0, 100)  # a poor scorer
    seg = np.clip(t + rng.normal(0, 3, n), 0, 100)  # a good segmentation read-out
    rep = scorer_report(t, model, [f"s{i}" for i in range(n)], train_mean=45.0, segmentation=seg, n_boot=500)
    b = rep["baselines"]
    assert rep["interpretable"]
    assert b["mae_minus_segmentation"]["ci_low"] > 0  # the model is clearly worse than the segmentation
    assert b["segmentation_mae"]["value"] < rep["metrics"]["mae"]["value"]
    assert b["mae_minus_train_mean"]["ci_high"] < 0  # but better than the training mean
    assert b["train_mean_mae"]["value"] == pytest.approx(np.mean(np.abs(t - 45.0)), abs=1e-6)
    assert sum(rep["class_distance_counts"].values()) == n


def test_evaluate_predictions_headlines_test_and_keeps_val_apart():
    rng = np.random.default_rng(7)
    rows, preds = [], []
    for i in range(60):
        split = "test" if i < 24 else "val" if i < 30 else "train"
        label = i % 2
        score = f"{rng.uniform(5, 90):.1f}" if label else "0"
        rows.append(
            {"patient_id": f"p{i}", "subject_id": f"s{i // 2}", "split": split, "label": str(label), "score": score}
        )
        prob = float(np.clip(0.3 + 0.4 * label + rng.normal(0, 0.15), 0, 1))
        pred_score = float(score) + rng.normal(0, 5) if label else 3.0
        preds.append(
            {
                "patient_id": f"p{i}",
                "split": split,
                "covid_probability": prob,
                "score": pred_score,
                "seg_score": float(score) + rng.normal(0, 2),
            }
        )
    out = evaluate_predictions(
        pd.DataFrame(preds),
        pd.DataFrame(rows),
        threshold=0.5,
        scorer_positives_only=True,
        scorer_train_mean=40.0,
        n_boot=300,
    )
    assert out["headline_split"] == "test"
    assert out["splits"]["test"] == {"scans": 24, "subjects": 12} and out["splits"]["val"] == {
        "scans": 6,
        "subjects": 3,
    }
    test, val = out["classifier"]["test"], out["classifier"]["val"]
    assert test["interpretable"] and test["n_subjects"] == 12 and test["metrics"]["auc"]["value"] > 0.8
    assert not val["interpretable"] and "n=3 subjects" in val["reason"] and "optimistic" in val["note"]
    reg = out["scorer"]["test"]
    assert reg["n_scans"] == 12 and reg["baselines"]["segmentation_n"] == 12  # positives only
    # a labeled patient without a prediction is an error, not a silent gap
    with pytest.raises(Exception, match="no prediction for labeled patient"):
        evaluate_predictions(pd.DataFrame(preds[1:]), pd.DataFrame(rows), 0.5, True, 40.0, n_boot=100)
