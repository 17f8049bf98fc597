"""The patient sheet, read in one place: the workflow's rows (unsafe ids set apart), and the raw paths a job
reads inside itself."""

from __future__ import annotations

import pytest

from covidct.errors import CovidctError
from covidct.sheet import load_patient_sheet, lung_reference_path, raw_dicom_dir, raw_folder


def test_unsafe_ids_are_set_apart_with_their_line_and_columns_are_added(tmp_path):
    sheet = tmp_path / "p.tsv"
    sheet.write_text("patient_id\tdicom_dir\np01\traw/p01\nDoe, John\traw/x\np-02\traw/p02\n")
    rows, rejected = load_patient_sheet(sheet)
    assert list(rows.index) == ["p01", "p-02"] and list(rows["patient_id"]) == ["p01", "p-02"]
    assert list(rows["label"]) == ["", ""] and list(rows["score"]) == ["", ""]
    assert list(rows["row"]) == [2, 4] and list(rejected["row"]) == [3]


@pytest.mark.parametrize(
    "text, message",
    [
        ("patient_id\tlabel\np01\t1\n", "missing column(s) dicom_dir"),
        ("patient_id\tdicom_dir\np01\ta\np01\tb\n", "duplicate patient_id p01"),
    ],
)
def test_a_bad_sheet_is_refused_naming_the_file(tmp_path, text, message):
    sheet = tmp_path / "p.tsv"
    sheet.write_text(text)
    with pytest.raises(ValueError, match="p.tsv") as err:
        load_patient_sheet(sheet)
    assert message in str(err.value)
    with pytest.raises(ValueError, match="not found"):
        load_patient_sheet(tmp_path / "none.tsv")


def test_raw_paths_are_read_inside_the_job(tmp_path):
    (tmp_path / "raw").mkdir()
    sheet = tmp_path / "p.tsv"
    sheet.write_text(f"patient_id\tdicom_dir\tlung_reference\np01\t{tmp_path / 'raw'}\t ref.dcm \np02\t\t\n")
    assert raw_dicom_dir(sheet, "p01") == tmp_path / "raw"
    assert raw_folder(None, sheet, "p01") == tmp_path / "raw" and raw_folder(tmp_path, None, "p9") == tmp_path
    assert lung_reference_path(sheet, "p01").name == "ref.dcm" and lung_reference_path(sheet, "p02") is None
    with pytest.raises(CovidctError, match="0 rows for this patient"):
        raw_dicom_dir(sheet, "p03")
    with pytest.raises(CovidctError, match="dicom_dir is empty"):
        raw_folder(None, sheet, "p02")
    with pytest.raises(CovidctError, match="does not exist") as err:
        raw_folder(tmp_path / "nope", None, "p01")
    assert "<dicom_dir of p01>" in str(err.value) and "nope" not in str(err.value)
