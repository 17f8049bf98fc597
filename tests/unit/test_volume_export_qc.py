import numpy as np
import pytest
import SimpleITK as sitk

from covidct.dicom.hu import to_hu
from covidct.hounsfield import HU_AIR, window
from covidct.models.inputs import model_array, resize
from covidct.report.montage import montage
from covidct.volume import bounding_box, resample, resample_like


def test_to_hu_applies_rescale_and_maps_padding_to_air():
    stored = np.array([[0, 1024, 2048], [-2000, 5, 100]], np.int16)
    hu = to_hu(stored, slope=1.0, intercept=-1024.0, padding_value=5)
    assert hu.dtype == np.int16
    assert hu.tolist() == [[-1024, 0, 1024], [HU_AIR, HU_AIR, -924]]
    # slope 0.5 and values beyond the HU range are clipped
    assert to_hu(np.array([8000]), 0.5, 0.0).tolist() == [3071]
    # -3024 padding (GE) is far below air: becomes air without a PixelPaddingValue
    assert to_hu(np.array([-3024]), 1.0, 0.0).tolist() == [HU_AIR]


def _image(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def test_resample_reaches_isotropic_spacing_and_keeps_physical_position():
    arr = np.full((10, 20, 20), -1000, np.int16)
    arr[4:6, 8:12, 8:12] = 100  # a block at known physical position
    img = _image(arr, spacing=(1.0, 1.0, 3.0), origin=(-10.0, -10.0, 0.0))
    out = resample(img, 1.5)
    assert out.GetSpacing() == (1.5, 1.5, 1.5)
    assert out.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    res = sitk.GetArrayFromImage(out)
    # centre of mass of the block in physical space is preserved (within a voxel)
    zz, yy, xx = np.nonzero(res > 0)
    phys = np.mean([out.TransformIndexToPhysicalPoint((int(x), int(y), int(z))) for z, y, x in zip(zz, yy, xx)], axis=0)
    assert phys == pytest.approx((-0.5, -0.5, 13.5), abs=1.0)


def test_resample_canonicalises_flipped_axes():
    arr = np.zeros((6, 8, 8), np.int16) - 1000
    arr[:, :, 0] = 500  # first column is bright
    # row direction (-1,0,0): column index grows toward patient right, so column 0 is the most LEFT (max x)
    flipped = _image(arr, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(7.0, 0.0, 0.0))
    out = sitk.GetArrayFromImage(resample(flipped, 1.0))
    assert out.shape == (6, 8, 8)
    assert (out[:, :, -1] == 500).all() and (out[:, :, 0] == -1000).all()


def test_resample_like_maps_mask_back_to_reference_grid():
    ref = _image(np.zeros((4, 6, 6), np.uint8), spacing=(2.0, 2.0, 2.0))
    fine = resample(ref, 1.0)
    back = resample_like(fine, ref)
    assert back.GetSize() == ref.GetSize()


def test_window_and_bbox_exact():
    assert window(np.array([-1000, 400, -300]), -1000, 400).tolist() == [0.0, 1.0, 0.5]
    m = np.zeros((4, 4, 4), bool)
    m[1, 2, 3] = True
    assert bounding_box(m, (1, 1, 1)) == (slice(0, 3), slice(1, 4), slice(2, 4))
    assert bounding_box(np.zeros((2, 2, 2), bool)) is None
    with pytest.raises(ValueError, match="empty lung mask"):
        model_array(np.zeros((4, 4, 4)), np.zeros((4, 4, 4), bool), (1.0, 1.0, 1.0), shape=(2, 2, 2))


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


def test_montage_draws_contours_in_side_colours(phantom):
    hu, labels = phantom
    rgb = montage(hu, labels, n_slices=4, columns=2)
    assert rgb.shape == (2 * hu.shape[1], 2 * hu.shape[2], 3) and rgb.dtype == np.uint8
    red = np.all(rgb == (255, 60, 60), axis=2).sum()
    green = np.all(rgb == (60, 220, 60), axis=2).sum()
    assert red > 20 and green > 20
