"""Errors about raw inputs never show the raw path: the folder becomes <dicom_dir of PATIENT> and a file
inside it its rank in the sorted listing."""

from __future__ import annotations

import pytest

from covidct.deid.redact import raw_input, redact
from covidct.errors import AnonymizationError, CovidctError


def test_a_file_in_the_raw_folder_is_told_by_its_rank(tmp_path):
    raw = tmp_path / "DOE_JOHN"
    raw.mkdir()
    for name in ("a.dcm", "b.dcm", "c.dcm"):
        (raw / name).write_bytes(b"x")
    told = redact(CovidctError("corrupt", "p1", raw / "b.dcm"), raw, "p1")
    assert str(told) == str(CovidctError("corrupt", "p1", "<dicom_dir of p1>, file 2 of 3 in sorted order"))
    assert "DOE_JOHN" not in str(redact(CovidctError("empty", "p1", raw), raw, "p1"))
    output = CovidctError("full disk", "p1", tmp_path / "results" / "p1.nii.gz")
    assert redact(output, raw, "p1") is output  # a pseudonymous output path stays
    reference = redact(CovidctError("bad ROI", "p1", raw / "b.dcm"), raw, "p1", what="lung_reference")
    assert "<lung_reference of p1>" in str(reference) and "file 2" not in str(reference)


def test_raw_input_redacts_errors_and_turns_os_errors_into_clear_ones(tmp_path):
    raw = tmp_path / "SMITH_JANE"
    raw.mkdir()
    with pytest.raises(AnonymizationError) as err:
        with raw_input(raw, "p2"):
            open(raw / "missing.dcm")
    assert "cannot read the DICOM input (FileNotFoundError)" in str(err.value) and "SMITH" not in str(err.value)
    with pytest.raises(CovidctError) as err:
        with raw_input(raw, "p2", redacted=False, reading="the lung reference", error=CovidctError):
            raise CovidctError("no lungs", "p2", raw)
    assert "SMITH_JANE" in str(err.value)  # a path the user typed is kept
