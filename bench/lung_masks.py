"""Lung masks of the threshold backend, measured: against reference contours on real CT, kernel
agreement, synthetic patients with known truth, and time, each today's code against a baseline.

Calls the very step the workflow runs (``covidct.steps.segment_lungs``, threshold backend, with the
defaults of config/config.yaml) on volumes prepared as the workflow prepares them
(``covidct.dicom.hu.load_series`` + ``covidct.volume.resample`` at ``resample.spacing_mm``):

- ../shared/data/ct/nsclc_radiomics_LUNG1-003: Dice, HD95 and volume difference against the RTSTRUCT
  (Lung-Right, Lung-Left; and with GTV-1 inside the lungs' outline), through ``covidct.lungs.evaluation``;
  also with the contours moved by minus half a CT pixel (see README: this structure set sits half a
  pixel off its CT). "Below the diaphragm": mask voxels lower in their column than the reference's
  lowest lung voxel there (all of them: mostly boundary disagreement at the bases; and those in the lower
  third of the lungs that are air, HU < -900: gas under the diaphragm), and mask voxels below the
  reference's lowest lung slice.
  "Airway above the carina": mask voxels above the carina (found by ``covidct.lungs.airways``) outside the
  reference lungs that are air (HU < -900).
- ../shared/data/ct/lung_pet_ct_dx_A0002 B40f and B70f: Dice between the two kernels' masks.
- synthetic patients at 84 % involvement (demo07 and two more seeds) and demo01-03 (neck, bowel gas):
  Dice against the truth masks of ``covidct.demo`` (resampled nearest-neighbour), the share of
  lesion voxels inside the mask, and the mL of non-lung air (neck, bowel gas) inside the mask.
- time of the step on the 300-slice synthetic patient of bench/per_patient.py and on LUNG1-003,
  today's step (with its QC) and the baseline's (read, ``threshold_lungs`` of ``--baseline-rev``, write),
  interleaved in one process, ``--repeats`` times each; medians of wall and of CPU time (the machine
  is shared: CPU time is the steadier measure).

The baseline is ``src/covidct/lungs.py`` at ``--baseline-rev`` (git), run on the same volumes.

    python bench/lung_masks.py [--baseline-rev 13736db] [--work /tmp/covidct-lung-bench] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CT = REPO.parent / "shared" / "data" / "ct"
LUNG1 = CT / "nsclc_radiomics_LUNG1-003"
A0002 = CT / "lung_pet_ct_dx_A0002"
OUT = REPO / "bench" / "measured"
BASELINE_REV = "13736db"
AIR_HU = -900


def baseline_module(rev: str):
    """``covidct/lungs.py`` at ``rev`` as a module (it imports only modules that still exist)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:src/covidct/lungs.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path("/tmp") / f"covidct_lungs_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"covidct_lungs_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def baseline_step(module, params: dict, in_volume: Path, out_dir: Path, patient: str) -> np.ndarray:
    """The baseline's segment_lungs step: read, threshold_lungs, write mask, labels and provenance."""
    import SimpleITK as sitk

    from covidct.io import read_volume, write_json, write_volume

    image = read_volume(in_volume)
    known = {k: v for k, v in params.items() if k in module.ThresholdParams.__dataclass_fields__}
    labels, stats = module.threshold_lungs(
        sitk.GetArrayViewFromImage(image), image.GetSpacing(), module.ThresholdParams(**known), patient
    )
    for name, array in (("mask", (labels > 0).astype(np.uint8)), ("labels", labels.astype(np.uint8))):
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        write_volume(out_dir / f"{patient}_{name}.nii.gz", out)
    write_json(out_dir / f"{patient}.json", stats)
    return labels


def new_step(params: dict, in_volume: Path, out_dir: Path, patient: str) -> tuple[np.ndarray, dict]:
    import SimpleITK as sitk

    from covidct import steps

    prov = steps.segment_lungs(
        in_volume,
        out_dir / f"{patient}.nii.gz",
        out_dir / f"{patient}_labels.nii.gz",
        out_dir / f"{patient}.json",
        patient,
        backend="threshold",
        threshold=params,
    )
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / f"{patient}_labels.nii.gz")))
    return labels, prov


def prepare(work: Path, spacing: float) -> dict:
    """Resampled volumes (and truths) of every case, written once under ``work``."""
    from dataclasses import replace

    import SimpleITK as sitk

    from covidct.demo.anatomy import make_phantom
    from covidct.demo.cohort import DEMO_COHORT
    from covidct.demo.spec import PhantomSpec
    from covidct.demo.writer import label_image, write_patient
    from covidct.dicom.hu import load_series
    from covidct.io import write_volume
    from covidct.volume import resample

    cases = {}
    vol = work / "volumes"
    vol.mkdir(parents=True, exist_ok=True)

    def real(name: str, folder: Path) -> Path:
        path = vol / f"{name}.nii.gz"
        if not path.exists():
            image, _ = load_series(folder, name)
            write_volume(path, resample(image, spacing))
            (vol / f"{name}.pixel").write_text(str(image.GetSpacing()[0]))
        return path

    if LUNG1.is_dir():
        cases["LUNG1-003"] = {
            "volume": real("L1003", LUNG1 / "ct"),
            "pixel_mm": float((vol / "L1003.pixel").read_text()),
        }
    if A0002.is_dir():
        for kernel in ("B40f", "B70f"):
            cases[f"A0002_{kernel}"] = {"volume": real(f"A0002_{kernel}", A0002 / kernel)}
    by_id = {s.patient_id: s for s in DEMO_COHORT}
    synthetic = [
        by_id["demo07"],
        replace(by_id["demo07"], patient_id="syn84a", seed=3101),
        replace(by_id["demo07"], patient_id="syn84b", seed=3102, n_slices=64, slice_spacing_mm=5.0),
        by_id["demo01"],
        by_id["demo02"],
        by_id["demo03"],
    ]
    for spec in synthetic:
        path, truth = vol / f"{spec.patient_id}.nii.gz", vol / f"{spec.patient_id}_truth.nii.gz"
        if not path.exists():
            raw = work / "raw" / spec.patient_id
            write_patient(spec, raw, work / "truth")
            image, _ = load_series(raw, spec.patient_id)
            res = resample(image, spacing)
            write_volume(path, res)
            for name in ("lung", "lesion"):
                lab = sitk.ReadImage(str(work / "truth" / f"{spec.patient_id}_{name}.nii.gz"))
                write_volume(
                    vol / f"{spec.patient_id}_{name}.nii.gz",
                    sitk.Resample(lab, res, sitk.Transform(), sitk.sitkNearestNeighbor, 0, lab.GetPixelID()),
                )
            write_volume(truth, sitk.ReadImage(str(vol / f"{spec.patient_id}_lung.nii.gz")))
        cases[spec.patient_id] = {
            "volume": path,
            "target_score": spec.target_score,
            "truth": vol / f"{spec.patient_id}_lung.nii.gz",
            "lesion": vol / f"{spec.patient_id}_lesion.nii.gz",
        }
    big = vol / "bench300.nii.gz"
    if not big.exists():  # the synthetic patient of bench/per_patient.py
        spec = PhantomSpec("bench300", 4242, True, 30.0, 300, 1.0, 512, 0.7)
        phantom = make_phantom(spec)
        write_volume(big, resample(label_image(phantom.hu, phantom), spacing))
    cases["bench300"] = {"volume": big}
    return cases


def lung1_measures(labels: np.ndarray, hu: np.ndarray, ref: np.ndarray, carina_z: int | None) -> dict:
    """Mask voxels below the diaphragm and airway above the carina (definitions in the module docstring)."""
    mask = labels > 0
    ref_lung = ref > 0
    has = ref_lung.any(axis=0)
    floor = np.where(has, np.argmax(ref_lung, axis=0), 0)
    zs = np.nonzero(ref_lung.any(axis=(1, 2)))[0]
    z = np.arange(mask.shape[0])[:, None, None]
    below = mask & ((has[None] & (z < floor[None])) | (z < zs[0]))
    above = np.zeros(mask.shape, bool)
    if carina_z is not None:
        above[carina_z + 1 :] = True
    airway = mask & above & ~ref_lung & (hu < AIR_HU)
    lower = z < zs[0] + (zs[-1] - zs[0]) // 3
    return {
        "below_reference_floor_voxels": int(below.sum()),
        "air_below_reference_floor_voxels": int((below & lower & (hu < AIR_HU)).sum()),
        "below_lowest_reference_slice_voxels": int((mask & (z < zs[0])).sum()),
        "airway_above_carina_voxels": int(airway.sum()),
        "carina_z_index": carina_z,
    }


def evaluate_lung1(case: dict, masks: dict, work: Path, lung_eval_cfg: dict) -> dict:
    import SimpleITK as sitk

    from covidct.lungs.airways import body_midline_x, find_airways
    from covidct.lungs.evaluation import compare, evaluate, lesions_in_thorax, reference_labels
    from covidct.lungs.thorax import outside_air

    image = sitk.ReadImage(str(case["volume"]))
    hu = sitk.GetArrayFromImage(image)
    spacing_zyx = tuple(image.GetSpacing()[::-1])
    air = hu < -320
    out_air = outside_air(air)
    carina = find_airways(hu, air & ~out_air, image.GetSpacing(), -930, body_midline_x(~out_air)).carina_z
    result = {}
    half = case["pixel_mm"] / 2
    # the feature itself, on today's mask
    result["lung_eval_json"] = evaluate(
        work / "new" / "L1003_labels.nii.gz",
        LUNG1 / "rtstruct",
        OUT / "lung_masks_L1003_eval.json",
        "L1003",
        lesion_pattern=lung_eval_cfg["lesion_roi"],
    )
    for shift_name, shift in (("as_given", (0.0, 0.0)), ("minus_half_pixel", (-half, -half))):
        ref, lesions, _ = reference_labels(
            LUNG1 / "rtstruct", image, "LUNG1-003", lesion_pattern=lung_eval_cfg["lesion_roi"], shift_mm=shift
        )
        with_lesions = (ref > 0) | lesions_in_thorax(lesions, ref)
        for name, labels in masks.items():
            row = compare(labels, ref, spacing_zyx)
            row["with_gtv"] = compare((labels > 0).astype(np.uint8), with_lesions.astype(np.uint8), spacing_zyx)["both"]
            row.update(lung1_measures(labels, hu, ref, carina))
            result.setdefault(name, {})[shift_name] = row
    return result


def dice(a: np.ndarray, b: np.ndarray) -> float:
    from covidct.lungs.evaluation import dice as d

    return round(d(a > 0, b > 0), 4)


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU time, all threads of this process, barely moves when other
    processes load the machine; wall time does)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    ap.add_argument("--work", type=Path, default=Path("/tmp/covidct-lung-bench"))
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import SimpleITK as sitk

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    params = dict(config["lung_mask"]["threshold"])
    spacing = float(config["resample"]["spacing_mm"])
    old = baseline_module(a.baseline_rev)
    t0 = time.perf_counter()
    cases = prepare(a.work, spacing)
    print(f"prepared {len(cases)} volumes in {time.perf_counter() - t0:.0f} s", flush=True)
    (a.work / "new").mkdir(exist_ok=True)
    (a.work / "old").mkdir(exist_ok=True)
    labels, provs = {}, {}
    for name, case in cases.items():
        pid = name.replace("LUNG1-003", "L1003")
        labels[name] = {
            "new": new_step(params, case["volume"], a.work / "new", pid)[0],
            "old": baseline_step(old, params, case["volume"], a.work / "old", pid),
        }
        provs[name] = json.loads((a.work / "new" / f"{pid}.json").read_text())
        print(f"segmented {name}", flush=True)
    results: dict = {
        "baseline_rev": a.baseline_rev,
        "config": {"spacing_mm": spacing, "threshold": params},
        "qc": {name: provs[name]["qc"] for name in cases},
    }
    if "LUNG1-003" in cases:
        results["LUNG1-003"] = evaluate_lung1(cases["LUNG1-003"], labels["LUNG1-003"], a.work, config["lung_eval"])
    if "A0002_B40f" in cases:
        results["A0002_kernels_dice"] = {
            v: dice(labels["A0002_B40f"][v], labels["A0002_B70f"][v]) for v in ("new", "old")
        }
    synth = {}
    for name, case in cases.items():
        if "truth" not in case:
            continue
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case["truth"])))
        lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(case["lesion"]))) > 0
        hu = sitk.GetArrayFromImage(sitk.ReadImage(str(case["volume"])))
        voxel_ml = spacing**3 / 1000
        row = {"target_score": case["target_score"]}
        for v in ("new", "old"):
            m = labels[name][v]
            row[v] = {
                "dice": dice(m, truth),
                "dice_right": dice(m == 1, truth == 1),
                "dice_left": dice(m == 2, truth == 2),
                "lesion_inside": round(float((m[lesion] > 0).mean()), 4) if lesion.any() else None,
                "non_lung_air_in_mask_ml": round(float(((m > 0) & (truth == 0) & (hu < AIR_HU)).sum() * voxel_ml), 1),
            }
        synth[name] = row
    results["synthetic"] = synth
    timing = {}
    for name in ("bench300", "LUNG1-003"):
        if name not in cases:
            continue
        pid = name.replace("LUNG1-003", "L1003")
        case = cases[name]
        new_t, old_t = [], []
        for _ in range(a.repeats):  # interleaved: the machine's load hits both alike
            old_t.append(
                timed(lambda case=case, pid=pid: baseline_step(old, params, case["volume"], a.work / "old", pid))
            )
            new_t.append(timed(lambda case=case, pid=pid: new_step(params, case["volume"], a.work / "new", pid)))
        row = {"shape_zyx": list(sitk.ReadImage(str(case["volume"])).GetSize()[::-1])}
        for kind, i in (("wall", 0), ("cpu", 1)):
            new_k, old_k = [t[i] for t in new_t], [t[i] for t in old_t]
            row[f"new_{kind}_s"] = [round(t, 2) for t in new_k]
            row[f"old_{kind}_s"] = [round(t, 2) for t in old_k]
            row[f"{kind}_ratio_of_medians"] = round(statistics.median(new_k) / statistics.median(old_k), 2)
        timing[name] = row
        print(f"timed {name}: {timing[name]}", flush=True)
    results["timing"] = timing
    OUT.mkdir(exist_ok=True)
    (OUT / "lung_masks.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "qc"}, indent=1))


if __name__ == "__main__":
    main()
