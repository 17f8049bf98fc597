"""The infection U-Net's input space: the 2D lung finder, framing, calibration, the way back; one space
for an HU volume and for 8-bit exports of it."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.infection.inputs import (
    CLIP,
    Frame,
    calibrate,
    frame_image,
    frame_volume,
    from_input,
    mask_to_input,
    square_box,
    to_input,
)
from covidct.infection.lungs2d import find_lungs
from covidct.testing.slices import GGO_HU, LUNG_HU, TISSUE_HU, chest_slice, export_8bit
from helpers import require_shared_data

AIR_HU = -1000.0


def _chest(seed: int = 0, lesion: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An HU slice (160 x 200) and its lungs; with ``lesion`` one ground-glass lesion (``GGO_HU``)."""
    s = chest_slice(seed=seed, n_lesions=1 if lesion else 0)
    return s.hu, s.lung


def test_finder_full_field_of_view_and_turned():
    hu, lung = _chest()
    img = export_8bit(hu, -1250, 250)
    found = find_lungs(img)
    assert found.n_lungs == 2 and found.side_by_side == "rows"
    assert (found.region & lung).sum() / lung.sum() > 0.97  # the lungs, vessels included
    assert not (found.region & (hu == AIR_HU)).any()  # no outside air
    turned = find_lungs(np.rot90(img))
    assert turned.n_lungs == 2 and turned.side_by_side == "columns"


def test_finder_tight_crop_lungs_touching_the_border():
    hu, lung = _chest()
    r0, c0 = np.nonzero(lung.any(axis=1))[0][0] + 5, np.nonzero(lung.any(axis=0))[0][0] + 4
    crop = export_8bit(hu, -1000, 0)[r0 : r0 + 90, c0 : c0 + 130]  # a narrow window clipping tissue, lungs cut
    found = find_lungs(crop)
    assert found.n_lungs == 2
    assert (found.region & lung[r0 : r0 + 90, c0 : c0 + 130]).sum() / lung[r0 : r0 + 90, c0 : c0 + 130].sum() > 0.95


def test_finder_nothing_to_find():
    found = find_lungs(np.full((64, 64), 120.0))
    assert found.n_lungs == 0 and not found.region.any()


def test_square_box_and_round_trip_geometry():
    assert square_box((10, 30, 0, 40), margin=0.0) == (0, 40, 0, 40)
    hu, lung = _chest()
    frame, _ = frame_image(export_8bit(hu, -1250, 250))
    x = mask_to_input(lung.astype(np.uint8), frame, 96)
    assert x.shape == (96, 96) and set(np.unique(x)) == {0, 1}
    back = from_input(x.astype(np.float32), frame) >= 0.5
    assert back.shape == lung.shape and (back == lung).mean() > 0.98
    turned, _ = frame_image(np.rot90(export_8bit(hu, -1250, 250)))
    assert turned.turn == 1
    back_t = from_input(mask_to_input(np.rot90(lung).astype(np.uint8), turned, 96).astype(np.float32), turned) >= 0.5
    assert (back_t == np.rot90(lung)).mean() > 0.98
    # the network sees the turned slice as the upright one: lungs side by side along its rows
    upright = mask_to_input(np.rot90(lung).astype(np.uint8), turned, 96)
    assert upright.any(axis=0).sum() > upright.any(axis=1).sum()


def test_calibration_constants():
    f = Frame((4, 4), (0, 4, 0, 4), 0, -900.0, 40.0, -1000.0)
    assert calibrate(np.array([-900.0, 40.0, -1e4, 1e4]), f).tolist() == [0.0, 1.0, CLIP[0], CLIP[1]]


def test_one_input_space_for_hu_and_8bit_exports():
    """The same slice as an HU volume and as 8-bit exports in two lung windows reaches the network with
    the same values: aerated lung near 0, the ground-glass lesion near 0.45, soft tissue near 1; a
    per-slice standardization would not give that."""
    hu, lung = _chest(lesion=True)
    volume = np.repeat(hu[None], 3, axis=0)
    frame_v = frame_volume(volume, np.repeat(lung[None], 3, axis=0), pad=AIR_HU)
    assert frame_v.low == pytest.approx(LUNG_HU - 1.645 * 25, abs=15) and frame_v.high == pytest.approx(TISSUE_HU)
    x_hu = to_input(hu, frame_v, 128)
    inputs = [x_hu]
    for lo, hi in ((-1250, 250), (-1100, 100)):
        img = export_8bit(hu, lo, hi).astype(np.float32)
        frame, _ = frame_image(img)
        inputs.append(to_input(img, frame, 128))
    lesion = chest_slice(seed=0, n_lesions=1).lesions
    lesion_at = mask_to_input(lesion.astype(np.uint8), frame_v, 128) > 0
    lung_at = mask_to_input(lung.astype(np.uint8), frame_v, 128) > 0
    for x in inputs:
        assert float(np.median(x[lung_at & ~lesion_at])) == pytest.approx(0.04, abs=0.05)
        assert float(np.median(x[lesion_at])) == pytest.approx(
            (GGO_HU - frame_v.low) / (TISSUE_HU - frame_v.low), abs=0.06
        )
    # the exports agree with the HU volume pixel for pixel, up to 8-bit rounding and the crop
    assert np.median(np.abs(inputs[1] - x_hu)) < 0.03 and np.median(np.abs(inputs[2] - x_hu)) < 0.03


def test_finder_on_covid_semiseg():
    """COVID-SemiSeg's 50 crops (turned by 90 degrees, narrow and wide windows): lungs found on every one,
    seen turned on all but one (51.jpg: one lung found, wider than tall), most of the experts' infection
    inside the lung region."""
    from PIL import Image

    root = require_shared_data("covid_semiseg", "train")
    inside = total = turned = 0
    for path in sorted((root / "Imgs").glob("*.jpg")):
        img = np.asarray(Image.open(path).convert("L"))
        truth = np.asarray(Image.open(root / "GT" / f"{path.stem}.png").convert("L")) > 127
        found = find_lungs(img)
        assert found.n_lungs >= 1, path.name
        turned += found.side_by_side == "columns"
        inside += int((truth & found.region).sum())
        total += int(truth.sum())
    # measured: 0.83 (dense consolidation against the chest wall is where the finder stops)
    assert inside / total > 0.78 and turned >= 49
