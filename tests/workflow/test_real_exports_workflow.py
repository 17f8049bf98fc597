"""The two real patient folders of issue 10, as archives hand them out, through the workflow."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import SimpleITK as sitk
from PIL import Image

from covidct.testing import transcode as decode
from helpers import require_shared_data, slices_by_position, snakemake, write_config

KEY = b"test-key-0123456789abcdef"
SOURCES = {"lung1": ("ct", "nsclc_radiomics_LUNG1-003", "ct")}


def test_two_real_patient_folders_as_downloaded_run_through_the_workflow(tmp_path):
    """The two folders of issue 10, as TCIA hands them out, through anonymize -> verify -> HU ->
    resample -> lung mask -> array: a MIDRC-RICORD-like one (patient / study / series, JPEG Lossless
    SV1, .DS_Store files, two NIfTI files left by an earlier user) and a Lung-PET-CT-Dx-like one
    (two axial reconstructions, PNG previews)."""
    ricord = tmp_path / "raw" / "MIDRC-RICORD-1A-419639-000082" / "08-02-2002-NA-CT CHEST WITHOUT CONTRAST-04614"
    series = ricord / "2.000000-NA-47529"
    series.mkdir(parents=True)
    lossless = decode.BY_NAME["jpeg_lossless_sv1"]
    for i, path in enumerate(slices_by_position(require_shared_data(*SOURCES["lung1"]))):
        decode.transcode(pydicom.dcmread(path), lossless).save_as(
            series / f"1-{i + 1:03d}.dcm", enforce_file_format=True
        )
    for folder in (ricord.parent, ricord, series):
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    nifti = sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16))
    sitk.WriteImage(nifti, str(series / "lesion_mask.nii.gz"))
    sitk.WriteImage(nifti, str(ricord / "ct_volume.nii.gz"))
    lpcd = tmp_path / "raw" / "Lung_Dx-A0002" / "04-25-2007-NA-ThoraxRoutine Adult-34834"
    for kernel in ("B40f", "B70f"):
        shutil.copytree(require_shared_data("ct", "lung_pet_ct_dx_A0002", kernel), lpcd / f"2.000000-{kernel}")
    (lpcd / "previews").mkdir()
    for i in range(3):
        Image.fromarray((np.arange(4096).reshape(64, 64) * (i + 1) % 256).astype(np.uint8)).save(
            lpcd / "previews" / f"preview_{i}.png"
        )
    sheet = tmp_path / "patients.tsv"
    sheet.write_text(
        f"patient_id\tdicom_dir\tlabel\tscore\nricord01\t{ricord.parent}\t1\t\nlpcd01\t{lpcd.parent}\t0\t\n"
    )
    res = snakemake(
        tmp_path,
        write_config(tmp_path, sheet),
        "results/npy/ricord01.npy",
        "results/npy/lpcd01.npy",
        "--cores",
        "2",
        key=KEY.decode(),
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    expected = {
        "ricord01": {"hidden file": 3, "not DICOM: NIfTI image (gzip)": 2},
        "lpcd01": {"not DICOM: PNG image": 3},
    }
    for pid, skipped in expected.items():
        info = json.loads((tmp_path / "results" / "hu" / f"{pid}.json").read_text())
        assert {k: v["count"] for k, v in info["files"]["dicom_dir"]["skipped"].items()} == skipped
        assert info["compression"]["lossy"] is False
        assert json.loads((tmp_path / "results" / "verify" / f"{pid}.json").read_text())["passed"] is True
        lungs = json.loads((tmp_path / "results" / "lung_mask" / f"{pid}.json").read_text())
        assert 1500 < lungs["lung_volume_ml"] < 8000, lungs
        assert np.load(tmp_path / "results" / "npy" / f"{pid}.npy").max() > 0.05
    ricord_info = json.loads((tmp_path / "results" / "hu" / "ricord01.json").read_text())
    assert ricord_info["compression"]["transfer_syntaxes"][0]["uid"] == lossless.uid
    assert ricord_info["chosen_series"]["n_slices"] == 107
    lpcd_info = json.loads((tmp_path / "results" / "hu" / "lpcd01.json").read_text())
    assert sorted(s["convolution_kernel"] for s in lpcd_info["series"]) == ["B40f", "B70f"]
    log = (tmp_path / "results" / "logs" / "dicom_to_hu" / "lpcd01.log").read_text()
    assert "2 axial CT series; chose kernel B" in log and "not DICOM: PNG image x3" in log
    for path in (tmp_path / "results").rglob("*"):  # raw folder names carry identifiers: never in results
        if path.is_file():
            assert b"RICORD-1A-419639" not in path.read_bytes() and b"Lung_Dx-A0002" not in path.read_bytes()
