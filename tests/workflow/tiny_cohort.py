"""The tiny synthetic cohort run once per test session by the workflow tests and compared
against by the SLURM test: 3 good patients, 2 bad ones, then a re-run after the sheet is fixed."""

from __future__ import annotations

import pytest

from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient
from helpers import snakemake, write_config

KEY = "test-key-0123456789abcdef"
SPLIT = {"tiny01": "train", "tiny02": "train", "tiny03": "val"}
TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 2,
    "filters": [4, 4, 8, 8],
    "dense": 8,
    "patience": 2,
    "scorer": {"positives_only": False, "loss": "huber"},
}
TINY_INFECTION = {
    "demo_volumes": 2,
    "size": 32,
    "base_filters": 4,
    "variants": ["dice_ce"],
    # plumbing, not accuracy: GroupNorm learns fastest at this tiny scale (BatchNorm, the default, can stay
    # all-background for the first epochs and would be retried as degenerate)
    "norm": "group",
    "folds": 2,
    "epochs": 12,
    "learning_rate": 0.003,
    "max_slices_per_volume": 6,
}
TINY = [
    PhantomSpec("tiny01", 501, True, 20.0, 26, 10.0, 72, 5.0),
    PhantomSpec("tiny02", 502, False, 0.0, 24, 10.0, 72, 5.0, flip_x=True, descending=True),
    PhantomSpec("tiny03", 503, True, 35.0, 28, 9.0, 72, 5.0, unsigned=True, localizer=True),
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    truth = {}
    lines = ["patient_id\tdicom_dir\tlabel\tscore\tsplit"]
    for spec in TINY:
        truth[spec.patient_id] = write_patient(spec, work / "raw" / spec.patient_id, work / "truth")
        lines.append(
            f"{spec.patient_id}\traw/{spec.patient_id}\t{int(spec.covid)}\t{spec.target_score}"
            f"\t{SPLIT[spec.patient_id]}"
        )
    # two bad patients that must fail alone: a coronal-only folder and a missing folder
    coronal = work / "raw" / "bad01"
    coronal.mkdir(parents=True)
    _write_coronal_copy(work / "raw" / "tiny01", coronal)
    lines.append("bad01\traw/bad01\t\t\t")
    lines.append("bad02\traw/does_not_exist\t\t\t")
    sheet = work / "patients.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    raw_before = {p: p.read_bytes() for p in (work / "raw").rglob("*") if p.is_file()}
    config = write_config(
        work,
        sheet,
        resample={"spacing_mm": 5.0},
        export={"shape": [16, 32, 32]},
        qc={"n_slices": 4},
        train=TINY_TRAIN,
        infection=TINY_INFECTION,
    )
    res = snakemake(work, config, "--cores", "2", "--resources", "gpu=1", "--keep-going", key=KEY)
    # what this run left (other tests re-run the cohort later in the session)
    after = {p.relative_to(work).as_posix() for p in (work / "results").rglob("*")}
    return work, truth, res, raw_before, after


def _write_coronal_copy(src, dst):
    import pydicom

    for i, path in enumerate(sorted(src.glob("*.dcm"))[:5]):
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [0, float(i) * 5.0, 0]
        ds.save_as(dst / f"c{i}.dcm")


@pytest.fixture(scope="session")
def tiny_rerun(tiny_run):
    """The user drops the two bad rows and runs again: only what depends on the sheet re-runs."""
    work = tiny_run[0]
    sheet = work / "patients.tsv"
    sheet.write_text(
        "".join(line for line in sheet.read_text().splitlines(keepends=True) if not line.startswith("bad"))
    )
    per_patient = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in (work / "results").rglob("*")
        if p.is_file() and p.parts[-2] in ("hu", "resampled", "lung_mask", "npy", "qc")
    }
    models = {p: p.stat().st_mtime_ns for p in (work / "results/models").iterdir()}
    config = work / "config.yaml"
    dry = snakemake(work, config, "-n", key=KEY)
    res = snakemake(work, config, "--cores", "2", "--resources", "gpu=1", key=KEY)
    report = snakemake(work, config, "--report", "results/report.html", key=KEY)
    return work, dry, res, report, per_patient, models
