import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import chest_phantom, dice
from covidct import lungs, steps
from covidct.errors import CovidctError, MissingWeightsError

SPACING = (5.0, 5.0, 5.0)


def test_threshold_finds_both_lungs_sides_and_drops_trachea(phantom):
    hu, truth = phantom
    labels, stats = lungs.threshold_lungs(hu, SPACING)
    assert dice(labels > 0, truth > 0) >= 0.95
    assert dice(labels == lungs.RIGHT, truth == 1) >= 0.95
    assert dice(labels == lungs.LEFT, truth == 2) >= 0.95
    assert stats["left_right_known"] is True
    trachea = (hu < -950) & (truth == 0) & (np.arange(hu.shape[2])[None, None, :] > 28) & \
              (np.arange(hu.shape[2])[None, None, :] < 36) & (np.arange(hu.shape[0])[:, None, None] > 20)
    trachea &= np.abs(np.arange(hu.shape[1])[None, :, None] - 29) < 4
    assert trachea.sum() > 10
    assert not (labels[trachea] > 0).any()


def test_threshold_fills_vessels_and_enclosed_lesion():
    hu, truth = chest_phantom(trachea=False)
    hu = hu.copy()
    right = truth == 1
    zz, yy, xx = np.nonzero(right)
    c = (int(zz.mean()), int(yy.mean()), int(xx.mean()))
    hu[c[0] - 2:c[0] + 3, c[1] - 2:c[1] + 3, c[2] - 1:c[2] + 2] = 30  # consolidation inside the lung
    labels, _ = lungs.threshold_lungs(hu, SPACING)
    assert labels[c] == lungs.RIGHT
    assert dice(labels > 0, truth > 0) >= 0.95


def test_threshold_no_lungs_is_a_clear_error():
    hu, truth = chest_phantom(trachea=False)
    no_lungs = np.where(truth > 0, 40, hu).astype(np.int16)  # lungs filled with soft tissue
    with pytest.raises(CovidctError, match="no lungs found") as err:
        lungs.threshold_lungs(no_lungs, SPACING, patient="p7")
    assert "patient p7" in str(err.value)


def test_fused_lungs_are_split_left_right():
    hu, truth = chest_phantom(trachea=False)
    hu = hu.copy()
    # bridge the lungs anteriorly across the midline (anterior junction line absent)
    hu[10:25, 20:23, 18:46] = -850
    labels, stats = lungs.threshold_lungs(hu, SPACING)
    assert stats["left_right_known"]
    assert dice(labels == lungs.RIGHT, truth == 1) > 0.9
    assert dice(labels == lungs.LEFT, truth == 2) > 0.9


def _image(hu, spacing=SPACING):
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(spacing)
    return img


def test_lungmask_backend_missing_weights_says_how_to_supply(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torchhome"))
    with pytest.raises(MissingWeightsError) as err:
        lungs.resolve_weights(None, "p1")
    msg = str(err.value)
    assert "lung_mask.weights" in msg and "unet_r231-d5d2fc3d.pth" in msg and "threshold" in msg
    assert "patient p1" in msg
    with pytest.raises(MissingWeightsError, match="does not exist"):
        lungs.resolve_weights(tmp_path / "nope.pth")


@pytest.fixture(scope="module")
def random_r231(tmp_path_factory):
    from lungmask.resunet import UNet

    torch.manual_seed(0)
    model = UNet(n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False)
    path = tmp_path_factory.mktemp("weights") / "r231_random.pth"
    torch.save(model.state_dict(), path)
    return path


def test_lungmask_backend_plumbing_with_random_r231_weights(tmp_path, random_r231, monkeypatch):
    """Random weights: checks shapes, orientation handling and provenance, not accuracy."""
    hu, _ = chest_phantom(shape=(4, 48, 40), spacing=(4.0, 4.0, 4.0))
    volume = tmp_path / "p.nii.gz"
    sitk.WriteImage(_image(hu, (4.0, 4.0, 4.0)), str(volume))
    steps.segment_lungs(volume, tmp_path / "m.nii.gz", tmp_path / "l.nii.gz", tmp_path / "m.json", "p1",
                               backend="lungmask", weights=str(random_r231), force_cpu=True, batch_size=2)
    mask = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert mask.GetSize() == (40, 48, 4) and mask.GetSpacing() == (4.0, 4.0, 4.0)
    assert set(np.unique(sitk.GetArrayFromImage(mask))) <= {0, 1}
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "l.nii.gz"))))) <= {0, 1, 2}
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["backend"] == "lungmask"
    assert written["weights_sha256"] == lungs.sha256_file(random_r231)
    assert written["versions"]["lungmask"] == "0.2.22"
    assert written["device"] == "cpu"
    # weights from the torch hub cache when none are configured
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub))
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    (hub / "hub" / "checkpoints" / lungs.R231_FILE).write_bytes(random_r231.read_bytes())
    assert lungs.resolve_weights(None) == hub / "hub" / "checkpoints" / lungs.R231_FILE


def test_lungmask_backend_corrupt_weights_is_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(CovidctError, match="cannot load R231 weights"):
        lungs.lungmask_lungs(_image(np.zeros((2, 8, 8), np.int16)), bad, force_cpu=True)


def test_segment_step_writes_binary_mask_labels_and_provenance(tmp_path, phantom):
    hu, truth = phantom
    volume = tmp_path / "v.nii.gz"
    sitk.WriteImage(_image(hu), str(volume))
    prov = steps.segment_lungs(volume, tmp_path / "m.nii.gz", tmp_path / "l.nii.gz", tmp_path / "m.json", "p1")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.nii.gz")))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert dice(mask, truth) >= 0.95
    expected_ml = (truth > 0).sum() * 0.125
    assert prov["lung_volume_ml"] == pytest.approx(expected_ml, rel=0.08)
    assert json.loads((tmp_path / "m.json").read_text())["backend"] == "threshold"
