"""Volumes on grids: resampling to the LPS-aligned isotropic grid, back onto a reference grid, the bounding
box of a mask; ``Volume``, an array that travels with its grid."""

import numpy as np
import pytest
import SimpleITK as sitk

from covidct.errors import CovidctError
from covidct.hounsfield import window
from covidct.models.inputs import model_array
from covidct.volume import Volume, bounding_box, resample, resample_like


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


def test_a_volume_travels_with_its_grid(tmp_path):
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    direction = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # x and y reversed
    sitk.WriteImage(_image(array, (0.5, 0.75, 2.0), (10.0, -5.0, 3.0), direction), str(tmp_path / "v.nii.gz"))
    volume = Volume.read(tmp_path / "v.nii.gz")
    assert volume.array.dtype == np.int16 and np.array_equal(volume.array, array)
    assert volume.spacing == (0.5, 0.75, 2.0) and volume.origin == (10.0, -5.0, 3.0)
    assert volume.direction == direction and volume.path == tmp_path / "v.nii.gz"
    assert volume.voxel_ml == pytest.approx(0.5 * 0.75 * 2.0 / 1000)
    mask = volume.like((array > 10).astype(np.uint8))
    mask.write(tmp_path / "m.nii.gz")
    back = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert back.GetSpacing() == (0.5, 0.75, 2.0) and back.GetOrigin() == (10.0, -5.0, 3.0)
    assert back.GetDirection() == direction and back.GetPixelID() == sitk.sitkUInt8
    with pytest.raises(ValueError, match="shape"):
        volume.like(np.zeros((3, 3, 3)))


def test_a_volume_off_the_grid_is_named_with_its_file(tmp_path):
    array = np.zeros((2, 3, 4), np.uint8)
    sitk.WriteImage(_image(array), str(tmp_path / "ref.nii.gz"))
    sitk.WriteImage(_image(array, origin=(0.0, 0.0, 0.0005)), str(tmp_path / "close.nii.gz"))
    sitk.WriteImage(_image(array, spacing=(1.0, 1.0, 1.1)), str(tmp_path / "far.nii.gz"))
    reference = Volume.read(tmp_path / "ref.nii.gz")
    close, far = Volume.read(tmp_path / "close.nii.gz"), Volume.read(tmp_path / "far.nii.gz")
    assert close.on_grid_of(reference) and close.require_grid_of(reference, "mask", "p1") is close
    assert not far.on_grid_of(reference) and not Volume(
        np.zeros((2, 3, 5)), (1.0,) * 3, (0.0,) * 3, reference.direction
    ).on_grid_of(reference)
    with pytest.raises(CovidctError, match="the lung label map is not on the resampled volume's grid") as err:
        far.require_grid_of(reference, "lung label map", "p1")
    assert "patient p1" in str(err.value) and "far.nii.gz" in str(err.value)
