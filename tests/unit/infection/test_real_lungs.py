"""A healthy real lung reads healthy: a small infection U-Net trained the recommended way (COVID-SemiSeg's
infection masks plus a real non-COVID CT's lungs as lesion-free slices) marks at most 2 % of another real
non-COVID lung (LUNG1-003, outside its tumour), and still finds the infection on held-out COVID-SemiSeg
slices (Dice >= 0.5: a model that marks nothing fails). Real CT from ../shared/data, read in place.

Training costs about 5 minutes on 2 cores, over the suite's time budget: the test runs only with
COVIDCT_TEST_REAL_TRAINING=1 (``make test-real``) and otherwise skips, saying so."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from covidct.dicom.hu import load_series
from covidct.infection.data import assign_folds, load_sources, stack, stack_lungs
from covidct.infection.inference import segment_volume, severity
from covidct.infection.inputs import INPUT_SPACE
from covidct.infection.train import THRESHOLD, evaluate, fit, predict
from covidct.lungs.evaluation import reference_labels
from covidct.lungs.threshold import segment_threshold
from covidct.volume import resample
from helpers import require_shared_data

#: 64 px, 16 base filters, 20 epochs: the cheapest setting measured to hold (bench/infection_negatives.py,
#: one split: LUNG1-003 held out 2.2 % at 40 SemiSeg slices and A0002 B40f as negatives).
SIZE, FILTERS, EPOCHS = 64, 16, 20


def _chest(folder, patient: str):
    image, _ = load_series(folder, patient)
    res = resample(image, 1.5)
    hu = sitk.GetArrayFromImage(res)
    return res, hu, segment_threshold(hu, res.GetSpacing(), patient=patient)


@pytest.fixture(scope="module")
def trained_on_real(tmp_path_factory):
    if os.environ.get("COVIDCT_TEST_REAL_TRAINING") != "1":
        pytest.skip("trains a U-Net on real data for about 5 minutes: run with COVIDCT_TEST_REAL_TRAINING=1")
    semiseg = require_shared_data("covid_semiseg", "train")
    root = tmp_path_factory.mktemp("real_negatives")
    for kernel in ("B40f", "B70f"):
        res, _, result = _chest(require_shared_data("ct", "lung_pet_ct_dx_A0002", kernel), "A0002")
        for sub, array in (("volumes", sitk.GetArrayFromImage(res)), ("lungs", (result.labels > 0).astype(np.uint8))):
            out = sitk.GetImageFromArray(array)
            out.CopyInformation(res)
            (root / sub).mkdir(exist_ok=True)
            sitk.WriteImage(out, str(root / sub / f"A0002_{kernel}.nii.gz"))
    sources = [
        {"images": str(semiseg / "Imgs"), "masks": str(semiseg / "GT")},
        {"volumes": str(root / "volumes"), "lungs": str(root / "lungs"), "lesion_free": True},
    ]
    groups = load_sources(sources, SIZE, max_slices=64)
    fold = assign_folds([g.name for g in groups if not g.lesion_free], 5, seed=1337)
    train = [g for g in groups if g.lesion_free or fold[g.name] != 0]
    held = [g for g in groups if not g.lesion_free and fold[g.name] == 0]
    x, y = stack(train)
    model, _ = fit(x, y, "dice_ce", EPOCHS, base_filters=FILTERS, seed=1337, lung=stack_lungs(train))
    sidecar = {"size": SIZE, "input_space": INPUT_SPACE, "threshold": THRESHOLD, "variant": "dice_ce", "classes": 1,
               "tta": False, "ensemble": 1}  # fmt: skip
    return model, sidecar, held


def test_held_out_covid_slices_are_found(trained_on_real):
    model, _, held = trained_on_real
    x, y = stack(held)
    dice = evaluate(y, predict(model, x, 4), THRESHOLD)["dice"]
    print(f"held-out COVID-SemiSeg slices ({len(x)}): Dice {dice:.3f}")
    assert dice >= 0.5


def test_a_healthy_real_lung_reads_healthy(trained_on_real):
    model, sidecar, _ = trained_on_real
    folder = require_shared_data("ct", "nsclc_radiomics_LUNG1-003")
    res, hu, result = _chest(folder / "ct", "L1003")
    lung = result.labels > 0
    _, tumour, _ = reference_labels(folder / "rtstruct", res, "L1003")
    assert tumour is not None and tumour.any()
    mask, _ = segment_volume(model, sidecar, hu.astype(np.float32), lung)
    healthy = lung & ~ndimage.binary_dilation(tumour, iterations=3)
    marked = 100 * (mask.astype(bool) & healthy).sum() / healthy.sum()
    print(f"LUNG1-003 outside the tumour: {marked:.2f} % marked infected; whole lung {severity(mask, lung):.2f} %")
    assert marked <= 2.0
