"""The clinical outputs through Snakemake: a copy of the finished tiny cohort, run again with
`clinical.enabled`, has exactly the four clinical rules per patient to run (and only they are allowed
to); the SEG holds the native maps voxel for voxel, the SR the read-out, both pass their check (and
dciodvfy where installed). About 1 minute after the tiny cohort's run."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import yaml

from covidct.clinical.seg import frames_by_instance, specs_of
from covidct.clinical.sr import measure, measurements
from covidct.io import read_json
from helpers import dice, job_counts, snakemake
from tiny_cohort import KEY, TINY

CLINICAL_RULES = ("native_masks", "write_dicom_seg", "write_dicom_sr", "verify_dicom_outputs")


@pytest.fixture(scope="module")
def clinical_run(tmp_path_factory, tiny_rerun):
    work = tmp_path_factory.mktemp("clinical") / "work"
    shutil.copytree(tiny_rerun[0], work, symlinks=True)
    config = yaml.safe_load((work / "config.yaml").read_text().replace(str(tiny_rerun[0]), str(work)))
    config["clinical"] = {"enabled": True}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    missing = [s.patient_id for s in TINY if not (work / f"results/severity/{s.patient_id}.json").exists()]
    if missing:
        pytest.fail(f"the tiny cohort's run left no read-out for {missing}: see tests/workflow/test_workflow.py")
    dry = snakemake(work, work / "config.yaml", "-n", key=KEY)
    targets = [f"results/dicom/{s.patient_id}/verify.json" for s in TINY]
    res = snakemake(work, work / "config.yaml", *targets, "--cores", "2", "--allowed-rules", *CLINICAL_RULES, key=KEY)
    return work, dry, res


def test_only_the_clinical_rules_run(clinical_run):
    _, dry, res = clinical_run
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts == {**dict.fromkeys(CLINICAL_RULES, len(TINY)), "all": 1}


def test_seg_holds_the_native_maps_and_sr_the_readout(clinical_run):
    work, _, res = clinical_run
    assert res.returncode == 0
    for spec in TINY:
        pid = spec.patient_id
        out = work / "results"
        assert read_json(out / f"dicom/{pid}/verify.json")["passed"]
        # the native lungs on the scan's grid still match the phantom's truth
        native = sitk.ReadImage(str(out / f"native/{pid}/lungs.nii.gz"))
        hu = sitk.ReadImage(str(out / f"hu/{pid}.nii.gz"))
        assert native.GetSize() == hu.GetSize() and native.GetSpacing() == hu.GetSpacing()
        truth = sitk.Resample(
            sitk.ReadImage(str(work / f"truth/{pid}_lung.nii.gz")), native, sitk.Transform(), sitk.sitkNearestNeighbor
        )
        assert dice(sitk.GetArrayFromImage(native), sitk.GetArrayFromImage(truth)) >= 0.9, pid
        seg = pydicom.dcmread(out / f"dicom/{pid}/seg.dcm")
        frames = frames_by_instance(seg)
        anon = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, (out / f"anonymized/{pid}").glob("*.dcm"))}
        maps = {
            k: sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"native/{pid}/{k}.nii.gz")))
            for k in ("lungs", "regions", "types")
        }
        for number, s in enumerate(specs_of(seg), 1):
            expected = maps[s.source] == s.value
            for uid, ds in anon.items():
                k = round(hu.TransformPhysicalPointToContinuousIndex([float(v) for v in ds.ImagePositionPatient])[2])
                got = frames.get(uid, {}).get(number)
                assert np.array_equal(got if got is not None else np.zeros_like(expected[k]), expected[k]), (pid, s.key)
        readout = read_json(out / f"severity/{pid}.json")
        values = measurements(pydicom.dcmread(out / f"dicom/{pid}/sr.dcm"))
        assert values[("scan", measure("po").value)] == readout["po"]
        assert values[("scan", measure("zone_score").value)] == readout["zone_score"]
        if shutil.which("dciodvfy"):
            for name in ("seg.dcm", "sr.dcm"):
                log = subprocess.run(["dciodvfy", str(out / f"dicom/{pid}/{name}")], capture_output=True, text=True)
                assert not [line for line in (log.stdout + log.stderr).splitlines() if line.startswith("Error")]
