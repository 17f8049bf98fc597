"""The workflow on a real one-node SLURM cluster through `--profile profiles/slurm`.

`make test` brings the cluster up (tests/workflow/slurm/up.sh: Debian's slurmctld/slurmd/munge and
../shared/slurm/start-slurm.sh, a node with one GPU GRES). The tiny cohort runs on the cluster beside
the local run (``tiny_cohort.tiny_run`` starts it), every submitted job is read back with `scontrol show
job` while it runs (SLURM forgets a finished job after MinJobAge), and the test checks that each job holding a GPU rule
(segment_lungs, segment_infection, train_*) was allocated one GPU and no other job any, that
per-patient jobs were grouped, and that the results equal the local run's.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from tiny_cohort import SLURM_RUNS, SUBMITTED, TINY, scontrol, slurm_unavailable, start_slurm_run

GPU_RULES = ("segment_lungs", "segment_infection", "train_classifier", "train_scorer", "train_infection_unet")


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, tiny_run):
    """The SLURM run of the tiny cohort: started by ``tiny_run`` beside the local run (its status polling
    overlaps the local work), collected here; started now when ``tiny_run`` did not."""
    reason = slurm_unavailable()
    if reason:
        pytest.skip(reason)
    if "tiny" in SLURM_RUNS:
        work, run = SLURM_RUNS.pop("tiny")
    else:
        work = tmp_path_factory.mktemp("slurm")
        run = start_slurm_run(work, tiny_run[0])
    res = run.result()
    return work, res, run.jobs


def test_every_gpu_job_got_one_gpu_and_no_cpu_job_any(slurm_run):
    work, res, jobs_read_back = slurm_run
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    jobs = SUBMITTED.findall(res.stdout + res.stderr)
    assert jobs, "no SLURM submission in the output"
    seen_gpu = set()
    for jobid, name in jobs:
        info = jobs_read_back.get(jobid) or scontrol(jobid)
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
    _, res, _ = slurm_run
    names = [name for _, name in SUBMITTED.findall(res.stdout + res.stderr)]
    # ungrouped, one job per patient and rule; grouped: one job per stage for all 3
    for group in ("prep", "lungs", "post", "infection"):
        assert sum(name.startswith(f"group_{group}_") for name in names) == 1, names
    assert not any(
        name.startswith("rule_anonymize_dicom") or name.startswith("rule_segment_lungs") for name in names
    ), names


def test_results_equal_the_local_run(slurm_run, tiny_rerun):
    work, _, _ = slurm_run
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
