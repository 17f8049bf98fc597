"""The PACS helpers that need no server, and the slice matching of the SEG's source instances."""

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from covidct.clinical.pacs import append_rows, pulled_ids, push_files, read_sheet
from covidct.clinical.seg import derived_uid, order_by_slice
from covidct.errors import AnonymizationError, CovidctError


def test_pulled_rows_are_appended_and_missing_columns_added(tmp_path):
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("patient_id\tdicom_dir\tlabel\tscore\np1\traw/p1\t1\t20\n")
    pid, subject = pulled_ids(b"k" * 16, "1.2.3.4", "REAL-ID-123")
    append_rows(sheet, [{"patient_id": pid, "dicom_dir": f"raw/pacs/{pid}", "subject_id": subject}])
    table = read_sheet(sheet)
    assert list(table.columns) == ["patient_id", "dicom_dir", "label", "score", "subject_id"]
    assert table.to_dict("records") == [
        {"patient_id": "p1", "dicom_dir": "raw/p1", "label": "1", "score": "20", "subject_id": ""},
        {"patient_id": pid, "dicom_dir": f"raw/pacs/{pid}", "label": "", "score": "", "subject_id": subject},
    ]
    assert "REAL-ID-123" not in sheet.read_text()
    # another key, other ids; the same study of the same person, the same ids
    assert pulled_ids(b"j" * 16, "1.2.3.4", "REAL-ID-123") != (pid, subject)
    assert pulled_ids(b"k" * 16, "1.2.3.5", "REAL-ID-123")[1] == subject


def _ct(path, position, identity_removed="YES"):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
    ds.PatientIdentityRemoved = identity_removed
    ds.ImagePositionPatient = list(position)
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_push_refuses_a_file_not_marked_deidentified_before_any_network(tmp_path):
    files = [tmp_path / "a.dcm", tmp_path / "b.dcm"]
    _ct(files[0], (0, 0, 0))
    _ct(files[1], (0, 0, 1), identity_removed="NO")
    # the URL answers nothing: the refusal must come first
    with pytest.raises(AnonymizationError, match="not marked de-identified: nothing is pushed"):
        push_files(files, {"url": "http://127.0.0.1:1/dicom-web"}, "p1")


def test_instances_are_ordered_by_their_slice_and_gaps_refused(tmp_path):
    grid = sitk.GetImageFromArray(np.zeros((3, 4, 4), np.int16))
    grid.SetSpacing((1.0, 1.0, 2.5))
    grid.SetOrigin((-10.0, 5.0, 100.0))
    ds = [_ct(tmp_path / f"{k}.dcm", (-10.0, 5.0, 100.0 + 2.5 * k)) for k in (2, 0, 1)]
    assert [float(d.ImagePositionPatient[2]) for d in order_by_slice(ds, grid, "p1")] == [100.0, 102.5, 105.0]
    with pytest.raises(CovidctError, match=r"1 slice\(s\) of the HU volume have no instance"):
        order_by_slice(ds[:2], grid, "p1")
    with pytest.raises(CovidctError, match="two instances of the series lie on slice 2"):
        order_by_slice(ds + [ds[0]], grid, "p1")
    ds[1].ImagePositionPatient = [-10.0, 5.0, 101.0]  # between two slices
    with pytest.raises(CovidctError, match="does not lie on a slice of the HU volume"):
        order_by_slice(ds, grid, "p1")


def test_derived_uids_are_valid_and_content_dependent():
    uid = derived_uid("seg", "2.25.1", "abc")
    assert uid.startswith("2.25.") and len(uid) <= 64 and uid.replace(".", "").isdigit()
    assert uid == derived_uid("seg", "2.25.1", "abc") != derived_uid("seg", "2.25.1", "abd")
