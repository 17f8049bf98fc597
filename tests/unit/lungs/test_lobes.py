"""The lobe backend (lungmask LTRCLobes, alone or fused with R231): weights from a configured file or
the torch hub cache, never downloaded; plumbing tested with randomly initialised weights of the real
architecture (they check shapes, labels and provenance, not accuracy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from covidct import steps
from covidct.errors import CovidctError, MissingWeightsError
from covidct.io import sha256_file
from covidct.lungs.lobes import LTRCLOBES, LTRCLOBES_FILE, lungmask_lobes
from covidct.lungs.lungmask import resolve_weights
from helpers import chest_phantom

SPACING = (4.0, 4.0, 4.0)


def _unet(n_classes: int, path, seed: int):
    from lungmask.resunet import UNet

    torch.manual_seed(seed)
    model = UNet(n_classes=n_classes, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return {"lobes": _unet(6, d / "ltrclobes_random.pth", 0), "r231": _unet(3, d / "r231_random.pth", 1)}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    hu, _ = chest_phantom(shape=(2, 48, 40), spacing=SPACING)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(SPACING)
    image.SetOrigin((-80.0, -96.0, 10.0))
    path = tmp_path_factory.mktemp("vol") / "p.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def test_missing_lobe_weights_say_how_to_supply_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torchhome"))
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(None, "p1", LTRCLOBES)
    msg = str(err.value)
    assert "lung_mask.lobes.weights" in msg and LTRCLOBES_FILE in msg and "zones" in msg and "patient p1" in msg
    with pytest.raises(MissingWeightsError, match="does not exist"):
        resolve_weights(tmp_path / "nope.pth", model=LTRCLOBES)


@pytest.mark.parametrize("model", ["LTRCLobes", "LTRCLobes_R231"])
def test_lobe_step_with_random_weights(tmp_path, weights, volume, model, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))  # nothing cached: configured files only
    prov = steps.segment_lobes(
        volume,
        tmp_path / "lobes.nii.gz",
        tmp_path / "lobes.json",
        "p1",
        model=model,
        weights=str(weights["lobes"]),
        r231_weights=str(weights["r231"]),
        force_cpu=True,
        batch_size=2,
    )
    lobes = sitk.ReadImage(str(tmp_path / "lobes.nii.gz"))
    ref = sitk.ReadImage(str(volume))
    assert lobes.GetSize() == ref.GetSize() and lobes.GetSpacing() == ref.GetSpacing()
    assert lobes.GetOrigin() == ref.GetOrigin()
    assert set(np.unique(sitk.GetArrayFromImage(lobes)).tolist()) <= {0, 1, 2, 3, 4, 5}
    written = json.loads((tmp_path / "lobes.json").read_text())
    assert written == json.loads(json.dumps(prov))
    assert written["model"] == model and written["weights_sha256"] == sha256_file(weights["lobes"])
    assert written["device"] == "cpu" and set(written["lobe_volumes_ml"]) == {"RUL", "RML", "RLL", "LUL", "LLL"}
    if model == "LTRCLobes_R231":
        assert written["r231_weights_sha256"] == sha256_file(weights["r231"])
    else:
        assert written["r231_weights_file"] is None


def test_lobe_weights_from_the_torch_hub_cache(tmp_path, weights, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub))
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    (hub / "hub" / "checkpoints" / LTRCLOBES_FILE).write_bytes(weights["lobes"].read_bytes())
    assert resolve_weights(None, model=LTRCLOBES) == hub / "hub" / "checkpoints" / LTRCLOBES_FILE
    assert resolve_weights("", model=LTRCLOBES) == hub / "hub" / "checkpoints" / LTRCLOBES_FILE


def test_wrong_or_corrupt_lobe_weights_are_clear_errors(tmp_path, weights, volume):
    image = sitk.ReadImage(str(volume))
    with pytest.raises(CovidctError, match="give 3 classes, not the 6 of LTRCLobes"):
        lungmask_lobes(image, weights["r231"], force_cpu=True, patient="p1")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(CovidctError, match="cannot load the lobe model's weights"):
        lungmask_lobes(image, bad, force_cpu=True)
    with pytest.raises(CovidctError, match="unknown lung_mask.lobes.model"):
        steps.segment_lobes(volume, tmp_path / "l.nii.gz", tmp_path / "l.json", "p1", model="R231")
