import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from covidct import steps
from covidct.errors import CovidctError, MissingWeightsError
from covidct.io import sha256_file
from covidct.lungs.labels import LEFT, RIGHT
from covidct.lungs.lungmask import R231_FILE, lungmask_lungs, resolve_weights
from covidct.lungs.threshold import ThresholdParams, threshold_lungs
from helpers import chest_phantom, dice

SPACING = (5.0, 5.0, 5.0)


def test_threshold_finds_both_lungs_sides_and_drops_trachea(phantom):
    hu, truth = phantom
    labels, stats = threshold_lungs(hu, SPACING)
    assert dice(labels > 0, truth > 0) >= 0.95
    assert dice(labels == RIGHT, truth == 1) >= 0.95
    assert dice(labels == LEFT, truth == 2) >= 0.95
    assert stats["left_right_known"] is True
    trachea = (
        (hu < -950)
        & (truth == 0)
        & (np.arange(hu.shape[2])[None, None, :] > 28)
        & (np.arange(hu.shape[2])[None, None, :] < 36)
        & (np.arange(hu.shape[0])[:, None, None] > 20)
    )
    trachea &= np.abs(np.arange(hu.shape[1])[None, :, None] - 29) < 4
    assert trachea.sum() > 10
    assert not (labels[trachea] > 0).any()


def test_threshold_fills_vessels_and_enclosed_lesion():
    hu, truth = chest_phantom(trachea=False)
    hu = hu.copy()
    right = truth == 1
    zz, yy, xx = np.nonzero(right)
    c = (int(zz.mean()), int(yy.mean()), int(xx.mean()))
    hu[c[0] - 2 : c[0] + 3, c[1] - 2 : c[1] + 3, c[2] - 1 : c[2] + 2] = 30  # consolidation inside the lung
    labels, _ = threshold_lungs(hu, SPACING)
    assert labels[c] == RIGHT
    assert dice(labels > 0, truth > 0) >= 0.95


def test_threshold_no_lungs_is_a_clear_error():
    hu, truth = chest_phantom(trachea=False)
    no_lungs = np.where(truth > 0, 40, hu).astype(np.int16)  # lungs filled with soft tissue
    with pytest.raises(CovidctError, match="no lungs found") as err:
        threshold_lungs(no_lungs, SPACING, patient="p7")
    assert "patient p7" in str(err.value)


def test_fused_lungs_are_split_left_right():
    hu, truth = chest_phantom(trachea=False)
    hu = hu.copy()
    # bridge the lungs anteriorly across the midline (anterior junction line absent)
    hu[10:25, 20:23, 18:46] = -850
    labels, stats = threshold_lungs(hu, SPACING)
    assert stats["left_right_known"]
    assert dice(labels == RIGHT, truth == 1) > 0.9
    assert dice(labels == LEFT, truth == 2) > 0.9


def test_threshold_two_workers_fill_one_lung_in_a_forked_process(neck_phantom, monkeypatch):
    """``workers=2`` fills the first lung in a forked child: the same labels and figures as one process, a
    failure in the child is raised as it is, and when both fail the child's error (one process's first)."""
    from covidct import forked
    from covidct.lungs import threshold

    _, hu, *_ = neck_phantom
    one = threshold.segment_threshold(hu, (PHANTOM_MM,) * 3, patient="lm01")
    starts = []
    real_start = forked.start
    monkeypatch.setattr(forked, "start", lambda *a, **k: starts.append(a[1]) or real_start(*a, **k))
    two = threshold.segment_threshold(hu, (PHANTOM_MM,) * 3, patient="lm01", workers=2)
    assert starts == [RIGHT] or not forked.available()
    assert np.array_equal(one.labels, two.labels) and one.stats == two.stats

    parent = os.getpid()

    def fail_in_child(*args):
        if os.getpid() != parent:
            raise CovidctError("fill failed", "lm01")
        return real_fill(*args)

    real_fill = threshold._fill_side
    monkeypatch.setattr(threshold, "_fill_side", fail_in_child)
    if not forked.available():
        return
    with pytest.raises(CovidctError, match="patient lm01: fill failed"):
        threshold.segment_threshold(hu, (PHANTOM_MM,) * 3, patient="lm01", workers=2)

    def fail_in_both(*args):  # one process fills the child's lung first and meets its error first
        raise CovidctError("fill failed in the child" if os.getpid() != parent else "fill failed here", "lm01")

    monkeypatch.setattr(threshold, "_fill_side", fail_in_both)
    with pytest.raises(CovidctError, match="patient lm01: fill failed in the child"):
        threshold.segment_threshold(hu, (PHANTOM_MM,) * 3, patient="lm01", workers=2)


def _image(hu, spacing=SPACING):
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(spacing)
    return img


def test_lungmask_backend_missing_weights_says_how_to_supply(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torchhome"))
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(None, "p1")
    msg = str(err.value)
    assert "lung_mask.weights" in msg and "unet_r231-d5d2fc3d.pth" in msg and "threshold" in msg
    assert "patient p1" in msg
    with pytest.raises(MissingWeightsError, match="does not exist"):
        resolve_weights(tmp_path / "nope.pth")


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
    steps.segment_lungs(
        volume,
        tmp_path / "m.nii.gz",
        tmp_path / "l.nii.gz",
        tmp_path / "m.json",
        "p1",
        backend="lungmask",
        weights=str(random_r231),
        force_cpu=True,
        batch_size=2,
    )
    mask = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert mask.GetSize() == (40, 48, 4) and mask.GetSpacing() == (4.0, 4.0, 4.0)
    assert set(np.unique(sitk.GetArrayFromImage(mask))) <= {0, 1}
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "l.nii.gz"))))) <= {0, 1, 2}
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["backend"] == "lungmask"
    assert written["weights_sha256"] == sha256_file(random_r231)
    assert written["versions"]["lungmask"] == "0.2.22"
    assert written["device"] == "cpu"
    # weights from the torch hub cache when none are configured
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(hub))
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    (hub / "hub" / "checkpoints" / R231_FILE).write_bytes(random_r231.read_bytes())
    assert resolve_weights(None) == hub / "hub" / "checkpoints" / R231_FILE


def test_lungmask_backend_corrupt_weights_is_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(CovidctError, match="cannot load R231 weights"):
        lungmask_lungs(_image(np.zeros((2, 8, 8), np.int16)), bad, force_cpu=True)


# --- the threshold backend on a synthetic chest with a neck and bowel gas (truth by construction) ---

PHANTOM_MM = 2.0  # resampled like the workflow does (coarser than its 1.5 mm default, to stay quick)


@pytest.fixture(scope="module")
def neck_phantom():
    """A demo-like patient (neck, larynx and pharynx air entering from the top, stomach and colon gas under
    the left dome), resampled as the workflow does: HU, truth labels, and where the non-lung air is."""
    from covidct.demo.anatomy import make_phantom
    from covidct.demo.spec import PhantomSpec
    from covidct.demo.writer import label_image
    from covidct.lungs.thorax import outside_air
    from covidct.volume import resample

    spec = PhantomSpec("lm01", 1105, False, 0.0, 56, 5.5, 160, 2.4)
    p = make_phantom(spec)
    image = resample(label_image(p.hu, p), PHANTOM_MM)
    hu = sitk.GetArrayFromImage(image)
    truth = sitk.GetArrayFromImage(resample(label_image(p.lung_labels, p), PHANTOM_MM, "nearest", 0))
    air = (hu < -900) & ~outside_air(hu < -320) & (truth == 0)
    lung_z = np.nonzero(truth.any(axis=(1, 2)))[0]
    return image, hu, truth, air, lung_z


def test_phantom_has_neck_air_and_bowel_gas_next_to_the_lungs(neck_phantom):
    """The faults are really there: air in the neck above the lungs and gas under the diaphragm within a
    few mm of the lung base (so a threshold joins them)."""
    _, _, truth, air, lung_z = neck_phantom
    ml = PHANTOM_MM**3 / 1000
    assert air[lung_z[-1] + 1 :].sum() * ml > 3  # neck: larynx, pharynx, trachea
    gas = air.copy()
    gas[lung_z[0] + (lung_z[-1] - lung_z[0]) // 3 :] = False  # lower third: under the domes
    assert gas.sum() * ml > 20
    near = ndimage.binary_dilation(truth > 0, iterations=3)
    assert (gas & near).any()


@pytest.fixture(scope="module")
def neck_phantom_mask(neck_phantom, tmp_path_factory):
    image, *_ = neck_phantom
    folder = tmp_path_factory.mktemp("neck")
    sitk.WriteImage(image, str(folder / "v.nii.gz"))
    prov = steps.segment_lungs(folder / "v.nii.gz", folder / "m.nii.gz", folder / "l.nii.gz", folder / "m.json", "lm01")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "l.nii.gz"))), prov


def test_threshold_excludes_neck_airway_and_bowel_gas(neck_phantom, neck_phantom_mask):
    _, hu, truth, air, lung_z = neck_phantom
    labels, prov = neck_phantom_mask
    ml = PHANTOM_MM**3 / 1000
    assert (air & (labels > 0)).sum() * ml < 1.0
    assert not (labels[lung_z[-1] + 2 :] > 0).any()  # nothing above the apexes: the neck is not lung
    assert dice(labels > 0, truth > 0) >= 0.95
    assert dice(labels == RIGHT, truth == 1) >= 0.93 and dice(labels == LEFT, truth == 2) >= 0.93
    assert prov["airway_found"] and prov["airway_volume_ml"] > 10
    assert lung_z[0] < prov["carina_z_index"] < lung_z[-1]
    assert prov["qc"]["flags"] == [] or not any("trachea" in f or "diaphragm" in f for f in prov["qc"]["flags"])


def test_qc_flags_a_mask_with_trachea_and_bowel_gas(neck_phantom, neck_phantom_mask):
    from covidct.lungs.qc import mask_qc

    _, hu, truth, air, lung_z = neck_phantom
    labels, prov = neck_phantom_mask
    bad = labels.copy()
    bad[air & (np.arange(hu.shape[0]) > lung_z[-1] - 10)[:, None, None]] = RIGHT  # the trachea and neck air
    gas = air & (np.arange(hu.shape[0]) < (lung_z[0] + lung_z[-1]) // 2)[:, None, None]
    bad[gas] = LEFT  # gas under the left dome
    qc = mask_qc(bad, hu, (PHANTOM_MM,) * 3)
    assert qc["trachea_in_mask_ml"] > 1
    assert any("trachea inside the mask" in f for f in qc["flags"])
    assert any("under the diaphragm" in f for f in qc["flags"]), qc
    assert prov["qc"]["below_diaphragm_ml"] < qc["below_diaphragm_ml"]


def _juxtapleural(hu: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """A dense lesion (30 HU) filling the right lung within 22 mm of its lateral border at mid-height."""
    zs = np.nonzero((truth == 1).any(axis=(1, 2)))[0]
    z = int(zs[len(zs) // 2])
    ys, xs = np.nonzero(truth[z] == 1)
    y0 = int(np.median(ys))
    x0 = int(xs[ys == y0].min())  # lateral border of the right lung (low x) on that row
    zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    ball = ((zz - z) ** 2 + (yy - y0) ** 2 + (xx - x0) ** 2) * PHANTOM_MM**2 <= 22.0**2
    return ball & (truth == 1)


def test_juxtapleural_lesion_is_taken_in_and_mediastinum_stays_out(neck_phantom):
    image, hu, truth, _, _ = neck_phantom
    lesion = _juxtapleural(hu, truth)
    dense = hu.copy()
    dense[lesion] = 30
    ml = PHANTOM_MM**3 / 1000
    assert lesion.sum() * ml > 10
    filled, _ = threshold_lungs(dense, image.GetSpacing())
    plain, _ = threshold_lungs(dense, image.GetSpacing(), ThresholdParams(fill_pleural=False))
    assert (filled[lesion] > 0).mean() >= 0.9
    assert (plain[lesion] > 0).mean() < 0.5  # without the pleural filling the threshold leaves it out
    # what the filling adds outside the lung is the pleura under the lesion (3 mm under a disc of 44 mm:
    # about 5 mL), never the heart or the mediastinum (hundreds of mL)
    extra = ((filled > 0) & (truth == 0)).sum() - ((plain > 0) & (truth == 0)).sum()
    assert extra * ml < 10
    assert dice(filled > 0, truth > 0) >= 0.95
