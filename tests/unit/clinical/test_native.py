"""Label maps onto the scan's own grid (covidct.clinical.native) on tiny synthetic grids."""

import numpy as np
import SimpleITK as sitk

from covidct.clinical.native import hu_band_types, interpolate_labels, native_maps


def _image(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_same_grid_gives_the_same_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (6, 7, 8)).astype(np.uint8)
    image = _image(labels)
    assert np.array_equal(interpolate_labels(image, image), labels)


def test_half_voxel_shift_takes_the_majority_and_ties_go_to_background():
    # a 1D step along x on a 2 mm grid, resampled on a 1 mm grid: each target voxel lies between two
    # sources (p = 0.5 at the midpoint: background wins the tie) or on one of them
    labels = np.zeros((1, 1, 6), np.uint8)
    labels[..., 3:] = 2
    source = _image(labels, spacing=(2.0, 1.0, 1.0))
    target = _image(np.zeros((1, 1, 11), np.int16), spacing=(1.0, 1.0, 1.0))
    out = interpolate_labels(source, target)
    # x = 0..10 mm; the label starts at x = 6 mm (source voxel 3), x = 5 mm is the tie
    assert out[0, 0].tolist() == [0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2]


def test_three_labels_never_invent_a_code_between_neighbours():
    # labels 1 and 3 side by side: averaging codes would give 2 at the border, argmax never does
    labels = np.zeros((1, 1, 4), np.uint8)
    labels[..., :2] = 1
    labels[..., 2:] = 3
    source = _image(labels, spacing=(2.0, 1.0, 1.0))
    target = _image(np.zeros((1, 1, 7), np.int16))
    out = interpolate_labels(source, target)
    assert set(np.unique(out)) <= {0, 1, 3} and 2 not in out
    assert out[0, 0].tolist() == [1, 1, 1, 1, 3, 3, 3]


def test_within_gives_every_voxel_of_the_mask_a_label_and_none_outside():
    labels = np.zeros((1, 1, 4), np.uint8)
    labels[..., 1] = 5
    source = _image(labels, spacing=(2.0, 1.0, 1.0))
    target = _image(np.zeros((1, 1, 7), np.int16))
    within = np.zeros((1, 1, 7), bool)
    within[..., 1:4] = True
    out = interpolate_labels(source, target, within=within)
    # x = 1 and 3 mm have p = 0.5 for label 5: a label inside `within`, where background would win the tie
    assert out[0, 0].tolist() == [0, 5, 5, 5, 0, 0, 0]


def test_a_ball_keeps_its_volume_on_a_finer_grid():
    z, y, x = np.ogrid[:20, :20, :20]
    ball = (((z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2) <= 36).astype(np.uint8)  # r = 6 voxels of 1.5 mm
    source = _image(ball, spacing=(1.5, 1.5, 1.5))
    # shifted by 0.2 mm: no target voxel centre sits exactly midway between two source centres (a tie)
    target = _image(np.zeros((20, 40, 40), np.int16), spacing=(0.75, 0.75, 1.5), origin=(0.2, 0.2, 0.2))
    out = interpolate_labels(source, target)
    volume_source = ball.sum() * 1.5**3
    volume_target = (out == 1).sum() * 0.75 * 0.75 * 1.5
    assert abs(volume_target - volume_source) / volume_source < 0.03
    assert 0 < (out != 0).sum() and out.max() == 1


def test_hu_band_types_follow_the_readout_rule():
    hu = np.array([-800, -200, -199, 40])
    infected = np.array([True, True, True, False])
    assert hu_band_types(hu, infected, -200.0).tolist() == [1, 1, 2, 0]


def test_native_maps_are_nested():
    lungs = np.zeros((4, 10, 10), np.uint8)
    lungs[:, 2:8, 1:5] = 1
    lungs[:, 2:8, 5:9] = 2
    infection = np.zeros_like(lungs)
    infection[:, 3:6, 2:7] = 1
    infection[0, 0, 0] = 1  # outside the lungs: dropped
    types = np.where(infection > 0, 2, 0).astype(np.uint8)
    regions = np.where(lungs == 1, 1, np.where(lungs == 2, 4, 0)).astype(np.uint8)
    iso = dict(spacing=(2.0, 2.0, 2.0))
    hu = _image(np.full((8, 20, 20), -800, np.int16), spacing=(1.0, 1.0, 1.0))
    maps = native_maps(hu, _image(lungs, **iso), _image(infection, **iso), regions, types, -200.0)
    assert set(maps) == {"lungs", "regions", "infection", "types"}
    assert np.array_equal(maps["regions"] > 0, maps["lungs"] > 0)
    assert not (maps["infection"].astype(bool) & (maps["lungs"] == 0)).any()
    assert np.array_equal(maps["types"] > 0, maps["infection"] > 0)
    assert set(np.unique(maps["types"])) == {0, 2}
    # without a type map, HU bands of the native HU: all -800 HU, all ground-glass
    banded = native_maps(hu, _image(lungs, **iso), _image(infection, **iso), regions, None, -200.0)
    assert set(np.unique(banded["types"])) == {0, 1}
