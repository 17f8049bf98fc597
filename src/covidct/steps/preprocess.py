"""The steps of ``workflow/rules/preprocess.smk``: anonymized DICOM to a HU volume and its resampled copy."""

from __future__ import annotations

import logging
from pathlib import Path

from covidct import config
from covidct.dicom.files import describe_skips
from covidct.dicom.hu import load_series
from covidct.dicom.series import MAX_SLICES
from covidct.io import read_json, read_volume, write_json, write_volume
from covidct.volume import resample

log = logging.getLogger(__name__)


def dicom_to_hu(
    dicom: str | Path,
    out_volume: str | Path,
    out_info: str | Path,
    patient: str,
    series_uid: str | None = None,
    min_slices: int = config.default("hu.min_slices"),
    max_slices: int | None = config.default("hu.max_slices"),
    anonymize_summary: str | Path | None = None,
    verified: str | Path | None = None,
    threads: int = 1,
    out_resampled: str | Path | None = None,
    spacing_mm: float = config.default("resample.spacing_mm"),
) -> dict:
    """Choose the CT axial series, convert to HU, write an int16 NIfTI with true geometry; with
    ``out_resampled``, also the volume resampled to isotropic ``spacing_mm`` (``resample_volume``'s output,
    from the volume in memory: the workflow's one job per patient for both, the HU volume not read back).

    ``max_slices`` (None: ``covidct.dicom.series.MAX_SLICES``, the schema's) refuses a series too large to
    hold. The JSON names the chosen series (kernel, thickness, description where the anonymizer kept one),
    its compression (lossy or not, and why), the shifted study date, and the files skipped:
    ``files.dicom_dir`` those of the raw folder (from ``anonymize_summary``, the anonymizer's summary,
    when given), ``files.input`` those of the folder this step read. ``verified`` is the verification
    report the workflow waits for (the folder is used only once verified). With ``threads`` >= 2 two processes
    decode the pixel data.
    """
    image, info = load_series(
        dicom,
        patient,
        series_uid=series_uid or None,
        min_slices=min_slices,
        max_slices=MAX_SLICES if max_slices is None else max_slices,
        workers=threads,
    )
    raw_files = read_json(anonymize_summary)["files"] if anonymize_summary is not None else None
    info["files"] = {"input": info.pop("files"), "dicom_dir": raw_files}
    if raw_files is not None:
        log.info(
            "patient %s: the anonymizer skipped %d of %d files of the raw folder: %s",
            patient,
            raw_files["n_skipped"],
            raw_files["n_files"],
            describe_skips(raw_files),
        )
    write_volume(out_volume, image)
    info["patient"] = patient
    write_json(out_info, info)
    log.info("patient %s: HU volume %s, spacing %s", patient, info["shape_zyx"], info["spacing_xyz_mm"])
    if out_resampled is not None:
        write_volume(out_resampled, resample(image, spacing_mm))
        log.info("patient %s: resampled to %g mm", patient, spacing_mm)
    return info


def resample_volume(volume: str | Path, out_volume: str | Path, spacing_mm: float, patient: str = "") -> None:
    """Resample a volume to isotropic ``spacing_mm`` on an LPS-aligned grid."""
    write_volume(out_volume, resample(read_volume(volume), spacing_mm))
    log.info("patient %s: resampled to %g mm", patient, spacing_mm)
