"""The workflow on a real one-node SLURM cluster through `--profile profiles/slurm`.

`make test` brings the cluster up (tests/workflow/slurm/up.sh: Debian's slurmctld/slurmd/munge and
../shared/slurm/start-slurm.sh, a node with one GPU GRES). The test runs the tiny cohort, reads
every submitted job back with `scontrol show job`, and checks that each job holding a GPU rule
(segment_lungs, segment_infection, train_*) was allocated one GPU and no other job any, that
per-patient jobs were grouped, and that the results equal the local run's.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import REPO, snakemake, write_config
from tiny_cohort import KEY, SPLIT, TINY

GPU_RULES = ("segment_lungs", "segment_infection", "train_classifier", "train_scorer", "train_infection_unet")
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(\S+)/")


def _cluster_or_skip() -> None:
    if shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed and could not be (tests/workflow/slurm/up.sh needs root and apt-get)")
    res = subprocess.run(["sinfo", "-h", "-o", "%t %G"], capture_output=True, text=True)
    if res.returncode != 0 or not res.stdout.strip():
        pytest.skip(
            f"no SLURM cluster answers sinfo ({res.stderr.strip()[:200]}); tests/workflow/slurm/up.sh starts one"
        )
    if "gpu" not in res.stdout:
        pytest.skip(f"the SLURM cluster has no GPU GRES (sinfo: {res.stdout.strip()})")


def _scontrol(jobid: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True).stdout
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", out))


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, tiny_run):
    _cluster_or_skip()
    local_work = tiny_run[0]
    work = tmp_path_factory.mktemp("slurm")
    shutil.copytree(local_work / "raw", work / "raw")
    lines = ["patient_id\tdicom_dir\tlabel\tscore\tsplit"]
    lines += [
        f"{s.patient_id}\traw/{s.patient_id}\t{int(s.covid)}\t{s.target_score}\t{SPLIT[s.patient_id]}" for s in TINY
    ]
    (work / "patients.tsv").write_text("\n".join(lines) + "\n")
    local_config = __import__("yaml").safe_load((local_work / "config.yaml").read_text())
    config = write_config(work, work / "patients.tsv", **{k: v for k, v in local_config.items() if k != "patients"})
    res = snakemake(
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
        timeout=900,
        kill=True,
    )
    return work, res


def test_every_gpu_job_got_one_gpu_and_no_cpu_job_any(slurm_run):
    work, res = slurm_run
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    jobs = SUBMITTED.findall(res.stdout + res.stderr)
    assert jobs, "no SLURM submission in the output"
    seen_gpu = set()
    for jobid, name in jobs:
        info = _scontrol(jobid)
        assert info.get("JobState") == "COMPLETED", (jobid, name, info.get("JobState"))
        wants_gpu = any(rule in name for rule in GPU_RULES)
        tres = info.get("TresPerJob", "") + " " + info.get("TRES", "")
        if wants_gpu:
            assert "gres:gpu:1" in info.get("TresPerJob", ""), (jobid, name, tres)
            seen_gpu.update(rule for rule in GPU_RULES if rule in name)
        else:
            assert "gpu" not in tres, (jobid, name, tres)
    assert seen_gpu == set(GPU_RULES)


def test_per_patient_jobs_are_grouped(slurm_run):
    _, res = slurm_run
    names = [name for _, name in SUBMITTED.findall(res.stdout + res.stderr)]
    # 3 patients x 8 per-patient rules would be 24 jobs; grouped: one job per stage for all 3
    for group in ("prep", "lungs", "post", "infection"):
        assert sum(name.startswith(f"group_{group}_") for name in names) == 1, names
    assert not any(
        name.startswith("rule_anonymize_dicom") or name.startswith("rule_segment_lungs") for name in names
    ), names


def test_results_equal_the_local_run(slurm_run, tiny_rerun):
    work, _ = slurm_run
    local = tiny_rerun[0]
    for spec in TINY:
        pid = spec.patient_id
        assert np.array_equal(np.load(work / f"results/npy/{pid}.npy"), np.load(local / f"results/npy/{pid}.npy"))
        for name in (f"lung_mask/{pid}.nii.gz", f"resampled/{pid}.nii.gz", f"infection_mask/{pid}.nii.gz"):
            # the gzip header holds a time stamp: compare voxels and geometry
            a, b = sitk.ReadImage(str(work / "results" / name)), sitk.ReadImage(str(local / "results" / name))
            assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)), name
            assert a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin(), name
        ours = json.loads((work / f"results/lung_mask/{pid}.json").read_text())
        theirs = json.loads((local / f"results/lung_mask/{pid}.json").read_text())
        assert ours["lung_volume_ml"] == theirs["lung_volume_ml"]
    ours = list(csv.DictReader(open(work / "results/predictions.csv")))
    theirs = list(csv.DictReader(open(local / "results/predictions.csv")))
    assert [r["patient_id"] for r in ours] == [r["patient_id"] for r in theirs]
    for a, b in zip(ours, theirs):
        for col in ("covid_probability", "score", "seg_score"):
            assert float(a[col]) == pytest.approx(float(b[col]), abs=1e-3), (a["patient_id"], col)
        assert a["split"] == b["split"]
