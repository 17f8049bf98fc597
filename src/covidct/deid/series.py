"""A patient's folder: every file read once and whole (broken DICOM refused, clutter skipped and
counted by ``covidct.dicom.files``), the patient id checked against the real identifiers, and each CT
image anonymized into a flat output folder written atomically."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from covidct import forked
from covidct.deid.dataset import anonymize_dataset, check_dates_mode
from covidct.deid.keys import date_offset_days
from covidct.deid.profile import (
    CID7050_MEANINGS,
    CODE_RETAIN_MODIFIED_DATES,
    PROFILE_NAME,
)
from covidct.dicom.files import read_dicom, scan_folder
from covidct.errors import AnonymizationError
from covidct.io import atomic_dir

log = logging.getLogger(__name__)


# Verification: which original strings count as identifying, and how they are searched.
#: Shortest identifying string compared with output values.
MIN_IDENTIFYING_CHARS = 3


#: Separators of a person name's parts (PN components, "=" groups, spaces).
NAME_SPLIT = re.compile(r"[\^=\s]+")


def _name_components(value: Any) -> set[str]:
    if value is None:
        return set()
    return {c.lower() for c in NAME_SPLIT.split(str(value)) if len(c) >= MIN_IDENTIFYING_CHARS}


def _refuse_real_identifier(patient: str, patient_ids: set[str], name_parts: set[str], folder: Path) -> None:
    """Refuse a sheet patient id that equals or contains the real PatientID or a name part.

    The error deliberately names no patient: here the id itself is the identifier.
    """
    low = patient.strip().lower()
    for real in patient_ids:
        real = real.strip().lower()
        if real and (low == real or (len(real) >= MIN_IDENTIFYING_CHARS and real in low)):
            break
    else:
        if not any(part in low for part in name_parts):
            return
    raise AnonymizationError("patient_id looks like a real identifier; use a pseudonym", path=folder)


#: What ``anonymize_series_dir`` anonymizes: CT images (the workflow) or every image SOP Class.
IMAGE_KINDS = ("ct", "all")


#: Files of one patient kept in memory between the checking and the writing pass.
CACHE_BYTES = 512 * 1024 * 1024
#: With ``workers`` >= 2, a folder of at least this many images is written by two processes.
MIN_FILES_TO_SPLIT = 32
DUPLICATE_INSTANCE = "two files share one SOPInstanceUID (duplicate instance)"


@dataclass
class _Written:
    """What ``_write_anonymized`` wrote: file names in the order of its paths, series, transfer syntaxes, and
    the error that stopped it (``error_at``: the index of the path it names), if any."""

    names: list[str] = field(default_factory=list)
    series: set[str] = field(default_factory=set)
    transfer_syntaxes: set[str] = field(default_factory=set)
    error: AnonymizationError | None = None


def _write_anonymized(
    paths: list[Path], cache: dict, tmp: Path, key: bytes, offset: int, dates: str, patient: str
) -> _Written:
    """Anonymize ``paths`` (datasets from ``cache`` where read already) into ``tmp`` as ``<SOPInstanceUID>.dcm``,
    stopping at the first file that cannot be (its error is returned, naming that file)."""
    out = _Written()
    seen: set[str] = set()
    for path in paths:
        ds = cache.pop(path, None) or read_dicom(path, patient)
        try:
            anonymize_dataset(ds, key, offset, dates)
        except AnonymizationError as exc:
            out.error = AnonymizationError(exc.message, patient, path)
            return out
        name = f"{ds.SOPInstanceUID}.dcm"
        if name in seen:
            out.error = AnonymizationError(DUPLICATE_INSTANCE, patient, path)
            return out
        try:
            ds.save_as(tmp / name, enforce_file_format=True)
        except Exception as exc:  # the message could quote a value: give only its type
            out.error = AnonymizationError(f"cannot write the anonymized file ({type(exc).__name__})", patient, path)
            return out
        out.names.append(name)
        seen.add(name)
        out.series.add(str(ds.get("SeriesInstanceUID", "") or ""))
        out.transfer_syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
    return out


def anonymize_series_dir(
    in_dir: Path,
    out_dir: Path,
    key: bytes,
    patient: str,
    dates: str = "shift",
    images: str = "ct",
    workers: int = 1,
) -> dict:
    """De-identify every CT image under ``in_dir`` into a flat ``out_dir``.

    ``in_dir`` is only read. What is not a CT image is skipped and counted by
    ``covidct.dicom.files.scan_folder`` (hidden files, files that are not DICOM, DICOMDIR,
    non-image objects, images of other kinds: a dose screen may show the name in its
    pixels); the output holds one ``<new SOPInstanceUID>.dcm`` per image (original names
    may carry identifiers; a multi-frame file stays one file) and is written atomically:
    it appears complete or not at all. Pixel data are never decoded: compressed pixel
    data keep their bytes and their transfer syntax.

    Args:
        in_dir: Folder of one patient's DICOM files (searched recursively).
        out_dir: Output folder (replaced if it exists).
        key: The anonymization key (``load_key``).
        patient: The pseudonymous patient id of the sample sheet; it must not
            look like the real PatientID or PatientName.
        dates: ``"shift"`` or ``"remove"``, see ``anonymize_dataset``.
        images: ``"ct"`` (the workflow) or ``"all"``: every image SOP Class (the corpus bench).
        workers: With 2 or more, the files are anonymized and written by two processes (the output is
            the same).

    Returns:
        Summary: patient, n_files, n_series, files (the scan of ``in_dir``: counts and ranks
        of what was skipped, by category), dates, profile, options, transfer syntaxes.
        Neither the key, nor the date offset, nor any file name is included.

    Raises:
        AnonymizationError: A DICOM file is corrupt or truncated, an image has burned-in
            annotation; the folder holds several patients or no CT image; the patient id
            looks real.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    check_dates_mode(dates)
    if images not in IMAGE_KINDS:
        raise AnonymizationError(f"images must be one of {', '.join(IMAGE_KINDS)}, got {images!r}")
    if not in_dir.is_dir():
        raise AnonymizationError("DICOM input folder not found", patient, in_dir)
    src, dst = in_dir.resolve(), out_dir.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise AnonymizationError(
            "the output folder must not contain or be inside the DICOM input folder", patient, out_dir
        )
    scan = scan_folder(in_dir, ct_only=images == "ct")

    # Pass 1: read every candidate (refusing broken files) before writing anything. Datasets are
    # kept for pass 2 up to CACHE_BYTES of files, so that a usual series is read once.
    used: list[Path] = []
    cache: dict[Path, Dataset] = {}
    cached_bytes = 0
    patient_ids: set[str] = set()
    name_parts: set[str] = set()
    for path in scan.candidates:
        ds = read_dicom(path, patient)
        if not scan.accept(path, ds):
            continue
        if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
            raise AnonymizationError(
                "BurnedInAnnotation is YES: anonymization refused, pixel data may show identifiers", patient, path
            )
        patient_ids.add(str(ds.get("PatientID", "") or "").strip())
        name_parts |= _name_components(ds.get("PatientName"))
        used.append(path)
        size = path.stat().st_size
        if cached_bytes + size <= CACHE_BYTES:
            cache[path] = ds
            cached_bytes += size
    scan.log_skips(patient)
    if not used:
        what = "CT image" if images == "ct" else "image"
        raise AnonymizationError(f"no {what} found in the folder (skipped: {scan.describe_skips()})", patient, in_dir)
    if len(patient_ids) > 1:
        raise AnonymizationError(
            f"mixed patients in one folder: {len(patient_ids)} distinct PatientIDs", patient, in_dir
        )
    _refuse_real_identifier(patient, patient_ids, name_parts, in_dir)
    real_id = next(iter(patient_ids))
    offset = date_offset_days(key, real_id or patient)

    # Pass 2: anonymize and write; with ``workers`` >= 2 the second half of the files in a forked process.
    # Errors come in the order one process would meet them: the first half's, then the second half's
    # files in turn (a duplicate of a first-half instance included).
    with atomic_dir(out_dir) as tmp:
        split = len(used) // 2 if workers > 1 and len(used) >= MIN_FILES_TO_SPLIT and forked.available() else len(used)
        other = (
            forked.start(_write_anonymized, used[split:], cache, tmp, key, offset, dates, patient)
            if split < len(used)
            else None
        )
        with forked.running(other, patient):  # the first half's error is met first by one process
            first = _write_anonymized(used[:split], cache, tmp, key, offset, dates, patient)
            if first.error is not None:
                raise first.error
        names, series, transfer_syntaxes = first.names, first.series, first.transfer_syntaxes
        if other is not None:
            second = other.result(patient)
            earlier = set(names)
            for path, name in zip(used[split:], second.names):
                if name in earlier:
                    raise AnonymizationError(DUPLICATE_INSTANCE, patient, path)
            if second.error is not None:
                raise second.error
            names = names + second.names
            series, transfer_syntaxes = series | second.series, transfer_syntaxes | second.transfer_syntaxes
    summary = {
        "patient": patient,
        "n_files": len(names),
        "n_series": len(series),
        "files": scan.summary(),
        "dates": dates,
        "profile": PROFILE_NAME,
        "options": [CID7050_MEANINGS[CODE_RETAIN_MODIFIED_DATES]] if dates == "shift" else [],
        "transfer_syntaxes": sorted(transfer_syntaxes),
    }
    log.info("patient %s: anonymized %d file(s) in %d series (dates: %s)", patient, len(names), len(series), dates)
    return summary
