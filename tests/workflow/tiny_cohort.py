"""The tiny synthetic cohort run once per test session by the workflow tests and compared
against by the SLURM test: 3 good patients, 2 bad ones, then a re-run after the sheet is fixed.

When the session holds the SLURM test and a cluster answers, ``tiny_run`` starts the SLURM run of the same
cohort beside the local one (``SLURM_RUNS``): the executor mostly waits between status checks, so the two
overlap instead of adding up; the SLURM test collects it."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient
from helpers import REPO, BackgroundRun, snakemake, write_config

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
    # six training volumes (scores 5, 0, 12, 20, 30, 40 %), 12 slices each, batch 2: with four (5, 0, 12, 20)
    # one fold trained on the 5 % and the healthy volume and stayed all-background after its retries; with
    # two every fold came out all-foreground (measured on the lung-cropped input space). Plumbing, not
    # accuracy: held-out CV Dice about 0.2.
    "demo_volumes": 6,
    "size": 32,
    "base_filters": 4,
    "variants": ["dice_ce"],
    # GroupNorm learns fastest at this tiny scale (BatchNorm, the default, can stay all-background for the
    # first epochs and would be retried as degenerate)
    "norm": "group",
    "folds": 2,
    "epochs": 12,
    "batch_size": 2,
    "learning_rate": 0.003,
    "max_slices_per_volume": 12,
}
TINY = [
    PhantomSpec("tiny01", 501, True, 20.0, 26, 10.0, 72, 5.0),
    PhantomSpec("tiny02", 502, False, 0.0, 24, 10.0, 72, 5.0, flip_x=True, descending=True),
    PhantomSpec("tiny03", 503, True, 35.0, 28, 9.0, 72, 5.0, unsigned=True, localizer=True),
]


#: The SLURM run ``tiny_run`` started in the background: ``{"tiny": (work folder, SlurmRun)}``.
SLURM_RUNS: dict = {}


#: A job submission in Snakemake's output: its SLURM job id and its log folder (the rule or group name).
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(\S+)/")


#: Job states after which ``scontrol`` shows a job only for MinJobAge (600 s on the test cluster).
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")


def scontrol(jobid: str) -> dict[str, str]:
    """``scontrol show job``'s fields of a job ({} once SLURM has forgotten it)."""
    res = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True)
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", res.stdout)) if res.returncode == 0 else {}


class SlurmRun:
    """A background SLURM run whose submitted jobs are read back (``scontrol``) while it runs: a job
    finished long before the test looks would be forgotten by SLURM (MinJobAge)."""

    def __init__(self, run: BackgroundRun):
        self.run, self.jobs = run, {}
        self._watch = threading.Thread(target=self._poll, daemon=True)
        self._watch.start()

    def _record(self) -> None:
        for jobid, _ in SUBMITTED.findall(self.run.printed()):
            if self.jobs.get(jobid, {}).get("JobState") not in FINAL_STATES:
                info = scontrol(jobid)
                if info:
                    self.jobs[jobid] = info

    def _poll(self) -> None:
        while self.run.proc.poll() is None:
            self._record()
            time.sleep(10)

    def result(self) -> subprocess.CompletedProcess:
        """Wait for the run; its output, every submitted job read back in ``jobs``."""
        res = self.run.result()
        self._watch.join()
        self._record()
        return res

    def stop(self) -> None:
        self.run.stop()


def slurm_unavailable() -> str | None:
    """Why the SLURM test cannot run here (a message), or None when a cluster with a GPU GRES answers."""
    if shutil.which("sbatch") is None:
        return "SLURM is not installed and could not be (tests/workflow/slurm/up.sh needs root and apt-get)"
    res = subprocess.run(["sinfo", "-h", "-o", "%t %G"], capture_output=True, text=True)
    if res.returncode != 0 or not res.stdout.strip():
        return f"no SLURM cluster answers sinfo ({res.stderr.strip()[:200]}); tests/workflow/slurm/up.sh starts one"
    if "gpu" not in res.stdout:
        return f"the SLURM cluster has no GPU GRES (sinfo: {res.stdout.strip()})"
    return None


def start_slurm_run(work: Path, local_work: Path) -> SlurmRun:
    """The tiny cohort's good patients through ``--profile profiles/slurm`` in ``work``, with the local
    run's raw folders and configuration, started in the background."""
    shutil.copytree(local_work / "raw", work / "raw")
    lines = ["patient_id\tdicom_dir\tlabel\tscore\tsplit"]
    lines += [
        f"{s.patient_id}\traw/{s.patient_id}\t{int(s.covid)}\t{s.target_score}\t{SPLIT[s.patient_id]}" for s in TINY
    ]
    (work / "patients.tsv").write_text("\n".join(lines) + "\n")
    local_config = yaml.safe_load((local_work / "config.yaml").read_text())
    config = write_config(work, work / "patients.tsv", **{k: v for k, v in local_config.items() if k != "patients"})
    run = BackgroundRun(
        work,
        config,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        # this node has 2 CPUs: a grouped job of 3 patients runs at most 2 at once
        "--resources",
        "gpu=1",
        "cpus_per_task=2",
        "mem_mb=20000",
        "--group-components",
        "prep=3",
        "lungs=3",
        "post=6",
        "infection=3",
        key=KEY,
        timeout=1500,  # beside the local run: both share the machine's CPUs
    )
    return SlurmRun(run)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, request):
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
        # the tiny patients are synthetic but not the demo's: the phantom-trained models may read them, and
        # every output says so (covidct.modelcard)
        allow_synthetic_models=True,
    )
    wants_slurm = any(Path(str(item.path)).name == "test_slurm.py" for item in request.session.items)
    if wants_slurm and slurm_unavailable() is None:
        slurm_work = tmp_path_factory.mktemp("slurm")
        SLURM_RUNS["tiny"] = (slurm_work, start_slurm_run(slurm_work, work))
        request.addfinalizer(SLURM_RUNS["tiny"][1].stop)
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
