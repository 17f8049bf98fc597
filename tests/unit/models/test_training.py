"""Learning on a tiny synthetic cohort (16x32x32, CPU): real assertions that the models learn, that the
test split is evaluated with intervals by subject, and that cross-validation keeps subjects apart."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from covidct.evaluation.reports import evaluate_predictions
from covidct.models.data import write_hdf5
from covidct.models.inputs import model_array
from covidct.models.predict import COLUMNS, SEG_COLUMNS, predict_arrays
from covidct.models.train import TrainSettings, cross_validate, cv_folds, plot_training, save_model, train_model
from covidct.severity.readout import READOUT_COLUMNS
from helpers import chest_phantom

SHAPE = (16, 32, 32)
SMALL = dict(filters=(8, 8, 16, 32), dense=32, batch_size=4, learning_rate=1e-3, seed=1)


def _sample(i: int, covid: bool):
    """A lesion-free or lesioned phantom; lesions fill a known fraction of the lung."""
    rng = np.random.default_rng(i)
    hu, labels = chest_phantom(shape=(24, 40, 40), spacing=(8.0, 8.0, 8.0), seed=i, trachea=False)
    hu = hu.copy()
    score = 0.0
    if covid:
        lung = labels > 0
        field = ndimage.gaussian_filter(rng.normal(size=hu.shape), 2)
        lesion = lung & (field >= np.quantile(field[lung], 1 - rng.uniform(5, 80) / 100))
        hu[lesion] = rng.uniform(-600, -100, size=int(lesion.sum()))
        score = 100.0 * lesion.sum() / lung.sum()
    return model_array(hu, labels, (8.0, 8.0, 8.0), shape=SHAPE), score


def _cohort(n: int, start: int):
    for i in range(n):
        array, score = _sample(start + i, covid=i % 2 == 0)
        yield f"p{start + i}", array, int(i % 2 == 0), float(score)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both models trained once on 48 patients, selected on 16."""
    d = tmp_path_factory.mktemp("h5")
    write_hdf5(d / "train.h5", _cohort(48, 0), SHAPE, (-1000, 400))
    write_hdf5(d / "val.h5", _cohort(16, 1000), SHAPE, (-1000, 400))
    plots = d / "plots"
    clf = train_model("classifier", d / "train.h5", d / "val.h5", d, TrainSettings(epochs=10, patience=10, **SMALL))
    save_model(clf, d / "c.keras", d / "c.json", d / "c.csv", d / "c_metrics.json")
    plot_training("classifier", clf, plots / "classifier_training.png", plots / "classifier_roc.png")
    settings = TrainSettings(epochs=25, patience=25, positives_only=False, **SMALL)
    reg = train_model("scorer", d / "train.h5", d / "val.h5", d, settings)
    save_model(reg, d / "s.keras", d / "s.json", d / "s.csv", d / "s_metrics.json")
    plots = [plots / f"scorer_{name}.png" for name in ("training", "scatter", "severity_confusion")]
    plot_training("scorer", reg, *plots)
    return d, clf.metrics, reg.metrics


def test_classifier_separates_lesion_from_lesion_free(trained):
    d, result, _ = trained
    assert result["auc"] >= 0.9
    assert result["split"] == "val" and "optimistic" in result["note"]
    assert (d / "c.keras").is_file() and (d / "plots" / "classifier_roc.png").is_file()
    sidecar = json.loads((d / "c.json").read_text())
    assert 0 <= sidecar["threshold"] <= 1
    history = (d / "c.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 1 + result["epochs_run"]


def test_scorer_beats_the_training_mean(trained):
    d, _, result = trained
    assert result["mae"] < 0.6 * result["baseline_mae_train_mean"], result
    assert result["pearson_r"] > 0.8
    assert sum(result["class_distance_counts"].values()) == result["n"] == 16
    for name in ("scorer_scatter.png", "scorer_severity_confusion.png", "scorer_training.png"):
        assert (d / "plots" / name).is_file()
    sidecar = json.loads((d / "s.json").read_text())
    assert sidecar["positives_only"] is False and 0 < sidecar["train_mean"] < 100


def test_unseen_test_patients_get_figures_with_intervals_and_baselines(trained):
    """A test split of 30 scans of 15 subjects (two scans each) the models never saw: the figures are
    interpretable, carry bootstrap intervals by subject, and stand beside their baselines."""
    d, _, reg = trained
    arrays, rows, preds_in = [], [], []
    for i in range(30):
        covid = (i // 2) % 2 == 0  # both scans of a subject share the label
        array, score = _sample(3000 + i, covid=covid)
        arrays.append((f"t{i}", array))
        rows.append(
            {
                "patient_id": f"t{i}",
                "subject_id": f"subj{i // 2}",
                "split": "test",
                "label": str(int(covid)),
                "score": f"{score:.2f}",
            }
        )
    out = predict_arrays(arrays, d / "c.keras", d / "s.keras", json.loads((d / "c.json").read_text())["threshold"])
    assert [r["patient_id"] for r in out] == [f"t{i}" for i in range(30)]
    assert all(set(COLUMNS) - set(SEG_COLUMNS) - set(READOUT_COLUMNS) <= set(r) for r in out)
    assert all(0 <= r["score"] <= 100 and r["ctsi"] == int(r["score"] // 4) for r in out)
    preds_in = pd.DataFrame([{**r, "seg_score": float(rows[k]["score"])} for k, r in enumerate(out)])
    result = evaluate_predictions(
        preds_in,
        pd.DataFrame(rows),
        threshold=json.loads((d / "c.json").read_text())["threshold"],
        scorer_positives_only=False,
        scorer_train_mean=json.loads((d / "s.json").read_text())["train_mean"],
        n_boot=500,
    )
    clf, sco = result["classifier"]["test"], result["scorer"]["test"]
    assert clf["interpretable"] and clf["n_subjects"] == 15 and clf["n_scans"] == 30
    auc = clf["metrics"]["auc"]
    assert auc["value"] >= 0.85 and auc["ci_low"] <= auc["value"] <= auc["ci_high"] and auc["n_boot"] > 400
    assert clf["baselines"]["prevalence_auc"] == 0.5 and clf["calibration"]
    assert sco["interpretable"]
    mae = sco["metrics"]["mae"]
    assert mae["ci_low"] <= mae["value"] <= mae["ci_high"]
    assert sco["baselines"]["mae_minus_train_mean"]["ci_high"] < 0  # it beats the training mean
    # the "segmentation" here is the truth itself: the scorer cannot beat it, and the report says so
    assert sco["baselines"]["segmentation_mae"]["value"] == pytest.approx(0.0, abs=0.01)
    assert sco["baselines"]["mae_minus_segmentation"]["ci_low"] > 0


def _plain_cohort(n, start, shape=(16, 16, 16)):
    """Random arrays whose label shows as brightness: enough for the plumbing of cross-validation."""
    rng = np.random.default_rng(start)
    for i in range(n):
        label = i % 2
        yield f"c{start + i}", (rng.random(shape) * 0.5 + 0.4 * label).astype(np.float32), label, 10.0 + 60 * label


def test_cross_validation_keeps_subjects_apart_and_predicts_every_scan_once(tmp_path):
    shape = (16, 16, 16)
    write_hdf5(tmp_path / "train.h5", _plain_cohort(18, 0, shape), shape, (-1000, 400))
    write_hdf5(tmp_path / "val.h5", _plain_cohort(6, 100, shape), shape, (-1000, 400))
    ids = [f"c{i}" for i in range(18)] + [f"c{100 + i}" for i in range(6)]
    # subjects of two scans each (same label: c0 & c2, c1 & c3, ...)
    subject = {pid: f"s{k // 4}_{k % 2}" for k, pid in enumerate(ids)}
    pd.DataFrame(
        {
            "patient_id": ids,
            "subject_id": [subject[p] for p in ids],
            "split": ["train"] * 18 + ["val"] * 6,
            "label": [str(k % 2) for k in range(24)],
            "score": ["" for _ in ids],
        }
    ).to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    tiny = dict(filters=(4, 4, 8, 8), dense=8, batch_size=4, learning_rate=1e-3, seed=2, epochs=1, patience=1)
    with pytest.raises(Exception, match="at least 3 folds"):
        cross_validate(
            tmp_path / "train.h5",
            tmp_path / "val.h5",
            tmp_path / "split.tsv",
            tmp_path / "cv.json",
            folds=2,
            settings=TrainSettings(**tiny),
        )
    result = cross_validate(
        tmp_path / "train.h5",
        tmp_path / "val.h5",
        tmp_path / "split.tsv",
        tmp_path / "cv.json",
        folds=3,
        n_boot=200,
        settings=TrainSettings(**tiny, positives_only=False),
    )
    assert json.loads((tmp_path / "cv.json").read_text())["folds"] == 3
    assert len(result["per_fold"]) == 3 and sum(e["n_test_scans"] for e in result["per_fold"]) == 24
    assert result["n_subjects"] == 12
    folds = cv_folds([subject[p] for p in ids], [k % 2 for k in range(24)], 3, "covidct-split:cv")
    assert set(folds) == set(subject.values())  # one fold per subject: its scans are never split
    for e in result["per_fold"]:
        assert e["n_train_scans"] + e["n_val_scans"] + e["n_test_scans"] == 24
        assert e["classifier"]["n"] == e["n_test_scans"] and "mae" in e["scorer"]
        assert not e["interpretable"]["interpretable"]  # 4 subjects per fold: said so
    assert result["mean_sd"]["classifier"]["auc"]["n_folds"] == 3
    assert result["pooled_out_of_fold"]["classifier"]["interpretable"]
    assert result["pooled_out_of_fold"]["classifier"]["metrics"]["accuracy"]["ci_low"] is not None
