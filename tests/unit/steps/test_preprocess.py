"""The steps of workflow/rules/preprocess.smk on a tiny written series: HU volume and its info (the
anonymizer's skip list carried over), resampling, alone and in the HU job."""

from __future__ import annotations

import json

import SimpleITK as sitk

from covidct import steps
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient

SPEC = PhantomSpec("pp01", 41, False, 0.0, 8, 10.0, 48, 8.0)


def test_hu_info_and_resampled_volume(tmp_path):
    write_patient(SPEC, tmp_path / "dicom", tmp_path / "truth")
    summary = {"files": {"n_files": 9, "n_images": 8, "n_skipped": 1, "skipped": {"text": {"count": 1, "files": [4]}}}}
    (tmp_path / "anon.json").write_text(json.dumps(summary))
    info = steps.dicom_to_hu(
        tmp_path / "dicom",
        tmp_path / "hu.nii.gz",
        tmp_path / "hu.json",
        "pp01",
        anonymize_summary=tmp_path / "anon.json",
    )
    saved = json.loads((tmp_path / "hu.json").read_text())
    assert saved == json.loads(json.dumps(info)) and saved["patient"] == "pp01"
    assert saved["files"]["dicom_dir"] == summary["files"] and saved["files"]["input"]["n_files"] == 8
    image = sitk.ReadImage(str(tmp_path / "hu.nii.gz"))
    assert image.GetSize()[2] == 8 and image.GetPixelID() == sitk.sitkInt16
    steps.resample_volume(tmp_path / "hu.nii.gz", tmp_path / "r.nii.gz", 4.0, "pp01")
    assert sitk.ReadImage(str(tmp_path / "r.nii.gz")).GetSpacing() == (4.0, 4.0, 4.0)


def test_hu_step_writes_the_resampled_volume_resample_volume_writes(tmp_path):
    """The workflow's ``dicom_to_hu`` job resamples the volume it holds: the same voxels and geometry as
    ``resample_volume`` reading the written HU volume back."""
    write_patient(SPEC, tmp_path / "dicom", tmp_path / "truth")
    steps.dicom_to_hu(
        tmp_path / "dicom",
        tmp_path / "hu.nii.gz",
        tmp_path / "hu.json",
        "pp01",
        out_resampled=tmp_path / "fused.nii.gz",
        spacing_mm=4.0,
    )
    steps.resample_volume(tmp_path / "hu.nii.gz", tmp_path / "alone.nii.gz", 4.0, "pp01")
    fused, alone = (sitk.ReadImage(str(tmp_path / f"{name}.nii.gz")) for name in ("fused", "alone"))
    assert fused.GetSpacing() == (4.0, 4.0, 4.0) and fused.GetSize()[2] > 1
    assert (fused.GetOrigin(), fused.GetDirection()) == (alone.GetOrigin(), alone.GetDirection())
    assert (sitk.GetArrayFromImage(fused) == sitk.GetArrayFromImage(alone)).all()
