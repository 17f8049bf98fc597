"""The step of workflow/rules/export.smk: the model array, or an error naming the patient and the mask."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from covidct import steps
from covidct.errors import CovidctError


def _write(array, path):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((5.0, 5.0, 5.0))
    sitk.WriteImage(image, str(path))


def test_the_array_and_an_empty_mask(tmp_path, phantom):
    hu, labels = phantom
    _write(hu, tmp_path / "v.nii.gz")
    _write((labels > 0).astype(np.uint8), tmp_path / "m.nii.gz")
    array = steps.export_npy(tmp_path / "v.nii.gz", tmp_path / "m.nii.gz", tmp_path / "a.npy", "p1", shape=(8, 16, 16))
    assert np.array_equal(np.load(tmp_path / "a.npy"), array) and array.shape == (8, 16, 16)
    assert array.dtype == np.float32 and 0.0 <= array.min() and array.max() <= 1.0
    _write(np.zeros_like(labels, np.uint8), tmp_path / "empty.nii.gz")
    with pytest.raises(CovidctError, match="lung mask is empty: nothing to export") as err:
        steps.export_npy(tmp_path / "v.nii.gz", tmp_path / "empty.nii.gz", tmp_path / "b.npy", "p1")
    assert "patient p1" in str(err.value) and "empty.nii.gz" in str(err.value)
    assert not (tmp_path / "b.npy").exists()
