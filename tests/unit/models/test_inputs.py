"""The model-ready array: cropped to the lungs, outside the lung air, windowed, resized."""

import numpy as np
import pytest

from covidct.models.inputs import model_array, resize


def test_resize_exact_shape_and_preserves_constant():
    out = resize(np.full((7, 9, 11), 0.25, np.float32), (4, 8, 16))
    assert out.shape == (4, 8, 16) and np.allclose(out, 0.25)


def test_model_array_sets_outside_lung_to_air_and_scales(phantom):
    hu, labels = phantom
    arr = model_array(hu, labels, (5.0, 5.0, 5.0), shape=(16, 32, 32), margin_mm=5.0)
    assert arr.shape == (16, 32, 32) and arr.dtype == np.float32
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    # lung at -850 HU -> (1000-850)/1400 = 0.107; the body (+40 HU -> 0.74) is gone: outside lung is air (0)
    lung_value = (-850 + 1000) / 1400
    assert np.median(arr[arr > 0.02]) == pytest.approx(lung_value, abs=0.03)
    assert (arr > 0.5).mean() < 0.01
    # binary: left lung (label 2) is not brighter than the right (the original study's x2 bug)
    full = model_array(hu, labels, (5.0, 5.0, 5.0), shape=tuple(hu.shape), margin_mm=100.0)
    right = full[:, :, : hu.shape[2] // 2][full[:, :, : hu.shape[2] // 2] > 0.02]
    left = full[:, :, hu.shape[2] // 2 :][full[:, :, hu.shape[2] // 2 :] > 0.02]
    assert abs(np.median(right) - np.median(left)) < 0.02
