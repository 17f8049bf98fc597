"""Per-patient time and peak memory of the whole per-patient chain (threshold backend),
run through Snakemake exactly as a user runs it, so every rule's process start counts.

Patients: a synthetic 300-slice 512x512 series and the real lung_pet_ct_dx_A0002 B40f series
(30 slices, read in place from ../shared/data). Each patient is run alone, on a fresh results
folder, with --cores 2.

    python bench/per_patient.py [--work /tmp/covidct-bench] [--slices 300] [--matrix 512]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
A0002 = REPO.parent / "shared" / "data" / "ct" / "lung_pet_ct_dx_A0002" / "B40f"
# The rules this bench times and their per-patient outputs, which are exactly the files it asks for
# (asking for `all` would also train the models); tests/unit/test_bench_targets.py checks that these
# targets resolve to exactly these rules.
OUTPUTS = {
    "anonymize_dicom": ["results/anonymized/{patient}", "results/anonymized/{patient}.json"],
    "verify_anonymization": ["results/verify/{patient}.json"],
    "dicom_to_hu": ["results/hu/{patient}.nii.gz", "results/hu/{patient}.json", "results/resampled/{patient}.nii.gz"],
    "segment_lungs": [
        "results/lung_mask/{patient}.nii.gz",
        "results/lung_mask/{patient}_labels.nii.gz",
        "results/lung_mask/{patient}.json",
    ],
    "export_npy": ["results/npy/{patient}.npy"],
    "qc_montage": ["results/qc/{patient}.png"],
}
RULES = list(OUTPUTS)


def targets(patient: str) -> list[str]:
    """The files the bench asks Snakemake for: every per-patient output of RULES for ``patient``."""
    return [pattern.format(patient=patient) for rule in RULES for pattern in OUTPUTS[rule]]


def run_patient(work: Path, patient: str, dicom_dir: Path, cores: int) -> dict:
    run_dir = work / f"run_{patient}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    sheet = run_dir / "patients.tsv"
    sheet.write_text(f"patient_id\tdicom_dir\tlabel\tscore\n{patient}\t{dicom_dir}\t\t\n")
    env = dict(os.environ, COVIDCT_ANON_KEY="benchmark-key-not-secret")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        *targets(patient),  # before the options: --config and --quiet take several values
        "--directory",
        str(run_dir),
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        "--config",
        f"patients={sheet}",
        "--cores",
        str(cores),
        "--resources",
        "gpu=1",
        "--quiet",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{patient}: snakemake failed\n{proc.stderr[-3000:]}")
    per_rule = {}
    for rule in RULES:
        with open(run_dir / "results" / "benchmarks" / rule / f"{patient}.tsv") as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        per_rule[rule] = (float(row["s"]), float(row["max_rss"]))
    return {"wall_s": wall, "per_rule": per_rule}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/covidct-bench"))
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from covidct.demo.spec import PhantomSpec
    from covidct.demo.writer import write_patient

    a.work.mkdir(parents=True, exist_ok=True)
    spec = PhantomSpec("bench300", 4242, True, 30.0, a.slices, 1.0, a.matrix, 0.7)
    raw = a.work / "raw" / spec.patient_id
    if not raw.exists():
        t0 = time.perf_counter()
        write_patient(spec, raw, a.work / "truth")
        print(f"generated {a.slices}x{a.matrix}x{a.matrix} synthetic series in {time.perf_counter() - t0:.1f} s")
    cases = [(spec.patient_id, raw, f"synthetic {a.slices} slices {a.matrix}x{a.matrix}")]
    if A0002.is_dir():
        cases.append(("A0002", A0002, "real lung_pet_ct_dx_A0002 B40f, 30 slices 512x512"))
    print(
        f"{'patient':<10} {'wall s':>7} {'sum rules s':>11} {'peak RSS MB':>11}  "
        + " ".join(f"{r[:12]:>12}" for r in RULES)
    )
    for patient, folder, what in cases:
        res = run_patient(a.work, patient, folder, a.cores)
        total = sum(s for s, _ in res["per_rule"].values())
        peak = max(m for _, m in res["per_rule"].values())
        print(
            f"{patient:<10} {res['wall_s']:>7.1f} {total:>11.1f} {peak:>11.0f}  "
            + " ".join(f"{res['per_rule'][r][0]:>12.2f}" for r in RULES)
            + f"   ({what})"
        )


if __name__ == "__main__":
    main()
