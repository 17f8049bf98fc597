"""Learning on a tiny synthetic cohort (16x32x32, CPU): real assertions that the models learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from conftest import chest_phantom
from covidct import train
from covidct.dataset import write_hdf5
from covidct.export import model_array
from covidct.predict import COLUMNS, SEG_COLUMNS, predict_arrays

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
def h5(tmp_path_factory):
    d = tmp_path_factory.mktemp("h5")
    write_hdf5(d / "train.h5", _cohort(48, 0), SHAPE, (-1000, 400))
    write_hdf5(d / "val.h5", _cohort(16, 1000), SHAPE, (-1000, 400))
    return d


def test_classifier_separates_lesion_from_lesion_free(h5, tmp_path):
    result = train.train_classifier(h5 / "train.h5", h5 / "val.h5", tmp_path / "c.keras", tmp_path / "c.csv",
                                    tmp_path / "c_metrics.json", tmp_path / "plots", epochs=10, patience=10, **SMALL)
    assert result["auc"] >= 0.9
    assert (tmp_path / "c.keras").is_file() and (tmp_path / "plots" / "classifier_roc.png").is_file()
    sidecar = json.loads((tmp_path / "c.json").read_text())
    assert 0 <= sidecar["threshold"] <= 1
    history = (tmp_path / "c.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 1 + result["epochs_run"]


def test_scorer_beats_the_training_mean(h5, tmp_path):
    result = train.train_scorer(h5 / "train.h5", h5 / "val.h5", tmp_path / "s.keras", tmp_path / "s.csv",
                                tmp_path / "s_metrics.json", tmp_path / "plots", epochs=25, patience=25,
                                positives_only=False, **SMALL)
    assert result["mae"] < 0.6 * result["baseline_mae_train_mean"], result
    assert result["pearson_r"] > 0.8
    assert sum(result["class_distance_counts"].values()) == result["n"] == 16
    for name in ("scorer_scatter.png", "scorer_severity_confusion.png", "scorer_training.png"):
        assert (tmp_path / "plots" / name).is_file()
    # the saved model predicts percent in [0, 100] and predict_arrays gives every column
    train.train_classifier(h5 / "train.h5", h5 / "val.h5", tmp_path / "c.keras", tmp_path / "c.csv",
                           tmp_path / "c_metrics.json", tmp_path / "plots", epochs=1, patience=1, **SMALL)
    arrays = [(f"q{i}", _sample(2000 + i, covid=True)[0]) for i in range(3)]
    rows = predict_arrays(arrays, tmp_path / "c.keras", tmp_path / "s.keras")
    assert [r["patient_id"] for r in rows] == ["q0", "q1", "q2"]
    assert all(set(COLUMNS) - set(SEG_COLUMNS) <= set(r) for r in rows)
    assert all(0 <= r["score"] <= 100 and r["ctsi"] == int(r["score"] // 4) for r in rows)
