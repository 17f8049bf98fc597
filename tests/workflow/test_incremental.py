"""New patients every week: re-runs do only the new work (on a copy of the finished tiny cohort)."""

from __future__ import annotations

import csv
import shutil

import pytest
import yaml

from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient
from helpers import PER_PATIENT_RULES, job_counts, snakemake
from tiny_cohort import KEY

#: The cohort table of the read-outs and its plot against the sheet's scores follow every sheet change.
READOUT_COHORT = {"severity_cohort": 1, "severity_vs_score": 1}
NEW = PhantomSpec("tiny04", 504, True, 25.0, 24, 10.0, 72, 5.0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, tiny_rerun):
    """A copy (mtimes kept) of the tiny cohort after its complete run, plus a 4th patient's raw folder."""
    work = tmp_path_factory.mktemp("incr") / "work"
    shutil.copytree(tiny_rerun[0], work, symlinks=True)
    write_patient(NEW, work / "raw" / NEW.patient_id, work / "truth")
    config = (work / "config.yaml").read_text().replace(str(tiny_rerun[0]), str(work))
    (work / "config.yaml").write_text(config)
    sheet = (work / "patients.tsv").read_text()
    (work / "patients_plus.tsv").write_text(sheet + "tiny04\traw/tiny04\t1\t25.0\ttrain\n")
    return work


def _dry(work, *config, configfile=None):
    res = snakemake(work, configfile or work / "config.yaml", "-n", "--config", *config, key=KEY)
    assert res.returncode == 0, res.stderr[-3000:]
    return job_counts(res.stdout + res.stderr)


def test_finished_cohort_has_nothing_to_do(cohort):
    assert _dry(cohort, f"patients={cohort / 'patients.tsv'}") == {}


def test_one_new_patient_runs_its_jobs_and_the_aggregates(cohort):
    counts = _dry(cohort, f"patients={cohort / 'patients_plus.tsv'}")
    assert counts == {
        **dict.fromkeys(PER_PATIENT_RULES, 1),
        "build_hdf5": 1,
        "train_classifier": 1,
        "train_scorer": 1,
        "predict": 1,
        "evaluate": 1,
        "summarize": 1,
        **READOUT_COHORT,
        "all": 1,
    }


def test_one_new_patient_without_retraining(cohort):
    counts = _dry(cohort, f"patients={cohort / 'patients_plus.tsv'}", "retrain=false")
    # the data sets, models and their metrics stay as they are: only the predictions (and the evaluation
    # and metrics page that read them) are redone
    assert counts == {
        **dict.fromkeys(PER_PATIENT_RULES, 1),
        "predict": 1,
        "evaluate": 1,
        "summarize": 1,
        **READOUT_COHORT,
        "all": 1,
    }


def test_changing_the_resampling_reruns_only_what_depends_on_it(cohort):
    config = yaml.safe_load((cohort / "config.yaml").read_text())
    config["resample"]["spacing_mm"] = 6.0
    (cohort / "config_6mm.yaml").write_text(yaml.safe_dump(config))
    counts = _dry(cohort, f"patients={cohort / 'patients.tsv'}", configfile=cohort / "config_6mm.yaml")
    downstream = [
        "dicom_to_hu",  # writes the resampled volume too (the DICOM decoded again: about a second)
        "segment_lungs",
        "export_npy",
        "qc_montage",
        "segment_infection",
        "severity_readout",
    ]
    # the infection U-Net learns from the demo's volumes resampled to this grid: a new grid retrains it
    assert counts == {
        **dict.fromkeys(downstream, 3),
        "cross_validate_infection_unet": 2,  # the tiny cohort's one variant x 2 folds
        "train_infection_unet": 1,
        "build_hdf5": 1,
        "train_classifier": 1,
        "train_scorer": 1,
        "predict": 1,
        "evaluate": 1,
        "summarize": 1,
        **READOUT_COHORT,
        "all": 1,
    }


def test_new_patient_predicted_with_existing_models_then_removed(cohort):
    results = cohort / "results"
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in results.rglob("*")
        if p.is_file()
        and "logs" not in p.parts
        and "benchmarks" not in p.parts
        and p.name not in ("predictions.csv", "summary.html", "cohort.csv", "evaluation.json")
        and not p.name.startswith(("cohort_", "test_"))
    }
    res = snakemake(
        cohort,
        cohort / "config.yaml",
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--config",
        f"patients={cohort / 'patients_plus.tsv'}",
        "retrain=false",
        key=KEY,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for path, (mtime, data) in before.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data, path
    rows = {r["patient_id"]: r for r in csv.DictReader(open(results / "predictions.csv"))}
    assert list(rows) == ["tiny01", "tiny02", "tiny03", "tiny04"] and rows["tiny04"]["split"] == "new"
    assert (results / "npy/tiny04.npy").is_file() and (results / "infection_mask/tiny04.json").is_file()
    assert (results / "severity/tiny04.json").is_file() and rows["tiny04"]["po"] != ""
    # tiny04 leaves the sheet again: it disappears from the predictions, nothing else re-runs
    res = snakemake(
        cohort,
        cohort / "config.yaml",
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--config",
        f"patients={cohort / 'patients.tsv'}",
        "retrain=false",
        key=KEY,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [r["patient_id"] for r in csv.DictReader(open(results / "predictions.csv"))]
    assert rows == ["tiny01", "tiny02", "tiny03"]
    # with retraining, the dry run rebuilds the data sets without it (they hold only sheet patients)
    assert _dry(cohort, f"patients={cohort / 'patients.tsv'}") == {}


def test_removed_patient_rebuilds_data_sets_and_models_only(cohort):
    sheet = (cohort / "patients.tsv").read_text().splitlines(keepends=True)
    (cohort / "patients_minus.tsv").write_text("".join(line for line in sheet if not line.startswith("tiny03")))
    counts = _dry(cohort, f"patients={cohort / 'patients_minus.tsv'}")
    assert counts == {
        "build_hdf5": 1,
        "train_classifier": 1,
        "train_scorer": 1,
        "predict": 1,
        "evaluate": 1,
        "summarize": 1,
        **READOUT_COHORT,
        "all": 1,
    }


def test_a_new_threshold_rule_chooses_again_without_training_the_folds_again(cohort):
    """The folds' jobs depend on what they train with, not on how the final step chooses among them."""
    config = yaml.safe_load((cohort / "config.yaml").read_text())
    config["infection"]["threshold_from_cv"] = not config["infection"].get("threshold_from_cv", True)
    (cohort / "config_thr.yaml").write_text(yaml.safe_dump(config))
    counts = _dry(cohort, f"patients={cohort / 'patients.tsv'}", configfile=cohort / "config_thr.yaml")
    assert "cross_validate_infection_unet" not in counts
    assert counts["train_infection_unet"] == 1 and counts["segment_infection"] == 3
