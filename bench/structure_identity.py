"""The structure move changed structure, not behaviour: the demo's per-patient chain run with the code
of two git revisions gives the same outputs.

Each revision's ``src`` (and the schema it reads) is taken with ``git archive`` into the work folder and
imported from there (``PYTHONPATH``), in one process per revision. Both run the same chain through the
workflow's own steps (``covidct.steps.<rule>``, the rule -> step contract, whose names both revisions
share) on the same inputs:

- demo patients (``covidct.demo.cohort.DEMO_COHORT``) written once, by the old revision;
- one small infection U-Net trained once, by the old revision, on synthetic phantoms, saved and used by
  both (``--model`` reuses a saved one);
- anonymize_dicom, verify_anonymization, dicom_to_hu, resample_volume (the config's default spacing),
  segment_lungs (threshold), export_npy, qc_montage, segment_infection, severity_readout (six zones).

Compared, per patient: the anonymized DICOM files (bytes), the HU and resampled volumes, lung mask and
labels, infection mask and lesion types (voxels, spacing, origin, direction, pixel type), the model
array (exact), and the JSONs (anonymizer summary, verification report, HU info, lung provenance,
infection result, severity read-out) with their timing fields (``seconds``, ``step_seconds``) left
out. PNGs are compared by their pixels and reported apart (figures are not outputs a number is read
from; the severity panel is now drawn without pyplot).

    python bench/structure_identity.py [--old 89ff98d] [--new HEAD] [--patients demo01 ...] [--work DIR]

Writes bench/measured/structure_identity.txt (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
KEY = "structure-identity-key-0123456789"
TIMING = {"seconds", "step_seconds"}
#: The small U-Net both revisions use (plumbing, not accuracy): the workflow's tiny settings, at the
#: demo's spacing.
UNET = {
    "size": 32,
    "base_filters": 4,
    "norm": "group",
    "variants": ["dice_ce"],
    "folds": 2,
    "epochs": 12,
    "warmup_epochs": 2,
    "batch_size": 4,
    "learning_rate": 0.003,
    "retries": 2,
    "seed": 1337,
    "augment": True,
    "tta": False,
    "max_slices_per_volume": 6,
}

# Run in a revision's process: argv[1] = work folder, argv[2] = JSON of the job.
_CHAIN = r"""
import json, sys
from pathlib import Path
from covidct import steps
from covidct.config import default

job = json.loads(sys.argv[1])
raw, out, model = Path(job["raw"]), Path(job["out"]), Path(job["model"])
spacing = default("resample.spacing_mm")
for pid in job["patients"]:
    p = out / pid
    p.mkdir(parents=True, exist_ok=True)
    steps.anonymize_dicom(pid, p / "anon", p / "anon.json", raw_dir=raw / pid)
    steps.verify_anonymization(p / "anon", p / "verify.json", pid, raw_dir=raw / pid)
    steps.dicom_to_hu(p / "anon", p / "hu.nii.gz", p / "hu.json", pid, anonymize_summary=p / "anon.json")
    steps.resample_volume(p / "hu.nii.gz", p / "resampled.nii.gz", spacing, pid)
    steps.segment_lungs(p / "resampled.nii.gz", p / "mask.nii.gz", p / "labels.nii.gz", p / "lungs.json", pid)
    steps.export_npy(p / "resampled.nii.gz", p / "mask.nii.gz", p / "array.npy", pid)
    steps.qc_montage(p / "resampled.nii.gz", p / "labels.nii.gz", p / "qc.png", pid, provenance=p / "lungs.json")
    steps.segment_infection(
        p / "resampled.nii.gz", p / "mask.nii.gz", p / "labels.nii.gz", model, model.with_suffix(".json"),
        p / "infection.nii.gz", p / "types.nii.gz", p / "infection.json", p / "infection.png", pid, n_slices=12,
    )
    steps.severity_readout(
        p / "resampled.nii.gz", p / "labels.nii.gz", p / "infection.nii.gz", p / "hu.json",
        p / "severity.json", p / "severity.png", pid, types=p / "types.nii.gz",
        infection_info=p / "infection.json",
    )
    print("done", pid, flush=True)
"""

# Run in the old revision's process: the demo patients and the U-Net.
_INPUTS = r"""
import json, sys
from pathlib import Path
from covidct.demo.cohort import DEMO_COHORT, write_infection_training
from covidct.demo.writer import write_patient
from covidct.infection.train import train
from covidct.config import default

job = json.loads(sys.argv[1])
raw = Path(job["raw"])
specs = {s.patient_id: s for s in DEMO_COHORT}
for pid in job["patients"]:
    if not (raw / pid).is_dir():
        write_patient(specs[pid], raw / pid, raw.parent / "truth")
model = Path(job["model"])
if not model.is_file():
    data = model.parent / "infection_train"
    if not (data / "volumes").is_dir():
        write_infection_training(data, job["demo_volumes"])
    source = {"volumes": str(data / "volumes"), "masks": str(data / "masks"), "lungs": str(data / "lungs"),
              "labels": "types"}
    train([source], model, model.with_name("unet_metrics.json"), out_sidecar=model.with_suffix(".json"),
          spacing_mm=default("resample.spacing_mm"), **job["unet"])
print("inputs ready", flush=True)
"""

VOLUMES = ("hu", "resampled", "mask", "labels", "infection", "types")
JSONS = ("anon", "verify", "hu", "lungs", "infection", "severity")
PNGS = ("qc", "infection", "severity")


def export(rev: str, dest: Path) -> str:
    """``src`` and ``workflow/schemas`` of ``rev`` into ``dest``; returns the commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src", "workflow/schemas"], cwd=REPO, capture_output=True, check=True
    ).stdout
    tar = dest / "src.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="tar")
    tar.unlink()
    return commit


def run(code: str, tree: Path, job: dict, log: Path) -> float:
    """``code`` with ``tree``'s covidct; returns the wall time."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), COVIDCT_ANON_KEY=KEY, PYTHONHASHSEED="0")
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        res = subprocess.run(
            [sys.executable, "-c", code, json.dumps(job)], env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    if res.returncode:
        sys.exit(f"{tree.name}: failed, see {log}")
    return time.perf_counter() - t0


def _json(path: Path):
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in TIMING}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(json.loads(path.read_text()))


def _volume(path: Path):
    image = sitk.ReadImage(str(path))
    grid = (image.GetSpacing(), image.GetOrigin(), image.GetDirection(), image.GetPixelIDTypeAsString())
    return sitk.GetArrayFromImage(image), grid


def compare(a: Path, b: Path) -> tuple[dict[str, bool], dict[str, bool]]:
    """Per output of one patient, whether both revisions wrote the same: the checked outputs, and the PNGs."""
    same = {}
    files_a = sorted(p.relative_to(a / "anon") for p in (a / "anon").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b / "anon") for p in (b / "anon").rglob("*") if p.is_file())
    same["anonymized DICOM (bytes)"] = files_a == files_b and all(
        (a / "anon" / f).read_bytes() == (b / "anon" / f).read_bytes() for f in files_a
    )
    for name in VOLUMES:
        (va, ga), (vb, gb) = _volume(a / f"{name}.nii.gz"), _volume(b / f"{name}.nii.gz")
        same[f"{name}.nii.gz"] = ga == gb and va.dtype == vb.dtype and np.array_equal(va, vb)
    xa, xb = np.load(a / "array.npy"), np.load(b / "array.npy")
    same["array.npy"] = xa.dtype == xb.dtype and np.array_equal(xa, xb)
    for name in JSONS:
        same[f"{name}.json"] = _json(a / f"{name}.json") == _json(b / f"{name}.json")
    pngs = {
        f"{name}.png": np.array_equal(
            np.asarray(Image.open(a / f"{name}.png")), np.asarray(Image.open(b / f"{name}.png"))
        )
        for name in PNGS
    }
    return same, pngs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="89ff98d", help="revision before the move (default: 89ff98d)")
    parser.add_argument("--new", default="HEAD", help="revision after the move (default: HEAD)")
    parser.add_argument("--patients", nargs="*", help="demo ids (default: every demo patient)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/covidct-structure-identity"))
    parser.add_argument("--model", type=Path, help="a saved infection U-Net to use (its sidecar beside it)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "measured" / "structure_identity.txt")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from covidct.demo.cohort import DEMO_COHORT

    patients = args.patients or [s.patient_id for s in DEMO_COHORT]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    old_tree, new_tree = work / "old", work / "new"
    commits = {"old": export(args.old, old_tree), "new": export(args.new, new_tree)}
    model = args.model or work / "unet" / "infection_unet.keras"
    model.parent.mkdir(parents=True, exist_ok=True)
    inputs = {"raw": str(work / "raw"), "patients": patients, "model": str(model), "unet": UNET, "demo_volumes": 4}
    seconds = {"inputs (old revision)": run(_INPUTS, old_tree, inputs, work / "inputs.log")}
    for side, tree in (("old", old_tree), ("new", new_tree)):
        out = work / f"out_{side}"
        shutil.rmtree(out, ignore_errors=True)
        job = {"raw": str(work / "raw"), "out": str(out), "patients": patients, "model": str(model)}
        seconds[f"{side} chain"] = run(_CHAIN, tree, job, work / f"chain_{side}.log")

    lines = [
        f"structure identity: python bench/structure_identity.py --old {args.old} --new {args.new}"
        + (f" --patients {' '.join(args.patients)}" if args.patients else ""),
        f"old {commits['old']}, new {commits['new']}; {len(patients)} demo patients; infection U-Net "
        f"{model.name} (SHA-256 in each infection.json), trained once with {json.dumps(UNET)}",
        "wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
        "",
    ]
    all_same, differing_png = True, []
    header = None
    for pid in patients:
        same, pngs = compare(work / "out_old" / pid, work / "out_new" / pid)
        if header is None:
            header = list(same)
            lines.append("patient  " + "  ".join(header))
        lines.append(f"{pid:8} " + "  ".join(("same" if same[k] else "DIFFERENT").center(len(k)) for k in header))
        all_same &= all(same.values())
        differing_png += [f"{pid}/{k}" for k, v in pngs.items() if not v]
    lines += [
        "",
        "checked outputs: " + ("identical for every patient" if all_same else "DIFFERENCES (see the table)"),
        "PNGs (not checked): "
        + ("pixel-identical" if not differing_png else f"pixels differ in {', '.join(differing_png)}"),
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    sys.exit(0 if all_same else 1)


if __name__ == "__main__":
    main()
