"""The anonymizer over whole corpora: real CT (../shared/data/ct) and pydicom's test files.

``bench/anonymize_corpus.py`` injects fake identifiers into a copy of each file, runs
``anonymize_series_dir`` on it and searches the output's bytes for every injected string and
for the original's names, IDs and dates. Here: zero leaks, pixels unchanged, every file in
exactly one class, and refusals only for the reasons the anonymizer documents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from covidct.deid.dataset import DATE_MODES
from covidct.deid.series import anonymize_series_dir
from covidct.errors import DicomInputError
from covidct.testing import leaks as corpus
from helpers import require_shared_data

#: Refusals the anonymizer documents for odd inputs (message prefixes).
KNOWN_REFUSALS = ("corrupt or truncated DICOM file", "cannot write the anonymized file", "BurnedInAnnotation is YES")
#: pydicom's test files that must come out anonymized (at least): a lower bound, so that
#: this test cannot pass by refusing everything. 83 since issue 10: its 7 RT Dose and 2 SEG files
#: (pixel data, but no image SOP Class) are skipped as non-image objects by the discovery.
MIN_PYDICOM_ANONYMIZED = 80
SUMMARIES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    """Print each corpus's counts at the end (whatever -s says)."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(SUMMARIES))
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in SUMMARIES:
            reporter.write_line(line)


def _record(result, dates: str) -> dict:
    summary = result.summary()
    SUMMARIES.append(f"anonymize corpus [{summary['corpus']}, dates={dates}]: {summary}")
    assert summary["tried"] == (
        summary["anonymized"]
        + summary["non_image"]
        + summary["unreadable"]
        + summary["not_writable"]
        + summary["refused"]
    )
    return summary


def test_real_ct_corpus_no_leak():
    root = require_shared_data("ct")
    files = corpus.ct_files(root)
    result = corpus.run_corpus("shared/data/ct", files)
    summary = _record(result, "shift")
    assert result.leaks == [], result.leaks
    assert result.pixel_changed == []
    # real CT is never refused: every image pydicom reads comes out anonymized; the only non-image
    # DICOM objects of the corpus are the RTSTRUCTs (skipped by the anonymizer's discovery)
    assert summary["refused"] == summary["not_writable"] == 0
    n_rtstruct = len([p for p in files if p.parent.name == "rtstruct"])
    assert summary["non_image"] == n_rtstruct >= 1
    readable = 0
    for path in files:
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
            readable += 1
        except pydicom.errors.InvalidDicomError:
            pass
    assert summary["anonymized"] == readable - n_rtstruct > 100


@pytest.mark.parametrize("dates", DATE_MODES)
def test_pydicom_test_files_no_leak(dates):
    files = corpus.pydicom_files()
    assert len(files) > 150
    result = corpus.run_corpus("pydicom test files", files, dates=dates)
    summary = _record(result, dates)
    assert result.leaks == [], result.leaks
    assert result.pixel_changed == []
    assert summary["anonymized"] >= MIN_PYDICOM_ANONYMIZED
    assert all(reason.startswith(KNOWN_REFUSALS) for reason in result.refused), dict(result.refused)


def test_corpus_check_finds_leaks_when_nothing_is_anonymized(monkeypatch):
    """The harness's check can fail: with the anonymizer replaced by a copy, every file leaks."""

    def copy_only(in_dir, out_dir, key, patient, dates="shift", images="ct"):
        shutil.copytree(in_dir, out_dir)

    monkeypatch.setattr(corpus, "anonymize_series_dir", copy_only)  # the harness's anonymizer
    files = [Path(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")]
    files.append(Path(get_testdata_file("image_dfl.dcm")))  # deflated: searched after inflating
    result = corpus.run_corpus("control", files)
    assert result.anonymized == len(files)
    assert {name for name, _ in result.leaks} == {p.name for p in files}
    assert {"PatientName", "PatientID", "InstitutionName", "StudyInstanceUID"} <= {s for _, s in result.leaks}


def test_ybr_full_422_uncompressed_not_taken_for_truncated(tmp_path):
    """Regression: uncompressed YBR_FULL_422 holds 2 bytes per 8-bit pixel, not 3; it was refused
    as "pixel data shorter than Rows x Columns x frames". A really short one still is."""
    source = Path(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(source, src / "a.dcm")
    anonymize_series_dir(src, tmp_path / "out", corpus.KEY, "P001", images="all")  # a secondary capture
    (out,) = list((tmp_path / "out").iterdir())
    assert pydicom.dcmread(out).PixelData == pydicom.dcmread(source).PixelData
    ds = pydicom.dcmread(source)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(src / "a.dcm")
    with pytest.raises(DicomInputError, match="pixel data shorter"):
        anonymize_series_dir(src, tmp_path / "out2", corpus.KEY, "P001", images="all")
