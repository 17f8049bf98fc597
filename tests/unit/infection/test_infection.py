"""Infection U-Net in the pipeline: slice preparation, grouped split, training from 3D sources,
volume inference and segmentation severity on held-out synthetic phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.demo.anatomy import make_phantom
from covidct.demo.cohort import write_infection_training
from covidct.demo.spec import PhantomSpec
from covidct.errors import CovidctError
from covidct.infection import (
    SliceGroup,
    load_sources,
    prepare_mask,
    prepare_slice,
    restore_slice,
    segment_volume,
    severity,
    split_groups,
    train,
)


def test_prepare_and_restore_are_inverse_on_geometry():
    img = np.full((30, 50), -1000.0)
    img[5:25, 10:40] = 0.0
    x = prepare_slice(img, 32)
    assert x.shape == (32, 32) and abs(float(x.mean())) < 1e-5 and float(x.std()) == pytest.approx(1, abs=1e-4)
    mask = np.zeros((30, 50), np.uint8)
    mask[5:25, 10:40] = 1
    small = prepare_mask(mask, 64)
    back = restore_slice(small.astype(np.float32), (30, 50)) >= 0.5
    assert back.shape == (30, 50)
    assert (back == mask.astype(bool)).mean() > 0.97


def test_split_keeps_groups_whole_and_is_order_free():
    groups = [SliceGroup(f"v{i}", np.zeros((3, 16, 16, 1), np.float32), np.zeros((3, 16, 16, 1), np.uint8))
              for i in range(10)]
    tr, va = split_groups(groups, 0.2, seed=1)
    assert len(va) == 2 and len(tr) == 8 and not {g.name for g in tr} & {g.name for g in va}
    tr2, va2 = split_groups(groups[::-1], 0.2, seed=1)
    assert {g.name for g in va2} == {g.name for g in va}
    with pytest.raises(CovidctError, match="at least 2"):
        split_groups(groups[:1], 0.2, seed=1)


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(CovidctError, match="exactly one of images"):
        load_sources([{"masks": str(tmp_path)}], 32)
    (tmp_path / "v").mkdir()
    (tmp_path / "m").mkdir()
    with pytest.raises(CovidctError, match="no volumes"):
        load_sources([{"volumes": str(tmp_path / "v"), "masks": str(tmp_path / "m")}], 32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small U-Net trained on 6 synthetic phantoms' slices (the default 3D source)."""
    root = tmp_path_factory.mktemp("inf")
    # 64x64 phantoms of 6 mm pixels: the tiny U-Net (64 px input) sees them at native resolution
    write_infection_training(root / "train", n=6, matrix=64, pixel_spacing_mm=6.0)
    metrics = train([{"volumes": str(root / "train" / "volumes"), "masks": str(root / "train" / "masks")}],
                    root / "unet.keras", root / "unet.json", size=64, base_filters=8, variants=("dice",),
                    epochs=30, batch_size=8, learning_rate=2e-3, patience=None, augment=False,
                    max_slices_per_volume=24)
    return root, metrics


def test_training_on_synthetic_volumes_learns(trained):
    root, metrics = trained
    assert metrics["split"]["val_groups"] == 1 and metrics["split"]["train_groups"] == 5
    # An empty prediction scores Dice 1 on lesion-free val slices and 0 on the others.
    empty = metrics["val_dice_of_empty_prediction"]
    assert 0 < empty < 0.5
    assert metrics["val_dice"] > empty + 0.15
    assert (root / "unet.keras").stat().st_size > 0


@pytest.mark.parametrize("score", [0.0, 10.0, 20.0])
def test_volume_severity_within_5_points_of_truth(trained, score):
    """Held-out phantoms (other seeds than the training ones). The U-Net underestimates: it misses
    consolidation against the chest wall, so the error grows with the lesion load (about -20%)."""
    from covidct.infection import load_unet

    root, _ = trained
    phantom = make_phantom(PhantomSpec("heldout", 3300 + int(score), score > 0, score, 48, 5.0, 64, 6.0))
    model, sidecar = load_unet(root / "unet.keras")
    lung = phantom.lung_labels > 0
    mask = segment_volume(model, sidecar, phantom.hu, lung)
    assert not (mask & ~lung).any()
    assert severity(mask, lung) == pytest.approx(phantom.score, abs=5.0)
