"""The patient sheet (``config/patients.tsv``: patient_id, dicom_dir, label, score, and optional split,
subject_id, lung_reference), read in one place: by the workflow when it builds its jobs
(``load_patient_sheet``, from ``workflow/rules/common.smk``) and by a job that needs a raw path
(``raw_dicom_dir``, ``lung_reference_path``). A raw path may carry real names or IDs: it is read here,
inside the job, and never passes through Snakemake."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from covidct.errors import CovidctError, raw_placeholder

#: A pseudonymous patient id: letters, digits, '_' and '-' (the workflow's wildcard constraint).
SAFE_ID = r"[A-Za-z0-9_-]+"
#: SAFE_ID in words.
SAFE_ID_WORDS = "letters, digits, '_' and '-'"
#: How a message names the raw DICOM folder read from the sheet (the command line says the path instead).
SHEET_DICOM_DIR = "the sheet's dicom_dir"


#: Columns a sheet must have.
REQUIRED_COLUMNS = ("patient_id", "dicom_dir")


def read_sheet(path: str | Path) -> pd.DataFrame:
    """The sheet as written: every cell text, an empty cell ``""``."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def load_patient_sheet(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sheet the workflow runs on, and the rows it sets apart.

    Rows whose patient_id is not a safe pseudonymous id (SAFE_ID) are set apart: each fails as its own
    job, named by its line (column ``row``, the line number in the file). ``label`` and ``score`` are
    added empty when absent.

    Returns:
        ``(sheet, rejected)``: the safe rows indexed by patient_id (patient_id kept as a column), and
        the rejected rows.

    Raises:
        ValueError: the file is missing, lacks a required column, or repeats a patient_id.
    """
    if not os.path.isfile(path):
        raise ValueError(f"patient sheet {path} not found (config key 'patients')")
    sheet = read_sheet(path)
    missing = set(REQUIRED_COLUMNS) - set(sheet.columns)
    if missing:
        raise ValueError(f"patient sheet {path}: missing column(s) {', '.join(sorted(missing))}")
    for col in ("label", "score"):
        if col not in sheet.columns:
            sheet[col] = ""
    sheet["row"] = range(2, len(sheet) + 2)  # line number in the file
    safe = sheet["patient_id"].str.fullmatch(SAFE_ID)
    rejected = sheet[~safe]
    sheet = sheet[safe]
    dupes = sheet["patient_id"][sheet["patient_id"].duplicated()].unique()
    if len(dupes):
        raise ValueError(f"patient sheet {path}: duplicate patient_id {', '.join(dupes)}")
    return sheet.set_index("patient_id", drop=False), rejected


def raw_dicom_dir(sheet: str | Path, patient: str) -> Path:
    """The raw DICOM folder of ``patient`` from the patient sheet (never passed through Snakemake,
    whose logs and metadata must not hold a folder name that may carry real identifiers)."""
    table = read_sheet(sheet)
    rows = table[table["patient_id"] == patient]
    if len(rows) != 1:
        raise CovidctError(f"{len(rows)} rows for this patient in the sheet", patient, sheet)
    return Path(rows["dicom_dir"].iloc[0])


def raw_folder(raw_dir: str | Path | None, sheet: str | Path | None, patient: str) -> Path:
    """The raw folder: given (command line), or the sheet's ``dicom_dir`` (workflow), checked.

    Raises:
        CovidctError: the cell is empty, or the folder does not exist (named ``<dicom_dir of PATIENT>``).
    """
    raw = Path(raw_dir) if raw_dir else raw_dicom_dir(sheet, patient)
    if not str(raw).strip() or str(raw) == ".":
        raise CovidctError(f"{SHEET_DICOM_DIR} is empty", patient)
    if not raw.is_dir():
        raise CovidctError(f"{SHEET_DICOM_DIR} does not exist or is not a folder", patient, raw_placeholder(patient))
    return raw


def lung_reference_path(sheet: str | Path, patient: str) -> Path | None:
    """The patient's lung reference (sheet column ``lung_reference``), read inside the job: the path
    may carry real identifiers and never passes through Snakemake. None when the cell is empty."""
    table = read_sheet(sheet)
    rows = table[table["patient_id"] == patient]
    if len(rows) != 1 or "lung_reference" not in table.columns:
        raise CovidctError("no lung_reference for this patient in the sheet", patient, sheet)
    value = rows["lung_reference"].iloc[0].strip()
    return Path(value) if value else None
