"""De-identification: the profile table, keys and pseudonyms, whole folders, the verifier.

Synthetic series are built here with identifiers in every place they hide; real CT is
read in place from ../shared/data and only modified copies (with fake identifiers
injected) are written, to tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import BasicTextSRStorage, CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless

from covidct.deid.dataset import IMPLEMENTATION_CLASS_UID, anonymize_dataset, shift_date, shift_datetime
from covidct.deid.keys import (
    DATE_OFFSET_MAX_DAYS,
    DATE_OFFSET_MIN_DAYS,
    DEMO_KEY,
    KEY_ENV,
    date_offset_days,
    load_key,
    pseudo_uid,
    pseudonym,
)
from covidct.deid.profile import ACTION_CODES, BASIC_PROFILE, action_for_tag, profile_key_for_tag
from covidct.deid.series import anonymize_series_dir
from covidct.deid.verify import GEOMETRY_KEYWORDS, verify_anonymization
from covidct.errors import AnonymizationError, CovidctError, DicomInputError
from helpers import SHARED_DATA

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
KEY = b"test-key-0123456789abcdef"
OTHER_KEY = b"another-key-9876543210fedcba"
PATIENT = "P001"

# Identifiers of the synthetic patient: none may survive anonymization.
NAME = "SMITHSON^JOHANNA"
MRN = "MRN99887766"
SECRETS = {
    "name_family": "SMITHSON",
    "name_given": "JOHANNA",
    "mrn": MRN,
    "birth": "19580317",
    "accession": "ACC7766554",
    "institution": "Saint Elsewhere Hospital",
    "address": "12 Harbour Road Springfield",
    "referrer": "HOUSEGREG",
    "operator": "OPERATORKATE",
    "station": "CTSCANNER7",
    "request_id": "REQ556677",
    "other_id": "OTHERID4455",
    "private_text": "PRIVNOTE-Johanna",
    "private_bytes": "SECRETBLOB-31337",
    "study_uid": "1.2.826.0.1.3680043.9.7777.1",
    "series_uid": "1.2.826.0.1.3680043.9.7777.2",
    "for_uid": "1.2.826.0.1.3680043.9.7777.3",
    "study_date": "20200314",
    "acq_date": "20200315",
    "study_desc": "CHEST SMITHSON COVID",
}
STUDY_DATE, ACQ_DATE = SECRETS["study_date"], SECRETS["acq_date"]
N_SLICES = 3
SIZE = 16


def sop_uid(i: int) -> str:
    return f"1.2.826.0.1.3680043.9.7777.10.{i + 1}"


def ct_slice(i: int, patient_id: str = MRN, name: str = NAME) -> Dataset:
    """One 16x16 CT slice with identifiers in the places they hide."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid(i)
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.AcquisitionDate = ACQ_DATE
    ds.ContentDate = ACQ_DATE
    ds.AcquisitionDateTime = ACQ_DATE + "101500.5"
    ds.StudyTime = "093000"
    ds.AcquisitionTime = "101500"
    ds.AccessionNumber = SECRETS["accession"]
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.InstitutionName = SECRETS["institution"]
    ds.InstitutionAddress = SECRETS["address"]
    ds.ReferringPhysicianName = "HOUSEGREG^GREGORY"
    ds.OperatorsName = "OPERATORKATE^K"
    ds.StationName = SECRETS["station"]
    ds.StudyDescription = SECRETS["study_desc"]
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = SECRETS["birth"]
    ds.PatientSex = "F"
    ds.PatientAge = "061Y"
    other = Dataset()
    other.PatientID = SECRETS["other_id"]
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    request = Dataset()
    request.RequestedProcedureID = SECRETS["request_id"]
    request.ScheduledProcedureStepID = "SPS" + SECRETS["request_id"]
    request.StudyInstanceUID = SECRETS["study_uid"]
    nested_private = request.private_block(0x0029, "ACME NESTED", create=True)
    nested_private.add_new(0x01, "LO", SECRETS["private_text"] + " nested")
    ds.RequestAttributesSequence = Sequence([request])
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = sop_uid((i + 1) % N_SLICES)
    ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", SECRETS["private_text"])
    block.add_new(0x11, "OB", SECRETS["private_bytes"].encode())
    ds.StudyInstanceUID = SECRETS["study_uid"]
    ds.SeriesInstanceUID = SECRETS["series_uid"]
    ds.FrameOfReferenceUID = SECRETS["for_uid"]
    ds.StudyID = "STUDY42"
    ds.SeriesNumber = "3"
    ds.InstanceNumber = str(i + 1)
    ds.ImagePositionPatient = ["-100.5", "-120.25", f"{-50 - 2.5 * i:.2f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.703125", "0.703125"]
    ds.SliceThickness = "2.5"
    ds.SliceLocation = f"{-50 - 2.5 * i:.2f}"
    ds.KVP = "120"
    ds.ConvolutionKernel = "B40f"
    ds.PatientPosition = "HFS"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = SIZE
    ds.Columns = SIZE
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    ds.PixelPaddingValue = -2048
    rng = np.random.default_rng(i)
    ds.PixelData = rng.integers(-1024, 2000, (SIZE, SIZE), dtype=np.int16).tobytes()
    return ds


def write_file(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.preamble = f"exported for {NAME} {MRN}".encode().ljust(128, b"\0")  # preambles can carry anything
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, n: int = N_SLICES, **kwargs) -> list[Path]:
    # original file names carry the patient's name, as exports often do
    return [write_file(ct_slice(i, **kwargs), folder / f"SMITHSON_JOHANNA_{i:03d}.dcm") for i in range(n)]


def tree_hashes(folder: Path) -> dict[str, str]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def by_instance(folder: Path) -> dict[str, Dataset]:
    out = {}
    for p in folder.iterdir():
        ds = pydicom.dcmread(p)
        out[str(ds.InstanceNumber)] = ds
    return out


def days_between(a: str, b: str) -> int:
    from datetime import date

    da = date(int(a[:4]), int(a[4:6]), int(a[6:]))
    db = date(int(b[:4]), int(b[4:6]), int(b[6:]))
    return (db - da).days


# ------------------------------------------------------------------ profile table


def test_profile_covers_table_and_keywords_exist():
    assert len(BASIC_PROFILE) >= 600
    assert set(BASIC_PROFILE.values()) <= ACTION_CODES
    for key in BASIC_PROFILE:
        if key.startswith("("):
            assert re.fullmatch(r"\([0-9A-Fx]{4},[0-9A-Fx]{4}\)", key), key
        else:
            assert tag_for_keyword(key) is not None, f"{key} is not a pydicom keyword"
    expected = {
        "PatientName": "Z",
        "PatientID": "Z/D",
        "PatientBirthDate": "Z",
        "StudyInstanceUID": "U",
        "SOPInstanceUID": "U",
        "InstitutionName": "X/Z/D",
        "OtherPatientIDsSequence": "X",
        "RequestAttributesSequence": "X",
        "ReferencedImageSequence": "X/Z/U*",
        "ContentSequence": "D",
        "AccessionNumber": "Z",
        "SeriesDate": "X/D",
    }
    assert {k: BASIC_PROFILE[k] for k in expected} == expected


def test_profile_lookup_by_tag():
    assert action_for_tag(0x00100010) == "Z"
    assert action_for_tag(0x00091001) == "X"  # private
    assert profile_key_for_tag(0x60023000) == "(60xx,3000)"
    assert profile_key_for_tag(0x50101234) == "(50xx,xxxx)"
    assert action_for_tag(0x00280010) is None  # Rows: not in the table


def test_geometry_is_never_touched_by_the_profile():
    for keyword in GEOMETRY_KEYWORDS:
        assert action_for_tag(tag_for_keyword(keyword)) is None, keyword


# ------------------------------------------------------------- keys and pseudonyms


def test_pseudonym_deterministic_and_keyed():
    a = pseudonym(KEY, "patient", MRN)
    assert a == pseudonym(KEY, "patient", MRN)
    assert len(a) == 16 and re.fullmatch(r"[0-9a-f]{16}", a)
    assert a != pseudonym(OTHER_KEY, "patient", MRN)
    assert a != pseudonym(KEY, "study", MRN)
    assert len(pseudonym(KEY, "patient", MRN, length=40)) == 40


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=80))
def test_pseudo_uid_valid_for_any_input(uid):
    new = pseudo_uid(KEY, uid)
    assert UID_RE.fullmatch(new)
    assert len(new) <= 64
    assert new.startswith("2.25.")
    assert new == pseudo_uid(KEY, uid)


def test_pseudo_uid_keyed():
    assert pseudo_uid(KEY, SECRETS["study_uid"]) != pseudo_uid(OTHER_KEY, SECRETS["study_uid"])
    assert pseudo_uid(KEY, sop_uid(0)) != pseudo_uid(KEY, sop_uid(1))


def test_date_offset_range_and_keyed():
    offsets = [date_offset_days(KEY, f"patient{i}") for i in range(200)]
    assert all(DATE_OFFSET_MIN_DAYS <= o <= DATE_OFFSET_MAX_DAYS and o != 0 for o in offsets)
    assert len(set(offsets)) > 100
    assert date_offset_days(KEY, "x") == date_offset_days(KEY, "x")
    assert sum(date_offset_days(KEY, f"p{i}") != date_offset_days(OTHER_KEY, f"p{i}") for i in range(20)) >= 19


def test_load_key_env_wins(monkeypatch, tmp_path):
    key_file = tmp_path / "site.anonkey"
    key_file.write_text("from-the-file-0123456789\n")
    monkeypatch.setenv(KEY_ENV, "from-the-environment-0123")
    assert load_key(key_file) == b"from-the-environment-0123"
    monkeypatch.delenv(KEY_ENV)
    assert load_key(key_file) == b"from-the-file-0123456789"


def test_load_key_missing_explains_how(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(AnonymizationError) as err:
        load_key()
    assert KEY_ENV in str(err.value) and "key_file" in str(err.value)
    assert load_key(allow_demo=True) == DEMO_KEY
    with pytest.raises(AnonymizationError, match="not found"):
        load_key(tmp_path / "absent.key")
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(AnonymizationError, match="empty"):
        load_key(empty)


def test_load_key_refuses_results_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "results" / "keys" / "site.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("a-long-enough-secret-0123456789")
    with pytest.raises(AnonymizationError, match="results"):
        load_key(key_file)


def test_load_key_never_logs_the_key(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv(KEY_ENV, raising=False)
    key_file = tmp_path / "site.key"
    key_file.write_text("super-secret-value-0123456789")
    key_file.chmod(0o644)
    with caplog.at_level(logging.DEBUG):
        assert load_key(key_file) == b"super-secret-value-0123456789"
    assert "chmod 600" in caplog.text  # world-readable: warned
    assert "super-secret-value" not in caplog.text


def test_shift_date_helpers():
    assert shift_date("20200301", -1) == "20200229"
    assert shift_date("2020.03.01", 1) == "20200302"
    assert shift_date("garbage", 1) is None
    assert shift_datetime("20200101000000", -1) == "20191231000000"


# ------------------------------------------------------------ synthetic series


@pytest.fixture
def series(tmp_path):
    src = tmp_path / "in" / "nested"
    write_series(src)
    return tmp_path / "in"


@pytest.fixture
def anonymized(series, tmp_path, caplog):
    before = tree_hashes(series)
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        summary = anonymize_series_dir(series, out, KEY, PATIENT)
    return series, out, summary, before, caplog.text


def test_series_output_has_no_identifier(anonymized):
    src, out, summary, _, log_text = anonymized
    files = sorted(out.iterdir())
    assert len(files) == N_SLICES == summary["n_files"]
    for path in files:
        raw = path.read_bytes().lower()
        for what, secret in SECRETS.items():
            assert secret.lower().encode() not in raw, f"{what} leaked into {path.name}"
        assert b"smithson" not in path.name.lower().encode()
        ds = pydicom.dcmread(path)
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert "OtherPatientIDsSequence" not in ds and "RequestAttributesSequence" not in ds
        assert not any(elem.tag.is_private for elem in ds.iterall())
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113107"]
        assert all(item.CodingSchemeDesignator == "DCM" for item in ds.DeidentificationMethodCodeSequence)
        assert any("covidct" in v for v in ds.DeidentificationMethod)
        assert ds.PatientID == pseudonym(KEY, "patient", MRN) == str(ds.PatientName)
        assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""
        assert "InstitutionName" not in ds and "StationName" not in ds and "OperatorsName" not in ds
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert ds.preamble == b"\x00" * 128
    for secret in (MRN, "SMITHSON", "JOHANNA", SECRETS["institution"]):
        assert secret.lower() not in log_text.lower()
    assert set(summary) >= {"patient", "n_files", "n_series", "files", "dates", "profile"}
    assert summary["patient"] == PATIENT and summary["n_series"] == 1 and summary["dates"] == "shift"
    offset = date_offset_days(KEY, MRN)
    flat = json.dumps(summary)
    assert str(abs(offset)) not in flat and KEY.decode() not in flat


def test_series_pixels_geometry_and_uids(anonymized):
    src, out, _, _, _ = anonymized
    originals = by_instance(src / "nested")
    outputs = by_instance(out)
    assert originals.keys() == outputs.keys()
    study_uids = {str(ds.StudyInstanceUID) for ds in outputs.values()}
    assert study_uids == {pseudo_uid(KEY, SECRETS["study_uid"])}
    new_sops = {}
    for number, orig in originals.items():
        anon = outputs[number]
        assert anon.PixelData == orig.PixelData
        for kw in GEOMETRY_KEYWORDS:
            if kw in orig:
                assert str(anon[kw].value) == str(orig[kw].value), kw
        assert anon.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
        for uid in (anon.SOPInstanceUID, anon.SeriesInstanceUID, anon.FrameOfReferenceUID):
            assert UID_RE.fullmatch(uid) and len(uid) <= 64
        assert anon.SOPClassUID == CTImageStorage  # DICOM-root UIDs stay
        new_sops[str(orig.SOPInstanceUID)] = str(anon.SOPInstanceUID)
    # references inside sequences point to the new UIDs of the referenced slices
    for number, orig in originals.items():
        old_ref = str(orig.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
        assert outputs[number].ReferencedImageSequence[0].ReferencedSOPInstanceUID == new_sops[old_ref]


def test_series_dates_shifted_intervals_kept(anonymized):
    _, out, _, _, _ = anonymized
    offset = date_offset_days(KEY, MRN)
    for ds in by_instance(out).values():
        assert days_between(STUDY_DATE, ds.StudyDate) == offset
        assert days_between(ds.StudyDate, ds.AcquisitionDate) == days_between(STUDY_DATE, ACQ_DATE) == 1
        assert days_between(ACQ_DATE, ds.ContentDate) == offset
        assert ds.AcquisitionDateTime[8:] == "101500.5"
        assert days_between(ACQ_DATE, ds.AcquisitionDateTime[:8]) == offset
        assert ds.StudyTime == "093000"  # times kept with the Modified Dates option


def test_input_folder_unchanged(anonymized):
    src, _, _, before, _ = anonymized
    assert tree_hashes(src) == before


def test_two_processes_write_the_same_files_and_refuse_a_duplicate(series, anonymized, tmp_path, monkeypatch):
    """``workers=2`` splits the files between two processes: byte for byte the same output and summary; an
    instance duplicated into the other half is still refused, and nothing is written."""
    import covidct.deid.series as series_module

    monkeypatch.setattr(series_module, "MIN_FILES_TO_SPLIT", 2)
    _, out, summary, _, _ = anonymized
    two = tmp_path / "two"
    assert anonymize_series_dir(series, two, KEY, PATIENT, workers=2) == summary
    assert tree_hashes(two) == tree_hashes(out) and len(tree_hashes(two)) == N_SLICES
    first = sorted(p for p in series.rglob("*") if p.is_file())[0]
    shutil.copy(first, first.parent / "zz_copy_of_the_first")  # sorted last: the other half
    errors = []
    for workers in (1, 2):
        with pytest.raises(AnonymizationError, match="duplicate instance") as e:
            anonymize_series_dir(series, tmp_path / f"dup{workers}", KEY, PATIENT, workers=workers)
        errors.append(str(e.value))
        assert not (tmp_path / f"dup{workers}").exists()
    assert errors[0] == errors[1] and "zz_copy_of_the_first" in errors[1]  # the same file named


def test_verify_passes_on_anonymized_series(anonymized, tmp_path):
    src, out, _, _, _ = anonymized
    report = verify_anonymization(src, out, PATIENT, report_path=tmp_path / "qc" / "report.json")
    assert report["passed"], report
    assert report["n_original"] == report["n_output"] == N_SLICES
    assert report["n_identifying_values"] >= len(SECRETS)
    assert report["leaks"] == [] and report["pixel_mismatches"] == [] and report["geometry_mismatches"] == []
    assert json.loads((tmp_path / "qc" / "report.json").read_text())["passed"] is True


def test_verify_fails_on_copied_originals(series, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(series / "nested", copy)
    report = verify_anonymization(series, copy, PATIENT)
    assert not report["passed"]
    kinds = {leak["kind"] for leak in report["leaks"]}
    assert {"value_equal", "raw_bytes", "private_attribute", "identity_not_removed"} <= kinds


def test_verify_detects_tampered_output(anonymized):
    src, out, _, _, _ = anonymized
    victim = sorted(out.iterdir())[1]
    ds = pydicom.dcmread(victim)
    ds.InstitutionName = NAME  # the original patient's name put back
    ds.save_as(victim)
    report = verify_anonymization(src, out, PATIENT)
    assert report["passed"] is False
    leaks = [leak for leak in report["leaks"] if leak["file"] == victim.name]
    assert any(leak["attribute"] == "InstitutionName" for leak in leaks), report["leaks"]
    assert any(leak["kind"] == "raw_bytes" for leak in leaks)
    flat = json.dumps(report).lower()
    assert "smithson" not in flat and "johanna" not in flat


def test_verify_reads_both_folders_at_once_with_the_same_report(series, anonymized, tmp_path):
    """``workers=2`` reads the original folder in a second process: the same report, passing or failing."""
    src, out, _, _, _ = anonymized
    assert verify_anonymization(src, out, PATIENT, workers=2) == verify_anonymization(src, out, PATIENT)
    copy = tmp_path / "copy"
    shutil.copytree(series / "nested", copy)
    failed = verify_anonymization(series, copy, PATIENT, workers=2)
    assert not failed["passed"] and failed == verify_anonymization(series, copy, PATIENT)
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    victim = sorted(p for p in broken.rglob("*") if p.is_file())[0]
    victim.write_bytes(victim.read_bytes()[:2000])  # a truncated original: the child's error reaches the caller
    with pytest.raises(CovidctError) as alone:
        verify_anonymization(broken, out, PATIENT)
    with pytest.raises(CovidctError) as forked:
        verify_anonymization(broken, out, PATIENT, workers=2)
    assert str(forked.value) == str(alone.value)
    broken_out = tmp_path / "broken_out"  # both folders broken: the original folder's error first, as alone
    shutil.copytree(out, broken_out)
    victim = sorted(broken_out.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:2000])
    messages = []
    for workers in (1, 2):
        with pytest.raises(CovidctError) as e:
            verify_anonymization(broken, broken_out, PATIENT, workers=workers)
        messages.append(str(e.value))
    assert messages[0] == messages[1] == str(alone.value)


def test_verify_detects_pixel_and_geometry_change(anonymized):
    src, out, _, _, _ = anonymized
    files = sorted(out.iterdir())
    ds = pydicom.dcmread(files[0])
    ds.PixelData = bytes(len(ds.PixelData))
    ds.save_as(files[0])
    ds = pydicom.dcmread(files[1])
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.save_as(files[1])
    report = verify_anonymization(src, out, PATIENT)
    assert not report["passed"]
    assert report["pixel_mismatches"] == [files[0].name]
    assert {"file": files[1].name, "attribute": "PixelSpacing"} in report["geometry_mismatches"]


def test_remove_dates_mode(series, tmp_path):
    out = tmp_path / "out"
    summary = anonymize_series_dir(series, out, KEY, PATIENT, dates="remove")
    assert summary["dates"] == "remove"
    for ds in by_instance(out).values():
        assert ds.StudyDate == "" and ds.StudyTime == "" and ds.ContentDate == ""
        assert "AcquisitionDate" not in ds and "SeriesDate" not in ds and "AcquisitionDateTime" not in ds
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert verify_anonymization(series, out, PATIENT)["passed"]


def test_anonymize_dataset_in_memory_recurses_into_sequences():
    ds = ct_slice(0)
    ds.ReferencedImageSequence[0].EvaluatorName = "NESTED^NAME"  # a PN that Table E.1-1 does not list
    inner = ds.ReferencedImageSequence[0].private_block(0x0041, "DEEP", create=True)
    inner.add_new(0x02, "LO", "deep private")
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 8)  # overlay data
    anonymize_dataset(ds, KEY, -400)
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert ds.ReferencedImageSequence[0].EvaluatorName == ""
    assert 0x60003000 not in ds
    assert ds.StudyDate == shift_date(STUDY_DATE, -400)


# ---------------------------------------------------------------- refusals


def test_burned_in_annotation_refused(tmp_path):
    src = tmp_path / "in"
    files = write_series(src)
    ds = pydicom.dcmread(files[1])
    ds.BurnedInAnnotation = "YES"
    ds.save_as(files[1])
    with pytest.raises(AnonymizationError, match="BurnedInAnnotation is YES") as err:
        anonymize_series_dir(src, tmp_path / "out", KEY, PATIENT)
    assert err.value.path == str(files[1])
    assert not (tmp_path / "out").exists()
    with pytest.raises(AnonymizationError, match="refused"):
        anonymize_dataset(ds, KEY, -400)


def test_non_dicom_file_skipped_and_counted(tmp_path):
    src = tmp_path / "in"
    write_series(src)
    notes = src / "notes.txt"
    notes.write_text("scanned on the 7th, call Dr House\n")
    summary = anonymize_series_dir(src, tmp_path / "out", KEY, PATIENT)
    rank = sorted(p.name for p in src.iterdir()).index("notes.txt") + 1
    assert summary["files"]["skipped"] == {"not DICOM: text": {"count": 1, "files": [rank]}}
    assert summary["n_files"] == N_SLICES == len(list((tmp_path / "out").iterdir()))
    assert "notes" not in json.dumps(summary) and "House" not in json.dumps(summary)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.2])
def test_truncated_file_refused(tmp_path, keep):
    src = tmp_path / "in"
    files = write_series(src)
    raw = files[2].read_bytes()
    files[2].write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DicomInputError, match="corrupt or truncated") as err:
        anonymize_series_dir(src, tmp_path / "out", KEY, PATIENT)
    assert err.value.path == str(files[2])
    assert not (tmp_path / "out").exists()


def test_mixed_patients_refused(tmp_path):
    src = tmp_path / "in"
    write_series(src)
    write_file(ct_slice(5, patient_id="OTHERPAT123", name="DOE^JANE"), src / "x.dcm")
    with pytest.raises(AnonymizationError, match="mixed patients in one folder: 2 distinct PatientIDs") as err:
        anonymize_series_dir(src, tmp_path / "out", KEY, PATIENT)
    assert MRN not in str(err.value) and "OTHERPAT123" not in str(err.value)


@pytest.mark.parametrize("sheet_id", [MRN, MRN.lower(), f"site2_{MRN}", "smithson01", "P-Johanna"])
def test_real_identifier_as_patient_id_refused(tmp_path, sheet_id):
    src = tmp_path / "in"
    write_series(src)
    with pytest.raises(AnonymizationError, match="looks like a real identifier; use a pseudonym") as err:
        anonymize_series_dir(src, tmp_path / "out", KEY, sheet_id)
    assert sheet_id.lower() not in str(err.value).lower()  # the error does not repeat the identifier
    assert not (tmp_path / "out").exists()


def test_hidden_and_non_image_files_skipped(tmp_path):
    src = tmp_path / "in"
    write_series(src)
    (src / ".DS_Store").write_bytes(b"\x00\x01junk")
    sr = Dataset()
    sr.SOPClassUID = BasicTextSRStorage
    sr.SOPInstanceUID = "1.2.826.0.1.3680043.9.7777.99"
    sr.PatientID = MRN
    sr.PatientName = NAME
    write_file(sr, src / "report.dcm")
    summary = anonymize_series_dir(src, tmp_path / "out", KEY, PATIENT)
    assert {k: v["count"] for k, v in summary["files"]["skipped"].items()} == {
        "hidden file": 1,
        "DICOM structured report (SR)": 1,
    }
    assert summary["n_files"] == N_SLICES == len(list((tmp_path / "out").iterdir()))


def test_output_inside_input_refused(tmp_path):
    src = tmp_path / "in"
    write_series(src)
    with pytest.raises(AnonymizationError, match="output folder"):
        anonymize_series_dir(src, src / "anon", KEY, PATIENT)


# --------------------------------------------------------------- real data

FAKE = {
    "name": "TESTPERSON^ALICIA",
    "mrn": "FAKEMRN4242",
    "institution": "Fake General Hospital",
    "accession": "FAKEACC9911",
    "referrer": "FAKEDOCTOR^BOB",
    "private": "FAKEPRIVATE-ALICIA-7731",
    "other_id": "FAKEOTHER777",
    "birth": "19700102",
    "date": "20200401",
}


def inject_fake_identifiers(ds: Dataset) -> Dataset:
    """Put fake identifiers where real ones would be (real data here is already de-identified)."""
    ds.PatientName = FAKE["name"]
    ds.PatientID = FAKE["mrn"]
    ds.InstitutionName = FAKE["institution"]
    ds.AccessionNumber = FAKE["accession"]
    ds.ReferringPhysicianName = FAKE["referrer"]
    ds.PatientBirthDate = FAKE["birth"]
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, kw, FAKE["date"])
    block = ds.private_block(0x0071, "COVIDCT TEST", create=True)
    block.add_new(0x01, "LO", FAKE["private"])
    block.add_new(0x02, "UN", (FAKE["mrn"] + " blob").encode())
    other = Dataset()
    other.PatientID = FAKE["other_id"]
    ds.OtherPatientIDsSequence = Sequence([other])
    return ds


REAL_SETS = [
    ("ct/lung_pet_ct_dx_A0002/B40f", 4),
    ("ct/jpeg2000_abdomen_20slices", 4),
    ("ct/minimal_header_2slices", 2),
]


@pytest.mark.parametrize("folder,n", REAL_SETS, ids=[f.split("/")[1] for f, _ in REAL_SETS])
def test_real_ct_with_fake_identifiers(tmp_path, folder, n):
    source = SHARED_DATA / folder
    if not source.is_dir():
        pytest.skip(f"real test data not present at {source} (only in the development checkout)")
    src = tmp_path / "in"
    src.mkdir()
    for path in sorted(p for p in source.iterdir() if p.is_file())[:n]:
        ds = inject_fake_identifiers(pydicom.dcmread(path))
        ds.save_as(src / path.name, enforce_file_format=True)
    out = tmp_path / "out"
    summary = anonymize_series_dir(src, out, KEY, PATIENT)
    assert summary["n_files"] == n
    originals = {}
    for p in src.iterdir():
        ds = pydicom.dcmread(p)
        originals[hashlib.sha256(ds.PixelData).hexdigest(), str(ds.ImagePositionPatient)] = ds
    for path in out.iterdir():
        raw = path.read_bytes().lower()
        for what, value in FAKE.items():
            for part in value.split("^"):
                assert part.lower().encode() not in raw, f"{what} leaked into {path.name}"
        ds = pydicom.dcmread(path)
        # the output's pixel bytes and position identify its original (KeyError otherwise)
        orig = originals[hashlib.sha256(ds.PixelData).hexdigest(), str(ds.ImagePositionPatient)]
        assert ds.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
        assert ds.ImagePositionPatient == orig.ImagePositionPatient
        assert ds.PixelSpacing == orig.PixelSpacing
        assert ds.PatientIdentityRemoved == "YES"
    report = verify_anonymization(src, out, PATIENT)
    assert report["leaks"] == [], report["leaks"]
    assert report["passed"], report
    assert report["n_original"] == report["n_output"] == n


def test_real_compressed_pixels_stay_compressed(tmp_path):
    source = SHARED_DATA / "ct" / "jpeg2000_abdomen_20slices"
    if not source.is_dir():
        pytest.skip(f"real test data not present at {source} (only in the development checkout)")
    src = tmp_path / "in"
    src.mkdir()
    first = sorted(source.iterdir())[0]
    shutil.copy(first, src / "a.dcm")
    out = tmp_path / "out"
    anonymize_series_dir(src, out, KEY, PATIENT)
    (anon,) = list(out.iterdir())
    before, after = pydicom.dcmread(first), pydicom.dcmread(anon)
    assert after.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert after.PixelData == before.PixelData
    np.testing.assert_array_equal(after.pixel_array, before.pixel_array)  # still decodes, same image
    assert "InstitutionAddress" not in after and "StationName" not in after
