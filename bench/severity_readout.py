"""The severity read-out measured against phantoms whose lobes and lesions are known: per-lobe score,
CTSS, zone score, PO, PHO, lesion types, and time.

A synthetic cohort (``--n`` patients, demo-like geometry: 168-192 pixels of 2.0-2.3 mm, 48-70 slices
of 4.5-6 mm) with lesions placed per lobe: each lobe of a positive patient is clear (p = 0.2) or
involved by a percent drawn uniformly inside one of Pan et al.'s bands 1-5, so that every score occurs
and some percents fall near a band's edge, as they do in patients; a tenth of the patients are
negative. Truth is counted on the phantom's own grid (``covidct.demo.writer.truth_readout``).

Every read-out is the workflow's step (``covidct.steps.severity_readout``) with the config's
defaults (``severity`` block of config/config.yaml), on the workflow's grid (``resample.spacing_mm``):

(a) the scoring itself: the truth lung labels, lesions and lobes resampled onto that grid
    (nearest neighbour; HU linear, as ``resample_volume``), so it must be exact up to resampling;
(b) end to end: DICOM written (``covidct.demo.writer``), then the workflow's steps with the config's
    defaults: anonymize, HU, resample, ``segment_lungs`` (threshold backend), ``segment_infection``
    with a small infection U-Net trained by the workflow's step on synthetic phantoms
    (``train_infection_unet`` with the demo's settings, config/demo.yaml, on the training phantoms
    ``synth_infection_training`` writes: other seeds than this cohort), then the read-out with the
    truth lobes resampled (standing in for a perfect lobe model: no lobe weights are available
    offline) and with the six zones. Also (b0): the pipeline's lung mask with the truth lesions, which
    isolates what the lung mask costs, and (b1): the truth lung mask with the U-Net run inside it,
    which isolates what the U-Net costs. Repeated for ``--unet-seeds`` U-Net seeds (mean +- sd).

Targets (issue 13): per-lobe score exact in >= 90 % of lobes and within +-1 in >= 99 %; CTSS within
+-2 for >= 95 % of patients; PO within 3 points and PHO within 2 points; read-out <= 1 s per patient
on the CPU (lobe inference aside).

    nice python bench/severity_readout.py [--n 60] [--n-e2e 20] [--unet-seeds 1337 1338] [--work DIR]
        [--parts a b] [--reuse]

``--reuse``: the pipeline's per-patient outputs up to the lung mask that an earlier run left in
``--work`` are used again (the U-Nets are always trained). Output, per part:
bench/measured/severity_readout_{a,b}.json (every patient); severity_readout.txt (the summary of the
parts measured).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "measured"
KEY = "bench-key-0123456789abcdef-severity"
#: Pan et al.'s bands 1-5 as percent ranges the involvement is drawn from.
BANDS = ((0.5, 5.0), (5.0, 25.0), (25.0, 50.0), (50.0, 75.0), (75.0, 98.0))
P_CLEAR_LOBE = 0.2
P_NEGATIVE = 0.1


def config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def demo_config() -> dict:
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def cohort(n: int, seed: int = 5000) -> list:
    """``n`` phantom specs with per-lobe involvement (see the module docstring)."""
    from covidct.demo.spec import PhantomSpec

    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        if rng.random() < P_NEGATIVE:
            involvement = (0.0,) * 5
        else:
            involvement = tuple(
                0.0 if rng.random() < P_CLEAR_LOBE else float(round(rng.uniform(*BANDS[rng.integers(5)]), 2))
                for _ in range(5)
            )
            if not any(involvement):
                involvement = (0.0, 0.0, float(round(rng.uniform(*BANDS[1]), 2)), 0.0, 0.0)
        covid = any(p > 0 for p in involvement)
        specs.append(
            PhantomSpec(
                f"sev{i + 1:03d}",
                seed + i,
                covid,
                30.0 if covid else 0.0,
                int(rng.integers(48, 71)),
                float(rng.choice([4.5, 5.0, 5.5, 6.0])),
                int(rng.choice([168, 176, 184, 192])),
                float(round(rng.uniform(2.0, 2.3), 2)),
                lobe_involvement=involvement,
            )
        )
    return specs


def _image(array, phantom):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(v) for v in phantom.spacing))
    image.SetOrigin(tuple(float(v) for v in phantom.origin))
    return image


def _resampled(array, phantom, spacing_mm: float, path: Path, reference=None, linear: bool = False) -> Path:
    """``array`` of the phantom on the workflow's grid (``resample`` for the volume, onto ``reference``'s
    grid nearest-neighbour for maps), written to ``path``."""
    from covidct.io import read_volume, write_volume
    from covidct.volume import resample, resample_like

    image = _image(array, phantom)
    if reference is None:
        out = resample(image, spacing_mm, "linear" if linear else "nearest", -1000 if linear else 0)
    else:
        out = resample_like(image, read_volume(reference), "nearest", 0)
    write_volume(path, out)
    return path


def compare(readout: dict, truth: dict) -> dict:
    """Per-region score differences and the totals' errors of one read-out against the truth."""
    scheme = readout["scheme"]
    key = "lobes" if scheme == "lobes" else "zones"
    total = "ctss" if scheme == "lobes" else "zone_score"
    diffs = {r["name"]: r["score"] - truth[key][r["name"]]["score"] for r in readout["regions"]}
    pct = {r["name"]: round(r["infected_percent"] - truth[key][r["name"]]["percent"], 3) for r in readout["regions"]}
    return {
        "scheme": scheme,
        "score_diff": diffs,
        "percent_diff": pct,
        "total_diff": readout[total] - truth[total],
        "po_err": round(readout["po"] - truth["po"], 3),
        "pho_err": round(readout["pho"] - truth["pho"], 3),
        "po_lung_err": {s: round(readout["lungs"][s]["po"] - truth["lungs"][s]["po"], 3) for s in ("right", "left")},
        "pho_lung_err": {s: round(readout["lungs"][s]["pho"] - truth["lungs"][s]["pho"], 3) for s in ("right", "left")},
        "ggo_err": round(readout["ggo_percent"] - truth["ggo_percent"], 3),
        "consolidation_err": round(readout["consolidation_percent"] - truth["consolidation_percent"], 3),
        "readout_s": readout["seconds"],
        "step_s": readout["step_seconds"],
    }


def summary(rows: list[dict]) -> dict:
    """The targets' figures over the patients' comparisons (one scheme)."""
    diffs = np.array([d for r in rows for d in r["score_diff"].values()])
    totals = np.array([r["total_diff"] for r in rows])
    po = np.abs([r["po_err"] for r in rows])
    pho = np.abs([r["pho_err"] for r in rows])
    po_lung = np.abs([v for r in rows for v in r["po_lung_err"].values()])
    pho_lung = np.abs([v for r in rows for v in r["pho_lung_err"].values()])
    return {
        "patients": len(rows),
        "regions": int(diffs.size),
        "region_score_exact": round(float(np.mean(diffs == 0)), 4),
        "region_score_within_1": round(float(np.mean(np.abs(diffs) <= 1)), 4),
        "region_score_bias": round(float(diffs.mean()), 3),
        "total_within_2": round(float(np.mean(np.abs(totals) <= 2)), 4),
        "total_abs_max": int(np.abs(totals).max()),
        "total_bias": round(float(totals.mean()), 3),
        "po_within_3": round(float(np.mean(po <= 3)), 4),
        "po_abs_mean": round(float(po.mean()), 3),
        "po_abs_max": round(float(po.max()), 3),
        "po_bias": round(float(np.mean([r["po_err"] for r in rows])), 3),
        "pho_within_2": round(float(np.mean(pho <= 2)), 4),
        "pho_abs_mean": round(float(pho.mean()), 3),
        "pho_abs_max": round(float(pho.max()), 3),
        "po_per_lung_abs_max": round(float(po_lung.max()), 3),
        "pho_per_lung_abs_max": round(float(pho_lung.max()), 3),
        "ggo_abs_mean": round(float(np.mean(np.abs([r["ggo_err"] for r in rows]))), 3),
        "consolidation_abs_mean": round(float(np.mean(np.abs([r["consolidation_err"] for r in rows]))), 3),
        "readout_s_median": round(statistics.median(r["readout_s"] for r in rows), 3),
        "readout_s_max": round(max(r["readout_s"] for r in rows), 3),
        "step_s_median": round(statistics.median(r["step_s"] for r in rows), 3),
    }


def part_a(specs, work: Path, spacing: float, severity: dict) -> dict:
    """(a) The read-out of the truth maps on the workflow's grid."""
    from covidct import steps
    from covidct.demo.anatomy import make_phantom
    from covidct.demo.writer import truth_readout

    out = {"lobes": [], "zones": []}
    for spec in specs:
        d = work / "a" / spec.patient_id
        d.mkdir(parents=True, exist_ok=True)
        phantom = make_phantom(spec)
        truth = truth_readout(phantom)
        volume = _resampled(phantom.hu, phantom, spacing, d / "volume.nii.gz", linear=True)
        labels = _resampled(phantom.lung_labels, phantom, spacing, d / "labels.nii.gz", reference=volume)
        lesion = _resampled(phantom.lesion_mask, phantom, spacing, d / "lesion.nii.gz", reference=volume)
        lobes = _resampled(phantom.lobes, phantom, spacing, d / "lobes.nii.gz", reference=volume)
        for scheme, lobe_map in (("lobes", str(lobes)), ("zones", [])):
            res = steps.severity_readout(
                volume,
                labels,
                lesion,
                None,
                d / f"{scheme}.json",
                d / f"{scheme}.png",
                spec.patient_id,
                lobes=lobe_map,
                **severity,
            )
            out[scheme].append({"patient_id": spec.patient_id, **compare(res, truth)})
        print(
            f"(a) {spec.patient_id}: CTSS diff {out['lobes'][-1]['total_diff']}, "
            f"zone diff {out['zones'][-1]['total_diff']}, PO err {out['lobes'][-1]['po_err']}",
            flush=True,
        )
        shutil.rmtree(d)
    return out


def train_unet(work: Path, seed: int) -> tuple[Path, float]:
    """The infection U-Net, trained by the workflow's step with the demo's settings on the default
    synthetic training phantoms; returns the model and the training seconds."""
    from covidct import steps

    cfg = config()["infection"]
    cfg.update(demo_config()["infection"])
    cfg["seed"] = seed
    data = work / "unet_data"
    if not data.exists():
        steps.synth_infection_training(data, cfg["demo_volumes"])
    out = work / f"unet_{seed}"
    out.mkdir(parents=True, exist_ok=True)
    sources = [{"volumes": str(data / "volumes"), "masks": str(data / "masks"), "labels": "types"}]
    t0 = time.perf_counter()
    steps.train_infection_unet(
        [str(data)], out / "infection_unet.keras", out / "infection_unet.json", out / "metrics.json", sources, cfg
    )
    return out / "infection_unet.keras", time.perf_counter() - t0


def prepare_e2e(specs, work: Path, cfg: dict, reuse: bool = False) -> list[dict]:
    """DICOM -> anonymized -> HU -> resampled -> lung mask for each patient (the workflow's steps),
    and the truth maps on the resampled grid (``reuse``: the pipeline's outputs an earlier run of
    this script left in ``work``)."""
    import os

    from covidct import steps
    from covidct.demo.anatomy import make_phantom
    from covidct.demo.writer import truth_readout, write_patient

    os.environ["COVIDCT_ANON_KEY"] = KEY
    prepared = []
    for spec in specs:
        d = work / "b" / spec.patient_id
        d.mkdir(parents=True, exist_ok=True)
        pid = spec.patient_id
        done = all((d / f).is_file() for f in ("volume.nii.gz", "mask.nii.gz", "labels.nii.gz", "hu.json"))
        if not (reuse and done):
            write_patient(spec, d / "raw", d / "truth")
            steps.anonymize_dicom(pid, d / "anon", raw_dir=d / "raw")
            steps.dicom_to_hu(d / "anon", d / "hu.nii.gz", d / "hu.json", pid)
            steps.resample_volume(d / "hu.nii.gz", d / "volume.nii.gz", cfg["resample"]["spacing_mm"], pid)
            steps.segment_lungs(
                d / "volume.nii.gz",
                d / "mask.nii.gz",
                d / "labels.nii.gz",
                d / "lungs.json",
                pid,
                threshold=cfg["lung_mask"]["threshold"],
            )
            shutil.rmtree(d / "raw")
            shutil.rmtree(d / "anon")
        phantom = make_phantom(spec)
        truth = truth_readout(phantom)
        grid = d / "volume.nii.gz"
        _resampled(phantom.lobes, phantom, 0, d / "lobes.nii.gz", reference=grid)
        _resampled(phantom.lesion_mask, phantom, 0, d / "lesion.nii.gz", reference=grid)
        _resampled((phantom.lung_labels > 0).astype(np.uint8), phantom, 0, d / "truth_mask.nii.gz", reference=grid)
        _resampled(phantom.lung_labels, phantom, 0, d / "truth_labels.nii.gz", reference=grid)
        prepared.append({"spec": spec, "dir": d, "truth": truth})
        print(f"(b) prepared {pid}{' (reused)' if reuse and done else ''}", flush=True)
    return prepared


def part_b(
    prepared: list[dict],
    model: Path | None,
    severity: dict,
    with_truth_lesions: bool = False,
    truth_lung: bool = False,
) -> dict:
    """(b) The read-out on the pipeline's lung mask with the U-Net's infection mask; (b0) the truth
    lesions inside the pipeline's lung mask; (b1) the truth lung mask with the U-Net run inside it;
    each with the truth lobes and with the six zones."""
    import SimpleITK as sitk

    from covidct import steps
    from covidct.io import read_volume, write_volume

    out = {"lobes": [], "zones": []}
    name = "b0" if with_truth_lesions else "b1" if truth_lung else "b"
    for item in prepared:
        d, pid = item["dir"], item["spec"].patient_id
        mask, labels = d / "mask.nii.gz", d / "labels.nii.gz"
        if truth_lung:
            mask, labels = d / "truth_mask.nii.gz", d / "truth_labels.nii.gz"
        if with_truth_lesions:
            lung = sitk.GetArrayFromImage(read_volume(mask)) > 0
            lesion = read_volume(d / "lesion.nii.gz")
            inside = sitk.GetImageFromArray((sitk.GetArrayFromImage(lesion) * lung).astype(np.uint8))
            inside.CopyInformation(lesion)
            infection = d / "lesion_in_mask.nii.gz"
            write_volume(infection, inside)
        else:
            infection = d / f"infection_{name}_{model.parent.name}.nii.gz"
            steps.segment_infection(
                d / "volume.nii.gz",
                mask,
                labels,
                model,
                model.with_suffix(".json"),
                infection,
                d / f"types_{name}_{model.parent.name}.nii.gz",
                d / "infection.json",
                d / "infection.png",
                pid,
            )
        for scheme, lobe_map in (("lobes", str(d / "lobes.nii.gz")), ("zones", [])):
            res = steps.severity_readout(
                d / "volume.nii.gz",
                labels,
                infection,
                d / "hu.json",
                d / f"{scheme}.json",
                d / f"{scheme}.png",
                pid,
                lobes=lobe_map,
                types=[] if name == "b0" else str(d / f"types_{name}_{model.parent.name}.nii.gz"),
                infection_info=None if name == "b0" else d / "infection.json",
                **severity,
            )
            row = {"patient_id": pid, **compare(res, item["truth"])}
            row["lobe_voxels_reassigned_percent"] = res["qc"].get("lobe_voxels_reassigned_percent")
            out[scheme].append(row)
        print(
            f"({name}) {pid}: CTSS diff {out['lobes'][-1]['total_diff']}, "
            f"PO err {out['lobes'][-1]['po_err']}, PHO err {out['lobes'][-1]['pho_err']}",
            flush=True,
        )
    return out


def _mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def report(result: dict) -> str:
    lines = [f"severity read-out benchmark ({result['command']}); spacing {result['spacing_mm']} mm", ""]
    keys = [
        ("region_score_exact", "region score exact (target >= 0.90 of lobes)"),
        ("region_score_within_1", "region score within +-1 (target >= 0.99)"),
        ("region_score_bias", "region score mean difference"),
        ("total_within_2", "CTSS / zone score within +-2 (target >= 0.95 of patients)"),
        ("total_abs_max", "CTSS / zone score largest |difference|"),
        ("total_bias", "CTSS / zone score mean difference"),
        ("po_within_3", "PO within 3 points (share of patients)"),
        ("po_abs_mean", "PO mean |error|"),
        ("po_abs_max", "PO max |error|"),
        ("po_bias", "PO mean error"),
        ("pho_within_2", "PHO within 2 points (share of patients)"),
        ("pho_abs_mean", "PHO mean |error|"),
        ("pho_abs_max", "PHO max |error|"),
        ("po_per_lung_abs_max", "PO per lung max |error|"),
        ("pho_per_lung_abs_max", "PHO per lung max |error|"),
        ("ggo_abs_mean", "ground-glass % mean |error| (vs lesion kinds)"),
        ("consolidation_abs_mean", "consolidation % mean |error| (vs lesion kinds)"),
        ("readout_s_median", "read-out compute s, median"),
        ("readout_s_max", "read-out compute s, max"),
        ("step_s_median", "whole step s (read 3-4 volumes, read-out, panel PNG, JSON), median"),
    ]
    for part, title in (
        ("a", "(a) truth lung, lesions and lobes on the workflow's grid"),
        ("b0", "(b0) pipeline lung mask, truth lesions inside it; truth lobes / zones"),
        ("b1", "(b1) truth lung mask, the infection U-Net inside it; truth lobes / zones"),
        ("b", "(b) end to end: pipeline lung mask and infection U-Net; truth lobes / zones"),
    ):
        if part not in result:
            continue
        lines.append(title)
        seeds = part in ("b", "b1")
        runs = result[part] if seeds else {"": result[part]}
        for scheme in ("lobes", "zones"):
            lines.append(f"  {scheme}:")
            for key, label in keys:
                values = [run["summary"][scheme][key] for run in runs.values()]
                text = _mean_sd(values) + f"  (U-Net seeds {', '.join(runs)})" if seeds else f"{values[0]}"
                lines.append(f"    {label}: {text}")
        if part == "b":
            for seed, run in runs.items():
                lines.append(f"  U-Net seed {seed}: trained in {run['train_s']:.0f} s; {run['unet']}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="patients of part (a)")
    parser.add_argument("--n-e2e", type=int, default=20, help="patients of part (b), the first of the cohort")
    parser.add_argument("--unet-seeds", type=int, nargs="*", default=[1337, 1338])
    parser.add_argument("--parts", nargs="*", default=["a", "b"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/covidct-severity-bench"))
    parser.add_argument("--reuse", action="store_true", help="reuse the patients an earlier run prepared in --work")
    args = parser.parse_args()
    import sys

    cfg = config()
    spacing = float(cfg["resample"]["spacing_mm"])
    severity = dict(cfg["severity"])
    args.work.mkdir(parents=True, exist_ok=True)
    specs = cohort(args.n)
    result = {
        "command": " ".join(["python", "bench/severity_readout.py", *sys.argv[1:]]),
        "spacing_mm": spacing,
        "severity": severity,
        "cohort": [
            {
                "patient_id": s.patient_id,
                "lobe_involvement": s.lobe_involvement,
                "n_slices": s.n_slices,
                "slice_mm": s.slice_spacing_mm,
                "matrix": s.matrix,
                "pixel_mm": s.pixel_spacing_mm,
            }
            for s in specs
        ],
    }
    if "a" in args.parts:
        a = part_a(specs, args.work, spacing, severity)
        result["a"] = {"rows": a, "summary": {k: summary(v) for k, v in a.items()}}
    if "b" in args.parts:
        prepared = prepare_e2e(specs[: args.n_e2e], args.work, cfg, args.reuse)
        b0 = part_b(prepared, None, severity, with_truth_lesions=True)
        result["b0"] = {"rows": b0, "summary": {k: summary(v) for k, v in b0.items()}}
        result["b"], result["b1"] = {}, {}
        for seed in args.unet_seeds:
            model, train_s = train_unet(args.work, seed)
            b1 = part_b(prepared, model, severity, truth_lung=True)
            result["b1"][str(seed)] = {"rows": b1, "summary": {k: summary(v) for k, v in b1.items()}}
            b = part_b(prepared, model, severity)
            metrics = json.loads((model.parent / "metrics.json").read_text())
            unet = f"variant {metrics.get('chosen_variant')}, val Dice " + ", ".join(
                f"{v}={r.get('val_dice')}" for v, r in metrics.get("variants", {}).items()
            )
            result["b"][str(seed)] = {
                "rows": b,
                "summary": {k: summary(v) for k, v in b.items()},
                "train_s": train_s,
                "unet": unet,
            }
    OUT.mkdir(parents=True, exist_ok=True)
    for part in ("a", "b"):
        if part in args.parts:
            own = {"a": ("a",), "b": ("b0", "b1", "b")}[part]
            keep = {k: v for k, v in result.items() if k not in ("a", "b0", "b1", "b") or k in own}
            (OUT / f"severity_readout_{part}.json").write_text(json.dumps(keep, indent=1, default=str))
    merged, commands = {"spacing_mm": spacing}, []
    for part in ("a", "b"):
        path = OUT / f"severity_readout_{part}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            merged.update({k: v for k, v in saved.items() if k in ("a", "b0", "b1", "b")})
            commands.append(f"part {part}: {saved['command']}")
    merged["command"] = "; ".join(commands)
    text = report(merged)
    (OUT / "severity_readout.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
