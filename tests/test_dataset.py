"""Split, HDF5 data sets and metrics."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from covidct.dataset import assign_split, ctsi, hash_unit, read_hdf5, severity_class, write_hdf5
from covidct.errors import CovidctError
from covidct.metrics import auc, class_distance_table, classification_metrics, regression_metrics, youden_threshold


def test_severity_classes_and_ctsi_at_the_bounds():
    assert [severity_class(s) for s in (0, 19.99, 20, 39.9, 40, 60, 79.9, 80, 100)] == [0, 0, 1, 1, 2, 3, 3, 4, 4]
    assert [ctsi(s) for s in (0, 3.99, 4, 99.9, 100)] == [0, 0, 1, 24, 25]
    with pytest.raises(ValueError):
        severity_class(101)


def test_split_is_stable_when_patients_are_added():
    first = [f"P{i:04d}" for i in range(300)]
    before = assign_split(first)
    after = assign_split(first + [f"N{i:04d}" for i in range(500)])
    assert all(after[p] == before[p] for p in first)
    assert 0.12 < sum(v == "val" for v in before.values()) / len(first) < 0.28
    # another salt draws another split; the salt is the key
    assert assign_split(first, salt="other") != before


def test_split_is_stratified_by_label_and_severity_band():
    rng = np.random.default_rng(0)
    ids = [f"S{i:05d}" for i in range(4000)]
    strata = rng.integers(0, 6, len(ids))  # negative + five severity bands
    split = assign_split(ids, val_fraction=0.2)
    for s in range(6):
        members = [p for p, k in zip(ids, strata) if k == s]
        frac = sum(split[p] == "val" for p in members) / len(members)
        assert abs(frac - 0.2) < 0.04, (s, frac)


def test_pinned_split_wins_and_bad_value_is_an_error():
    ids = [f"P{i}" for i in range(50)]
    natural = assign_split(ids)
    flipped = {p: ("train" if natural[p] == "val" else "val") for p in ids[:5]}
    pinned = assign_split(ids, pinned=flipped)
    assert all(pinned[p] == flipped[p] for p in ids[:5])
    assert all(pinned[p] == natural[p] for p in ids[5:])
    with pytest.raises(CovidctError, match="patient P0"):
        assign_split(ids, pinned={"P0": "test"})
    assert 0 <= hash_unit("P0", "x") < 1


def _samples(n, shape, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield f"p{i:03d}", rng.random(shape, dtype=np.float32), i % 2, float(10 * i)


def test_hdf5_round_trip(tmp_path):
    shape = (4, 8, 8)
    originals = list(_samples(5, shape))
    n = write_hdf5(tmp_path / "d.h5", iter(originals), shape, (-1000, 400))
    assert n == 5
    data = read_hdf5(tmp_path / "d.h5")
    assert data["images"].shape == (5, 4, 8, 8, 1) and data["images"].dtype == np.float16
    for i, (pid, arr, label, score) in enumerate(originals):
        assert data["patient_ids"][i] == pid
        assert data["labels"][i] == label and data["scores"][i] == score
        np.testing.assert_allclose(data["images"][i, ..., 0], arr, atol=5e-4)
    assert data["attrs"]["hu_min"] == -1000 and data["attrs"]["hu_max"] == 400
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["images"].chunks == (1, 4, 8, 8, 1)
        assert f["images"].compression == "gzip"
        assert f["labels"].dtype == np.uint8 and f["scores"].dtype == np.float32


def test_hdf5_wrong_shape_names_patient_and_leaves_nothing(tmp_path):
    bad = [("p1", np.zeros((4, 8, 8), np.float32), 1, 1.0), ("p2", np.zeros((4, 8, 9), np.float32), 0, 0.0)]
    with pytest.raises(CovidctError, match="patient p2"):
        write_hdf5(tmp_path / "d.h5", iter(bad), (4, 8, 8), (-1000, 400))
    assert list(tmp_path.iterdir()) == []


def test_hdf5_peak_memory_does_not_grow_with_n(tmp_path):
    shape = (16, 64, 64)  # 256 KiB per float32 sample
    peaks = {}
    for n in (4, 64):
        tracemalloc.start()
        write_hdf5(tmp_path / f"d{n}.h5", _samples(n, shape), shape, (-1000, 400))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    sample_bytes = np.prod(shape) * 4
    assert peaks[64] < 4 * sample_bytes, peaks  # a handful of samples at most, never all 64
    assert peaks[64] < 1.5 * peaks[4] + sample_bytes, peaks


def test_auc_youden_and_confusion_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.3, 0.6, 0.4, 0.7, 0.9])
    assert auc(y, p) == pytest.approx(8 / 9)  # 8 of the 9 (positive, negative) pairs are ordered right
    assert auc([1, 1], [0.2, 0.3]) is None
    t = youden_threshold(y, p)
    assert t == pytest.approx(0.7) or t == pytest.approx(0.4)
    m = classification_metrics(y, p, threshold=0.5)
    assert m["confusion_matrix"]["rows_true_cols_pred"] == [[2, 1], [1, 2]]
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_regression_metrics_and_class_distance_table_by_hand():
    true = [5, 25, 45, 65, 85]
    pred = [10, 45, 45, 20, 85]  # classes: 0->0, 1->2, 2->2, 3->1, 4->4
    assert class_distance_table(true, pred) == {0: 3, 1: 1, 2: 1, 3: 0, 4: 0}
    m = regression_metrics(true, pred)
    assert m["mae"] == pytest.approx((5 + 20 + 0 + 45 + 0) / 5)
    assert m["rmse"] == pytest.approx(np.sqrt((25 + 400 + 0 + 2025 + 0) / 5))
    assert m["class_exact_accuracy"] == pytest.approx(0.6)
    assert m["class_within_one_accuracy"] == pytest.approx(0.8)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(true, pred)[0, 1])
