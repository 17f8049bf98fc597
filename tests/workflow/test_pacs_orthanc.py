"""The PACS round trip against real Orthanc servers (Debian's orthanc + orthanc-dicomweb, started by
tests/workflow/pacs/up.sh from `make test`): a real series (Lung-PET-CT-Dx A0002, 30 slices) is stored
in the "clinical" Orthanc, pulled into the raw folder layout and the patient sheet, taken through the
per-patient chain (the rule functions, read from the sheet as the workflow does; the infection mask is
a synthetic ball, no U-Net is trained here), and the anonymized series with its SEG and SR is pushed
to the "research" Orthanc, queried back and compared. About 1 minute."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from covidct import steps
from covidct.clinical.pacs import PullSettings, client, pull_new_studies
from covidct.io import read_json, read_volume, write_json, write_volume
from helpers import require_shared_data

CLINICAL, RESEARCH = "http://127.0.0.1:18042", "http://127.0.0.1:18043"
KEY = "pacs-test-key-0123456789abcdef"


def _rest(base: str, path: str, method: str = "GET"):
    with urllib.request.urlopen(urllib.request.Request(base + path, method=method), timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _servers_or_skip() -> None:
    for base in (CLINICAL, RESEARCH):
        try:
            _rest(base, "/system")
        except OSError as exc:
            pytest.skip(
                f"no Orthanc answers at {base} ({type(exc).__name__}): tests/workflow/pacs/up.sh starts one "
                "(it installs Debian's orthanc only with COVIDCT_TEST_INSTALL=1, as root with apt)"
            )
        for study in _rest(base, "/studies"):
            _rest(base, f"/studies/{study}", "DELETE")


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    _servers_or_skip()
    raw_series = require_shared_data("ct", "lung_pet_ct_dx_A0002", "B40f")
    w = tmp_path_factory.mktemp("pacs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COVIDCT_ANON_KEY", KEY)
        originals = [pydicom.dcmread(p) for p in sorted(raw_series.iterdir()) if p.is_file()]
        client(CLINICAL + "/dicom-web").store_instances(originals)
        sheet = w / "patients.tsv"
        settings = PullSettings(CLINICAL + "/dicom-web", str(w / "raw"))
        first = pull_new_studies(settings, sheet, KEY.encode())
        second = pull_new_studies(settings, sheet, KEY.encode())
        (pid,) = first["new"]
        steps.anonymize_dicom(pid, w / "anon", w / "anon.json", sheet=sheet)
        steps.verify_anonymization(w / "anon", w / "verify.json", pid, sheet=sheet)
        steps.dicom_to_hu(w / "anon", w / "hu.nii.gz", w / "hu.json", pid)
        steps.resample_volume(w / "hu.nii.gz", w / "res.nii.gz", 1.5)
        steps.segment_lungs(w / "res.nii.gz", w / "lung.nii.gz", w / "labels.nii.gz", w / "lung.json", pid)
        labels = sitk.GetArrayFromImage(read_volume(w / "labels.nii.gz"))
        infected = np.zeros_like(labels)
        zz, yy, xx = np.nonzero(labels == 2)
        c = [int(np.median(v)) for v in (zz, yy, xx)]
        infected[c[0] - 3 : c[0] + 3, c[1] - 8 : c[1] + 8, c[2] - 8 : c[2] + 8] = 1
        infected &= (labels > 0).astype(infected.dtype)
        for array, name in ((infected, "inf.nii.gz"), (np.zeros_like(infected), "types.nii.gz")):
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(read_volume(w / "res.nii.gz"))
            write_volume(w / name, image)
        write_json(w / "inf.json", {"lesion_types": None, "infection_unet_sha256": "cd" * 32})  # a binary U-Net
        steps.severity_readout(
            w / "res.nii.gz", w / "labels.nii.gz", w / "inf.nii.gz", w / "hu.json", w / "sev.json", w / "sev.png",
            pid, types=w / "types.nii.gz", infection_info=w / "inf.json",
        )  # fmt: skip
        n = {k: w / f"n_{k}.nii.gz" for k in ("lungs", "regions", "infection", "types")}
        steps.native_masks(
            w / "hu.nii.gz", w / "labels.nii.gz", w / "inf.nii.gz", w / "types.nii.gz", w / "inf.json",
            w / "sev.json", n["lungs"], n["regions"], n["infection"], n["types"], w / "native.json", pid,
        )  # fmt: skip
        steps.write_dicom_seg(
            w / "anon", w / "hu.json", n["lungs"], n["regions"], n["types"], w / "lung.json", w / "inf.json",
            w / "sev.json", w / "seg.dcm", pid,
        )  # fmt: skip
        steps.write_dicom_sr(w / "seg.dcm", w / "anon", w / "hu.json", w / "sev.json", w / "sr.dcm", pid)
        steps.verify_dicom_outputs(w / "anon", w / "seg.dcm", w / "sr.dcm", w / "dverify.json", pid, sheet=sheet)
        receipt_path = w / "receipt.json"
        steps.push_to_pacs(
            w / "anon", w / "seg.dcm", w / "sr.dcm", w / "verify.json", w / "dverify.json", receipt_path, pid,
            {"enabled": True, "url": RESEARCH + "/dicom-web"},
        )  # fmt: skip
    return w, originals, first, second, pid, read_json(receipt_path)


def test_pull_writes_the_raw_layout_under_keyed_ids_and_is_incremental(round_trip):
    w, originals, first, second, pid, _ = round_trip
    real_id = str(originals[0].PatientID)
    assert first["found"] == 1 and pid.startswith("pacs-") and second == {"found": 1, "new": [], "already": 1}
    sheet = (w / "patients.tsv").read_text()
    assert sheet.splitlines()[0].split("\t")[:2] == ["patient_id", "dicom_dir"] and pid in sheet
    assert real_id not in sheet and all(real_id not in str(p) for p in w.rglob("*"))
    pulled = sorted((w / "raw" / pid).iterdir())
    assert len(pulled) == len(originals)
    # the raw files are the PACS's copies: same pixels as the originals
    assert sorted(bytes(pydicom.dcmread(p).PixelData) for p in pulled) == sorted(bytes(o.PixelData) for o in originals)


def test_research_pacs_holds_the_anonymized_series_seg_and_sr_and_nothing_identifying(round_trip):
    w, originals, _, _, pid, receipt = round_trip
    research = client(RESEARCH + "/dicom-web")
    studies = research.search_for_studies(fields=["PatientID"])
    assert len(studies) == 1
    anon = pydicom.dcmread(next(p for p in sorted((w / "anon").iterdir())))
    assert studies[0]["00100020"]["Value"] == [anon.PatientID]
    assert research.search_for_studies(search_filters={"PatientID": str(originals[0].PatientID)}) == []
    retrieved = research.retrieve_study(str(anon.StudyInstanceUID))
    assert sorted(ds.Modality for ds in retrieved) == sorted(["CT"] * len(originals) + ["SEG", "SR"])
    assert receipt["n_sent"] == len(retrieved) == len(receipt["stored"])
    real = {str(originals[0].PatientID).lower(), str(originals[0].StudyInstanceUID).lower()}
    for ds in retrieved:
        assert ds.PatientIdentityRemoved == "YES"
        text = ds.to_json().lower()
        assert not any(value in text for value in real)
    seg = next(ds for ds in retrieved if ds.Modality == "SEG")
    local = pydicom.dcmread(w / "seg.dcm")
    assert seg.SOPInstanceUID == local.SOPInstanceUID
    assert np.array_equal(seg.pixel_array, local.pixel_array)
