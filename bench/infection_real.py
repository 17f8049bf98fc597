"""The infection U-Net on real scans, through the product's own path: does a healthy real lung read healthy,
does a COVID-19 lung read its opacities, and what does cross-validation say on COVID-SemiSeg.

Per held-out real chest CT without COVID-19 (leave one CT out) and per seed:

1. ``covidct.infection.train.train`` (the function the ``train_infection_unet`` rule runs), config.yaml's
   ``infection`` defaults except the flags given, on COVID-SemiSeg's 50 training slices (``../shared``,
   binary masks) plus, with ``--negatives`` (default), the *other* real CT as a lesion-free source
   (its resampled volume and lung mask, its tumour's GTV excluded): the CV Dice of the chosen variant
   (mean +- sd over folds, from the metrics JSON);
2. ``covidct.infection.inference.segment_volume`` (the function ``segment_infection`` runs) on the
   held-out CT, prepared by the workflow's own steps (``covidct.cli.run_chain``: anonymize, verify, HU,
   resample, threshold lung mask): the percent of the lung marked infected, outside the GTV (dilated by
   3 voxels) for LUNG1-003;
3. the COVID-19 positive slices of ``ct/covid19_ny_sbu_slices`` (axial, one slice per series, no truth):
   the percent of each slice's lungs (2D lung finder) marked infected, to see that opacities are read; an
   overlay montage is written for a person to look at.

Real CTs: ``nsclc_radiomics_LUNG1-003`` (lung cancer, RTSTRUCT with GTV-1) and ``lung_pet_ct_dx_A0002/B40f``
(lung cancer; its tumour has no contour, so its reading includes whatever the tumour gets).

    python bench/infection_real.py --size 128 --epochs 30 --seeds 1337 1338 1339 [--no-negatives]

``--dependent-rise LO HI`` trains with another range for the dependent-density augmentation's ramp
(``covidct.infection.augment.DEPENDENT_RISE``, calibrated units: 0.3 is about 280 HU above aerated lung).

Outputs: ``bench/measured/infection_real_<tag>.json`` (every run) and ``.txt`` (the table), ``_nysbu.png`` (an overlay
of real patients' slices, to look at here: git-ignored, never committed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SEMISEG = SHARED / "covid_semiseg" / "train"
CTS = {
    "LUNG1-003": SHARED / "ct" / "nsclc_radiomics_LUNG1-003" / "ct",
    "A0002": SHARED / "ct" / "lung_pet_ct_dx_A0002" / "B40f",
}
RTSTRUCT = SHARED / "ct" / "nsclc_radiomics_LUNG1-003" / "rtstruct"
NYSBU = SHARED / "ct" / "covid19_ny_sbu_slices"
OUT = REPO / "bench" / "measured"
BENCH_KEY = "covidct-bench-infection-real-not-a-secret"


def prepare(work: Path) -> dict[str, dict[str, Path]]:
    """Each real CT through the workflow's per-patient steps (cached in ``work``), and LUNG1-003's GTV
    rasterized on its resampled grid (the exclude mask)."""
    import SimpleITK as sitk

    from covidct.cli import run_chain
    from covidct.dicom.rtstruct import match_rois, rasterize, read_rtstruct
    from covidct.lungs.evaluation import LESION_PATTERN

    key = work / "bench.key"
    key.write_text(BENCH_KEY)
    cases = {}
    for name, raw in CTS.items():
        pid = name.replace("-", "")
        paths = {"resampled": work / "resampled" / f"{pid}.nii.gz", "mask": work / "lung_mask" / f"{pid}.nii.gz"}
        if not all(p.is_file() for p in paths.values()):
            run_chain(raw, work, pid, key_file=str(key))
        cases[name] = {"pid": pid, **paths}
    gtv_path = work / "exclude" / "LUNG1003.nii.gz"
    if not gtv_path.is_file():
        image = sitk.ReadImage(str(cases["LUNG1-003"]["resampled"]))
        rois = match_rois(read_rtstruct(next(RTSTRUCT.glob("*.dcm"))), LESION_PATTERN)
        gtv = sitk.GetImageFromArray(rasterize(rois, image).astype(np.uint8))
        gtv.CopyInformation(image)
        gtv_path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(gtv, str(gtv_path))
    cases["LUNG1-003"]["exclude"] = gtv_path
    return cases


def lesion_free_source(case: dict, folder: Path, exports: bool = False) -> dict:
    """A lesion-free training source of one prepared CT (symlinks: one volume, its lungs, its exclude mask)."""
    for sub in ("volumes", "lungs", "exclude"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    name = f"{case['pid']}.nii.gz"
    (folder / "volumes" / name).symlink_to(case["resampled"])
    (folder / "lungs" / name).symlink_to(case["mask"])
    src = {"volumes": str(folder / "volumes"), "lungs": str(folder / "lungs"), "lesion_free": True}
    if exports:
        src["exports"] = True
    if "exclude" in case:
        (folder / "exclude" / name).symlink_to(case["exclude"])
        src["exclude"] = str(folder / "exclude")
    return src


def false_infection(model_path: Path, case: dict, threshold: float | None = None) -> dict:
    """Percent of the held-out CT's lung marked infected (outside its GTV + 3 voxels), at the model's threshold
    or ``threshold``."""
    import SimpleITK as sitk
    from scipy import ndimage

    from covidct.infection.inference import load_unet, segment_volume

    model, sidecar = load_unet(model_path)
    if threshold is not None:
        sidecar = dict(sidecar, threshold=threshold)
    image = sitk.ReadImage(str(case["resampled"]))
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    lung = sitk.GetArrayFromImage(sitk.ReadImage(str(case["mask"]))) > 0
    t0 = time.perf_counter()
    infected, _ = segment_volume(model, sidecar, hu, lung)
    seconds = time.perf_counter() - t0
    away = np.zeros_like(lung)
    if "exclude" in case:
        away = ndimage.binary_dilation(sitk.GetArrayFromImage(sitk.ReadImage(str(case["exclude"]))) > 0, iterations=3)
    counted, marked = lung & ~away, infected.astype(bool)
    return {
        "percent_outside_gtv": round(100.0 * float((marked & counted).sum()) / counted.sum(), 3),
        "percent_all": round(100.0 * float((marked & lung).sum()) / lung.sum(), 3),
        "seconds": round(seconds, 1),
        **where_marked(marked & counted, counted, hu, image),
    }


def where_marked(marked: np.ndarray, counted: np.ndarray, hu: np.ndarray, image) -> dict:
    """Where a healthy lung's false infection lies: the share of it in the posterior (dependent, supine) third
    of the lung's front-to-back extent, against the lung's own share there; its HU quartiles; the share in 3D
    components of at least 5 mL (not specks)."""
    from scipy import ndimage

    if not marked.any():
        return {}
    posterior_y = np.array(image.GetDirection()).reshape(3, 3)[1, 1] > 0  # rows run towards the patient's back
    rows = np.nonzero(counted)[1]
    lo, hi = rows.min(), rows.max()

    def back_share(mask: np.ndarray) -> float:
        depth = (np.nonzero(mask)[1] - lo) / max(1, hi - lo)
        return round(float(np.mean(depth > 2 / 3 if posterior_y else depth < 1 / 3)), 3)

    labels, _ = ndimage.label(marked, np.ones((3, 3, 3)))
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    sizes = np.bincount(labels.ravel())[1:] * voxel_ml
    return {
        "posterior_third_share": back_share(marked),
        "lung_posterior_third_share": back_share(counted),
        "hu_quartiles": [round(float(q)) for q in np.percentile(hu[marked], [25, 50, 75])],
        "share_in_components_ge_5ml": round(float(sizes[sizes >= 5].sum() / sizes.sum()), 3),
    }


def nysbu_slices() -> list[tuple[str, np.ndarray]]:
    """(name, HU) of the axial COVID-19 slices, those whose 2D lung finder finds two lungs."""
    import pydicom

    from covidct.infection.lungs2d import find_lungs

    out = []
    for path in sorted(NYSBU.glob("*/axial/*.dcm")):
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        # the padding outside the reconstructed circle (-3024 or -2048) is air: left as it is, the lung
        # finder's percentile scaling sees it as the darkest tissue and finds no lungs on any slice
        hu = np.maximum(hu, -1024.0)
        if find_lungs(hu).n_lungs == 2:
            out.append((f"{path.parts[-3]}/{path.stem}", hu))
    return out


def read_slices(
    model_path: Path, slices: list[tuple[str, np.ndarray]], png: Path | None = None, threshold: float | None = None
) -> dict:
    """Percent of each slice's lung region marked infected (2D path: lungs found on the slice), at the model's
    threshold or ``threshold``."""
    from covidct.infection.inference import load_unet
    from covidct.infection.inputs import frame_image, from_input, to_input
    from covidct.infection.train import predict
    from covidct.infection.unet import infection_probability

    model, sidecar = load_unet(model_path)
    size, threshold = int(sidecar["size"]), float(sidecar["threshold"] if threshold is None else threshold)
    result, tiles = {}, []
    for name, hu in slices:
        frame, region = frame_image(hu)
        prob = infection_probability(predict(model, to_input(hu, frame, size)[None, ..., None], 1))[0]
        marked = (from_input(prob, frame) >= threshold) & region
        result[name] = round(100.0 * float(marked.sum()) / max(1, region.sum()), 2)
        if png is not None:
            grey = (np.clip((hu + 1250) / 1500, 0, 1) * 255).astype(np.uint8)
            rgb = np.stack([grey] * 3, -1)
            rgb[marked] = (0.5 * rgb[marked] + [127, 0, 127]).astype(np.uint8)
            tiles.append(rgb[::2, ::2])
    if png is not None and tiles:
        from PIL import Image

        cols = 5
        while len(tiles) % cols:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.concatenate(tiles[i : i + cols], 1) for i in range(0, len(tiles), cols)]
        Image.fromarray(np.concatenate(rows, 0)).save(png)
    return result


def main() -> None:
    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["infection"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=defaults["size"])
    ap.add_argument("--epochs", type=int, default=defaults["epochs"])
    ap.add_argument("--folds", type=int, default=defaults["folds"])
    ap.add_argument("--base-filters", type=int, default=defaults["base_filters"])
    ap.add_argument("--variants", nargs="+", default=defaults["variants"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[defaults["seed"] + i for i in range(3)])
    ap.add_argument("--negatives", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--exports", action="store_true", help="the lesion-free CT's slices also as 8-bit exports")
    ap.add_argument("--ensemble-folds", action="store_true", help="the fold models averaged (no final run)")
    ap.add_argument(
        "--dependent-rise",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="the dependent-density augmentation's ramp height range (calibrated units)",
    )
    ap.add_argument("--held-out", nargs="+", default=list(CTS), choices=list(CTS))
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "covidct-bench-infection-real")
    ap.add_argument("--tag", default=None)
    a = ap.parse_args()
    from covidct.infection import augment
    from covidct.infection.train import train
    from covidct.infection.unet import THRESHOLD

    if a.dependent_rise:  # read by augment_pairs in this process: train() runs no subprocess
        augment.DEPENDENT_RISE = tuple(a.dependent_rise)

    a.work.mkdir(parents=True, exist_ok=True)
    cases = prepare(a.work)
    slices = nysbu_slices()
    tag = a.tag or (
        f"{a.size}px_{a.epochs}ep_bf{a.base_filters}{'_neg' if a.negatives else ''}{'_exp' if a.exports else ''}"
        f"{'_ens' if a.ensemble_folds else ''}"
        + (f"_dep{a.dependent_rise[0]:g}-{a.dependent_rise[1]:g}" if a.dependent_rise else "")
    )
    settings = {k: defaults[k] for k in ("norm", "warmup_epochs", "batch_size", "learning_rate", "retries",
                                          "augment", "tta", "max_slices_per_volume")}  # fmt: skip
    runs = []
    for held in a.held_out:
        for seed in a.seeds:
            run_dir = Path(tempfile.mkdtemp(dir=a.work, prefix=f"run_{held}_{seed}_"))
            sources = [{"images": str(SEMISEG / "Imgs"), "masks": str(SEMISEG / "GT")}]
            if a.negatives:
                others = [c for name, c in cases.items() if name != held]
                sources += [lesion_free_source(c, run_dir / f"neg_{c['pid']}", a.exports) for c in others]
            t0 = time.perf_counter()
            metrics = train(sources, run_dir / "unet.keras", run_dir / "metrics.json", size=a.size,
                            base_filters=a.base_filters, variants=a.variants, folds=a.folds, epochs=a.epochs,
                            seed=seed, ensemble_folds=a.ensemble_folds, **settings)  # fmt: skip
            minutes = (time.perf_counter() - t0) / 60
            fp = false_infection(run_dir / "unet.keras", cases[held])
            png = OUT / f"infection_real_{tag}_nysbu.png" if (held, seed) == (a.held_out[0], a.seeds[0]) else None
            covid = read_slices(run_dir / "unet.keras", slices, png)
            nested = metrics["cross_validation"]["variants"][metrics["chosen_variant"]].get("threshold", {})
            run = {"held_out": held, "seed": seed, "cv_dice": metrics["cv_dice"], "cv_dice_sd": metrics["cv_dice_sd"],
                   "chosen": [metrics["chosen_variant"], metrics["chosen_epochs"]], "train_minutes": round(minutes, 1),
                   "threshold": metrics["threshold"], "nested_cv_dice": nested.get("nested"),
                   "false_infection": fp, "covid_slices_percent": covid}  # fmt: skip
            if metrics["threshold"] != THRESHOLD:  # the same model at the fixed threshold, for comparison
                run["at_fixed_threshold"] = {
                    "false_infection": false_infection(run_dir / "unet.keras", cases[held], THRESHOLD),
                    "covid_slices_percent": read_slices(run_dir / "unet.keras", slices, None, THRESHOLD),
                }
            runs.append(run)
            print(json.dumps(run), flush=True)
    (OUT / f"infection_real_{tag}.json").write_text(json.dumps({"args": vars(a) | {"work": str(a.work)},
                                                                "runs": runs}, indent=1))  # fmt: skip

    def fixed(run: dict) -> float:
        return run.get("at_fixed_threshold", run)["false_infection"]["percent_outside_gtv"]

    def mean_sd(values: list[float]) -> str:
        return f"{statistics.mean(values):.3f} +- {statistics.stdev(values) if len(values) > 1 else 0:.3f}"

    lines = [f"# infection_real {tag}: {a.folds}-fold CV on COVID-SemiSeg (50 slices){' + the other real CT as a lesion-free source' if a.negatives else ''}; "  # noqa: E501
             f"seeds {a.seeds}; mean +- sd over seeds", "| held-out CT | CV Dice | false infection % of lung (outside GTV) | COVID slices: median % marked (share of slices > 1 %) | training (min) | threshold (false infection % at 0.5) |", "|---|---|---|---|---|---|"]  # fmt: skip  # noqa: E501
    for held in a.held_out:
        rs = [r for r in runs if r["held_out"] == held]
        covid = [statistics.median(r["covid_slices_percent"].values() or [float("nan")]) for r in rs]
        share = [np.mean([v > 1 for v in r["covid_slices_percent"].values()] or [float("nan")]) for r in rs]
        minutes = mean_sd([r["train_minutes"] for r in rs])
        lines.append(f"| {held} | {mean_sd([r['cv_dice'] for r in rs])} | "
                     f"{mean_sd([r['false_infection']['percent_outside_gtv'] for r in rs])} | "
                     f"{mean_sd(covid)} ({mean_sd(share)}) | {minutes} | {[r['threshold'] for r in rs]} "
                     f"({[float(fixed(r)) for r in rs]}) |")  # fmt: skip
    (OUT / f"infection_real_{tag}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
