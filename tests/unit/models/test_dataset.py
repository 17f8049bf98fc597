"""Split, HDF5 data sets and metrics."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from covidct.errors import CovidctError
from covidct.evaluation.metrics import (
    auc,
    class_distance_table,
    classification_metrics,
    regression_metrics,
    youden_threshold,
)
from covidct.models.data import read_hdf5, write_hdf5
from covidct.severity import ctsi, severity_class
from covidct.split import assign_split, hash_unit


def test_severity_classes_and_ctsi_at_the_bounds():
    assert [severity_class(s) for s in (0, 19.99, 20, 39.9, 40, 60, 79.9, 80, 100)] == [0, 0, 1, 1, 2, 3, 3, 4, 4]
    assert [ctsi(s) for s in (0, 3.99, 4, 99.9, 100)] == [0, 0, 1, 24, 25]
    with pytest.raises(ValueError):
        severity_class(101)


def test_split_is_stable_when_patients_are_added():
    first = [f"P{i:04d}" for i in range(600)]
    before = assign_split(first)
    after = assign_split(first + [f"N{i:04d}" for i in range(900)])
    assert all(after[p] == before[p] for p in first)
    shares = {s: sum(v == s for v in before.values()) / len(first) for s in ("train", "val", "test")}
    assert abs(shares["test"] - 0.15) < 0.045 and abs(shares["val"] - 0.15) < 0.045, shares
    # another salt draws another split; the salt is the key
    assert assign_split(first, salt="other") != before
    # other fractions: the three shares follow
    other = assign_split(first, val_fraction=0.2, test_fraction=0.3)
    assert abs(sum(v == "test" for v in other.values()) / len(first) - 0.3) < 0.06


def test_split_is_stratified_by_label_and_severity_band():
    rng = np.random.default_rng(0)
    ids = [f"S{i:05d}" for i in range(4000)]
    strata = rng.integers(0, 6, len(ids))  # negative + five severity bands
    split = assign_split(ids, val_fraction=0.2, test_fraction=0.1)
    for s in range(6):
        members = [p for p, k in zip(ids, strata) if k == s]
        for which, frac in (("val", 0.2), ("test", 0.1)):
            share = sum(split[p] == which for p in members) / len(members)
            assert abs(share - frac) < 0.045, (s, which, share)


def _scans(n_subjects, rng, prefix="S"):
    """Rows of several scans per subject (1 to 4), each scan with its own id."""
    ids, subjects = [], {}
    for s in range(n_subjects):
        for k in range(int(rng.integers(1, 5))):
            pid = f"{prefix}{s:04d}_scan{k}"
            ids.append(pid)
            subjects[pid] = f"{prefix}{s:04d}"
    return ids, subjects


def test_no_subject_straddles_splits_and_adding_scans_moves_no_one():
    rng = np.random.default_rng(3)
    ids, subjects = _scans(300, rng)
    split = assign_split(ids, subjects=subjects)
    by_subject = {}
    for pid in ids:
        by_subject.setdefault(subjects[pid], set()).add(split[pid])
    assert all(len(v) == 1 for v in by_subject.values())
    assert {next(iter(v)) for v in by_subject.values()} == {"train", "val", "test"}
    # a follow-up scan of an existing subject and new subjects: nobody moves, the follow-up joins its subject
    more_ids, more_subjects = _scans(200, rng, prefix="N")
    follow_up = {"S0007_scan9": "S0007"}
    after = assign_split(ids + more_ids + list(follow_up), subjects={**subjects, **more_subjects, **follow_up})
    assert all(after[p] == split[p] for p in ids)
    assert after["S0007_scan9"] == split["S0007_scan0"]
    # the split is the subject's: renaming a scan's patient_id does not move it
    renamed = assign_split(["renamed"] + ids[1:], subjects={**subjects, "renamed": subjects[ids[0]]})
    assert renamed["renamed"] == split[ids[0]]


def test_a_pin_moves_the_whole_subject_and_conflicting_pins_are_an_error():
    rng = np.random.default_rng(4)
    ids, subjects = _scans(50, rng)
    natural = assign_split(ids, subjects=subjects)
    target = next(p for p in ids if natural[p] != "test" and sum(subjects[q] == subjects[p] for q in ids) > 1)
    pinned = assign_split(ids, pinned={target: "test"}, subjects=subjects)
    mates = [p for p in ids if subjects[p] == subjects[target]]
    assert all(pinned[p] == "test" for p in mates)
    assert all(pinned[p] == natural[p] for p in ids if subjects[p] != subjects[target])
    with pytest.raises(CovidctError, match=f"patient {mates[1]}.*subject {subjects[target]} is pinned to test"):
        assign_split(ids, pinned={mates[0]: "test", mates[1]: "train"}, subjects=subjects)


def test_pinned_split_wins_and_bad_value_is_an_error():
    ids = [f"P{i}" for i in range(50)]
    natural = assign_split(ids)
    flipped = {p: ("train" if natural[p] != "train" else "test") for p in ids[:5]}
    pinned = assign_split(ids, pinned=flipped)
    assert all(pinned[p] == flipped[p] for p in ids[:5])
    assert all(pinned[p] == natural[p] for p in ids[5:])
    with pytest.raises(CovidctError, match="patient P0"):
        assign_split(ids, pinned={"P0": "holdout"})
    with pytest.raises(CovidctError, match="fractions"):
        assign_split(ids, val_fraction=0.6, test_fraction=0.5)
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


def test_build_hdf5_writes_three_splits_by_subject(tmp_path):
    import pandas as pd

    from covidct.steps import build_hdf5

    shape = (4, 8, 8)
    rng = np.random.default_rng(8)
    patients, npys = [], []
    for i in range(40):
        path = tmp_path / f"p{i}.npy"
        np.save(path, rng.random(shape, dtype=np.float32))
        npys.append(str(path))
        patients.append(
            {
                "patient_id": f"p{i}",
                "label": str(i % 2),
                "score": f"{i}.5" if i % 2 else "",
                "split": "test" if i == 3 else "",
                "subject_id": f"s{i // 4}",
            }
        )
    counts = build_hdf5(
        npys,
        tmp_path / "train.h5",
        tmp_path / "val.h5",
        tmp_path / "test.h5",
        tmp_path / "split.tsv",
        patients,
        val_fraction=0.3,
        test_fraction=0.3,
        shape=shape,
    )
    table = pd.read_csv(tmp_path / "split.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["patient_id", "subject_id", "split", "label", "score"]
    assert table.groupby("subject_id")["split"].nunique().max() == 1
    assert set(table[table["subject_id"] == "s0"]["split"]) == {"test"}  # p3's pin took its subject along
    for split in ("train", "val", "test"):
        data = read_hdf5(tmp_path / f"{split}.h5")
        assert data["patient_ids"] == table[table["split"] == split]["patient_id"].tolist()
        assert counts[split] == len(data["patient_ids"]) > 0
