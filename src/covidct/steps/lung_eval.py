"""The steps of ``workflow/rules/lung_eval.smk``: lung masks against reference contours (RTSTRUCT or label
maps), for the patients whose sheet row names a ``lung_reference``."""

from __future__ import annotations

from pathlib import Path

from covidct.deid.redact import raw_input
from covidct.errors import CovidctError
from covidct.io import read_json
from covidct.lungs.evaluation import LEFT_LUNG_PATTERN, RIGHT_LUNG_PATTERN, evaluate, write_table
from covidct.sheet import lung_reference_path


def evaluate_lung_mask(
    labels: str | Path,
    out_json: str | Path,
    patient: str,
    reference: str | Path | None = None,
    sheet: str | Path | None = None,
    right_roi: str | None = None,
    left_roi: str | None = None,
    lesion_roi: str | None = None,
    contour_shift_mm: tuple[float, float] = (0.0, 0.0),
    reference_digest: str = "",
) -> dict:
    """Compare a patient's lung mask (label map ``labels``) with a reference (RTSTRUCT or NIfTI label
    map): Dice, HD95 and volume difference per lung and both, written to ``out_json``
    (``covidct.lungs.evaluation``).

    The reference is ``reference``, or the sheet's ``lung_reference`` when it is None; errors then
    name it ``<lung_reference of PATIENT>``, never by its path. ``reference_digest`` (the keyed hash
    of that path) is not used here: its change re-runs the job. ``lesion_roi`` None: the default
    lesion pattern; "" for none.
    """
    from_sheet = reference is None
    if from_sheet:
        reference = lung_reference_path(sheet, patient)
        if reference is None:
            raise CovidctError("the sheet's lung_reference is empty", patient)
    patterns = {"right_pattern": right_roi or RIGHT_LUNG_PATTERN, "left_pattern": left_roi or LEFT_LUNG_PATTERN}
    if lesion_roi is not None:
        patterns["lesion_pattern"] = lesion_roi
    shift = tuple(float(v) for v in contour_shift_mm)
    reading = {"what": "lung_reference", "reading": "the lung reference", "error": CovidctError}
    with raw_input(reference, patient, redacted=from_sheet, **reading):
        return evaluate(labels, reference, out_json, patient, shift_mm=shift, **patterns)


def lung_eval_table(results: list[str | Path], out_csv: str | Path) -> None:
    """The cohort table of lung masks against their references (one row per patient's JSON)."""
    write_table([read_json(path) for path in results], out_csv)
