"""Real lungs without COVID as negatives: one split of COVID-SemiSeg (fold 0 of 5, seed 1337: 40 training
slices, 10 held out) trained with ``covidct.infection.train.fit`` (the function every fold and the final
run of ``train_infection_unet`` call; dice_ce, BatchNorm, augmentation on, in the input space of
``covidct.infection.inputs``), with or without lesion-free slices of real non-COVID CT
(``load_sources`` with ``lesion_free``); then, per threshold, Dice on the held-out slices and the percent
of the lungs marked infected on the real CTs (LUNG1-003 outside its tumour's GTV, dilated 3 voxels).

One split and one seed: an experiment that chose the recipe, not a cross-validated result.

The real CTs are the workflow's own outputs: ``covidct run`` on ../shared/data's LUNG1-003 and A0002 B40f
into ``--real DIR`` (``DIR/<id>/resampled/<id>.nii.gz``, ``DIR/<id>/lung_mask/<id>.nii.gz``), and
LUNG1-003's GTV rasterized onto its resampled grid as ``DIR/L1003_gtv.nii.gz``.

    python bench/infection_negatives.py --tag none
    python bench/infection_negatives.py --tag negA64 --neg A0002 --neg-slices 64
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

import covidct.infection.augment as aug
from covidct.infection.data import assign_folds, load_sources, stack, stack_lungs
from covidct.infection.inputs import frame_volume, from_input, to_input
from covidct.infection.train import evaluate, fit, predict

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=128)
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--neg", nargs="*", default=[])
ap.add_argument("--neg-slices", type=int, default=24)
ap.add_argument("--bf", type=int, default=32)
ap.add_argument("--tag", required=True)
ap.add_argument("--real", default="/tmp/realct")
ap.add_argument(
    "--semiseg", default=str(__import__("pathlib").Path(__file__).resolve().parents[2] / "shared/data/covid_semiseg")
)
ap.add_argument("--p-dependent", type=float, default=None)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--bs", type=int, default=4)
a = ap.parse_args()
if a.p_dependent is not None:
    aug.P_DEPENDENT = a.p_dependent
size = a.size
g = load_sources([{"images": a.semiseg + "/train/Imgs", "masks": a.semiseg + "/train/GT"}], size)
fold = assign_folds([x.name for x in g], 5, 1337)
tr = [x for x in g if fold[x.name] != 0]
ho = [x for x in g if fold[x.name] == 0]
if a.neg:
    d = tempfile.mkdtemp()
    for k in ("vols", "lungs", "excl"):
        os.makedirs(f"{d}/{k}")
    for n in a.neg:
        os.symlink(f"{a.real}/{n}/resampled/{n}.nii.gz", f"{d}/vols/{n}.nii.gz")
        os.symlink(f"{a.real}/{n}/lung_mask/{n}.nii.gz", f"{d}/lungs/{n}.nii.gz")
        if n == "L1003":
            os.symlink(f"{a.real}/L1003_gtv.nii.gz", f"{d}/excl/L1003.nii.gz")
    tr += load_sources(
        [{"volumes": f"{d}/vols", "lungs": f"{d}/lungs", "exclude": f"{d}/excl", "lesion_free": True}],
        size,
        max_slices=a.neg_slices,
    )
x, y = stack(tr)
xh, yh = stack(ho)
print(a, "train", x.shape, "held", xh.shape, flush=True)
t = time.time()
m, h = fit(
    x,
    y,
    "dice_ce",
    a.epochs,
    base_filters=a.bf,
    batch_size=a.bs,
    learning_rate=a.lr,
    warmup_epochs=2,
    seed=1337,
    x_held=xh,
    y_held=yh,
    lung=stack_lungs(tr),
)
print(
    "s/epoch",
    round((time.time() - t) / a.epochs, 1),
    "held dice curve",
    [round(r["held_dice"], 3) for r in h],
    flush=True,
)
ph = predict(m, xh, 4)
ths = [0.5, 0.6, 0.7, 0.8, 0.9]
out = {"args": vars(a), "curve": [r["held_dice"] for r in h]}
out["held"] = {t: evaluate(yh, ph, t)["dice"] for t in ths}
for p in ["L1003", "A0002"]:
    hu = sitk.GetArrayFromImage(sitk.ReadImage(f"{a.real}/{p}/resampled/{p}.nii.gz")).astype(np.float32)
    lung = sitk.GetArrayFromImage(sitk.ReadImage(f"{a.real}/{p}/lung_mask/{p}.nii.gz")) > 0
    away = np.zeros_like(lung)
    if p == "L1003":
        away = ndimage.binary_dilation(
            sitk.GetArrayFromImage(sitk.ReadImage(f"{a.real}/L1003_gtv.nii.gz")) > 0, iterations=3
        )
    fr = frame_volume(hu, lung)
    prob = np.zeros(hu.shape, np.float32)
    zs = np.nonzero(lung.any((1, 2)))[0]
    xs = np.stack([to_input(hu[z], fr, size) for z in zs])[..., None]
    pr = predict(m, xs, 8)[..., 0]
    for i, z in enumerate(zs):
        prob[z] = from_input(pr[i], fr)
    L = lung & ~away
    out[p] = {t: round(100 * ((prob >= t) & L).sum() / L.sum(), 2) for t in ths}
print(json.dumps({k: v for k, v in out.items() if k != "curve"}), flush=True)
json.dump(out, open(f"bench/measured/infection_negatives_{a.tag}.json", "w"), indent=1)
