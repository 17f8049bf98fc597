"""Anonymize every DICOM file of a corpus, one file at a time, and count what leaks.

Two corpora: the real CT under ../shared/data/ct (read in place, nested folders) and every
test file that pydicom ships (``pydicom.data.get_testdata_files()``: odd transfer syntaxes,
non-image objects, deliberately broken files). Each file is read, fake identifiers are
injected (``covidct.demo.identities.inject_identifiers`` with ``fake_identity``), the copy is written to a
folder of its own and that folder goes through ``anonymize_series_dir``, as the workflow's
``anonymize_dicom`` rule runs it but with ``images="all"``: the workflow keeps CT images only, and
this bench measures the de-identification of every kind of image pydicom ships (MR, US, SC, ...).
Then the output's bytes, pixel data excluded, are searched (case-insensitive) for every injected
string and for the original file's PatientName (and its components), PatientID and dates,
wherever they were in the original; and the pixel data must come out byte-identical.

Every file ends in exactly one class:

- ``unreadable``: pydicom itself cannot read the file (not DICOM, or broken), by error type;
- ``non_image``: DICOM that the anonymizer's discovery (``covidct.dicom.files``) skips as no image
  (DICOMDIR, SR, RTSTRUCT, SEG, a data set without pixel data, ...), by design;
- ``not_writable``: the original reads, but pydicom cannot write the copy with the injected
  identifiers (the file's own encoding cannot be written back), with the error type;
- ``refused``: pydicom reads the file but the anonymizer stops with an AnonymizationError, by
  reason: its reader finds the file truncated (an image without pixel data, a short element), the
  image has BurnedInAnnotation YES, the output cannot be written (no SOP Class UID), ...;
- ``anonymized``: an output was written; it is checked for leaks and for its pixel data.

    python bench/anonymize_corpus.py [--corpus ct|pydicom|both] [--dates shift|remove] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from covidct.testing.leaks import ct_files, pydicom_files, run_corpus

REPO = Path(__file__).resolve().parents[1]
CT_CORPUS = REPO.parent / "shared" / "data" / "ct"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=("ct", "pydicom", "both"), default="both")
    ap.add_argument("--dates", choices=("shift", "remove"), default="shift")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    corpora = []
    if a.corpus in ("ct", "both"):
        if CT_CORPUS.is_dir():
            corpora.append(("shared/data/ct", ct_files(CT_CORPUS)))
        else:
            print(f"shared/data/ct: not present at {CT_CORPUS}, skipped")
    if a.corpus in ("pydicom", "both"):
        corpora.append(("pydicom test files", pydicom_files()))
    failed = False
    for name, files in corpora:
        summary = run_corpus(name, files, a.dates, a.verbose).summary()
        print(f"{name}:")
        for k, v in summary.items():
            if k != "corpus":
                print(f"  {k}: {v}")
        failed |= bool(summary["leaks"] or summary["pixel_changed"])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
