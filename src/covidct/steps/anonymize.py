"""The steps of ``workflow/rules/anonymize.smk``: a raw folder in, its anonymized copy out, checked.
The raw folder is read from the patient sheet inside the job; its errors never show its path."""

from __future__ import annotations

import logging
from pathlib import Path

from covidct import config
from covidct.deid.keys import load_key
from covidct.deid.redact import raw_input
from covidct.deid.series import anonymize_series_dir
from covidct.deid.verify import require_verified
from covidct.io import write_json
from covidct.sheet import raw_folder

log = logging.getLogger(__name__)


def anonymize_dicom(
    patient: str,
    out_dicom: str | Path,
    out_summary: str | Path | None = None,
    raw_dir: str | Path | None = None,
    sheet: str | Path | None = None,
    key_file: str | None = None,
    allow_demo_key: bool = False,
    dates: str = config.default("anonymize.dates"),
    raw_digest: str = "",
    demo: list[str] | str = (),
    threads: int = 1,
) -> dict:
    """Anonymize a patient's raw DICOM folder into ``out_dicom`` (Basic Profile, keyed pseudonyms).

    Args:
        patient: The pseudonymous id.
        out_dicom: The anonymized folder (flat, one file per CT image).
        out_summary: The anonymizer's summary (counts, transfer syntaxes, and what was skipped in
            the raw folder, by category and rank: never a file name), where the HU step picks it up.
        raw_dir: The raw folder (command line); else it is read from ``sheet`` (workflow).
        sheet: The patient sheet.
        key_file: File holding the key (else ``$COVIDCT_ANON_KEY``).
        allow_demo_key: The public demo key may be used (the generated demo cohort only).
        dates: ``shift`` or ``remove``.
        raw_digest: The keyed hash of the raw folder's path: not used here; the workflow passes it
            so that a changed folder re-runs the job without Snakemake ever seeing the path.
        demo: The generated demo folder this job waits for (demo patients only); the folder read
            is still the sheet's.
        threads: With 2 or more, two processes anonymize and write the files.
    """
    raw = raw_folder(raw_dir, sheet, patient)
    key = load_key(key_file or None, allow_demo=allow_demo_key)
    with raw_input(raw, patient):
        summary = anonymize_series_dir(raw, Path(out_dicom), key, patient, dates=dates, workers=threads)
    log.info("patient %s: anonymized %s", patient, summary)
    if out_summary is not None:
        write_json(out_summary, summary)
    return summary


def verify_anonymization(
    dicom: str | Path,
    out_report: str | Path,
    patient: str,
    raw_dir: str | Path | None = None,
    sheet: str | Path | None = None,
    raw_digest: str = "",
    threads: int = 1,
) -> dict:
    """Check the anonymized folder ``dicom`` against the original; write the report, or fail with the
    failed report in the log (it names keywords and places, never a value).

    The original folder is ``raw_dir``, or the sheet's ``dicom_dir``; ``raw_digest`` as in
    ``anonymize_dicom``. With ``threads`` >= 2 the two folders are read at once.
    """
    raw = raw_folder(raw_dir, sheet, patient)
    with raw_input(raw, patient):
        report = require_verified(raw, Path(dicom), patient, workers=threads)
    write_json(out_report, report)
    return report
