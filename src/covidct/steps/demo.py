"""The steps of ``workflow/rules/demo.smk``: the synthetic demo cohort, the synthetic training source of
the infection U-Net, and the sheet rows refused."""

from __future__ import annotations

from pathlib import Path

from covidct.demo.cohort import write_demo_infection_training, write_demo_patient
from covidct.errors import CovidctError


def synth_patient(
    patient: str,
    out_dicom: str | Path,
    out_truth: str | Path,
    out_lung_truth: str | Path,
    out_lesion_truth: str | Path,
    out_lobe_truth: str | Path,
) -> dict:
    """Generate one patient of the built-in demo cohort: its DICOM folder and its truth files."""
    truth = {"json": out_truth, "lung": out_lung_truth, "lesion": out_lesion_truth, "lobes": out_lobe_truth}
    return write_demo_patient(patient, out_dicom, truth)


def reject_sheet_row(out_marker: str | Path, message: str, row: str) -> None:
    """A sheet row that cannot be processed (an unsafe patient_id): the job fails with ``message``;
    ``out_marker`` is never written."""
    raise CovidctError(message)


def synth_infection_training(out_dir: str | Path, n: int) -> None:
    """The default infection training source: ``n`` synthetic phantoms (not demo patients) as NIfTI."""
    write_demo_infection_training(out_dir, n)
