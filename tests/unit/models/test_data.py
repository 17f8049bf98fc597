"""The HDF5 data sets: round trip, errors that name the patient, memory that does not grow with the cohort."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from covidct.errors import CovidctError
from covidct.models.data import read_hdf5, write_hdf5


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
