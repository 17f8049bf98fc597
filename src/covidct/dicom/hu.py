"""The chosen series as a Hounsfield-unit volume: pixels decoded (any installed transfer syntax,
multi-frame included), stored values rescaled to HU with padding set to air, and the volume's true
geometry; ``to_hu`` is the pure array function."""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.pixels import get_decoder, pixel_array

from covidct import forked
from covidct.dicom.codecs import lossy_evidence, register_decoders
from covidct.dicom.series import (
    MAX_SLICES,
    MIN_SLICES,
    SliceInfo,
    choose_series,
    group_series,
    scan_slice_infos,
    sort_slices,
    text_of,
)
from covidct.errors import DicomInputError
from covidct.hounsfield import HU_AIR, HU_MAX, HU_MIN

log = logging.getLogger(__name__)

#: With ``workers`` >= 2, a series of at least this many slices is decoded by two processes.
MIN_SLICES_TO_SPLIT = 32


#: Stored HU below this after rescaling are padding / outside the reconstruction circle.
HU_PADDING_BELOW = -1500


def to_hu(
    pixels: np.ndarray,
    slope: float = 1.0,
    intercept: float = 0.0,
    padding_value: int | None = None,
) -> np.ndarray:
    """Convert stored pixel values to Hounsfield units.

    Padding (the stored ``PixelPaddingValue``, and anything far below air such as
    the -2048 or -3024 outside the reconstruction circle) becomes air.

    Args:
        pixels: Stored values as read from the file.
        slope: RescaleSlope.
        intercept: RescaleIntercept.
        padding_value: PixelPaddingValue (a stored value), if the file has one.

    Returns:
        int16 HU array clipped to [HU_MIN, HU_MAX].

    >>> to_hu(np.array([0, 1024, 24, -2000]), 1.0, -1024.0).tolist()
    [-1024, 0, -1000, -1000]
    """
    if float(slope).is_integer() and float(intercept).is_integer():  # the usual case: exact integer arithmetic
        hu = pixels.astype(np.int32) * int(slope) + int(intercept)
    else:
        hu = np.rint(pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.int32)
    pad = hu < HU_PADDING_BELOW
    if padding_value is not None:
        pad |= pixels == padding_value
    hu[pad] = HU_AIR
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    return hu.astype(np.int16)


def _refuse_undecodable(ds, info: SliceInfo, patient: str | None) -> None:
    """Refuse, with a clear message, a transfer syntax no installed decoder reads, or native
    pixel data shorter than the image (a truncated file)."""

    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and not syntax.is_transfer_syntax:  # newer than the installed pydicom (JPEG XL, ...)
        raise DicomInputError(
            f"transfer syntax {syntax} is unknown to the installed pydicom: no decoder reads it", patient, info.path
        )
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:  # pydicom knows no decoder for it at all
            decoder = None
        if decoder is None or not decoder.is_available:
            options = "; ".join(decoder.missing_dependencies) if decoder is not None else "none known to pydicom"
            raise DicomInputError(
                f"transfer syntax {syntax.name} ({syntax}) cannot be decoded: no decoder is "
                f"installed (options: {options})",
                patient,
                info.path,
            )
    elif "PixelData" in ds:
        frames = int(ds.get("NumberOfFrames") or 1) if info.frame is not None else 1
        expected = (
            info.rows * info.columns * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated) // 8 * frames
        )
        if len(ds.PixelData) < expected:
            raise DicomInputError(
                f"pixel data has {len(ds.PixelData)} of {expected} bytes: the file is truncated", patient, info.path
            )


def _decode(ds, info: SliceInfo, patient: str | None, cache: dict | None) -> np.ndarray:
    """Stored values of one image: the file's only frame, or frame ``info.frame`` of a multi-frame
    file (all its frames decoded once and kept in ``cache`` when one is given)."""

    if info.frame is None:
        return pixel_array(ds)  # not ds.pixel_array: that keeps a decoded copy on every data set
    if cache is None:
        return pixel_array(ds, index=info.frame)
    if info.path not in cache:
        cache.clear()  # one multi-frame file at a time: slices are read file by file
        frames = pixel_array(ds)
        cache[info.path] = frames if frames.ndim == 3 else frames[np.newaxis]
    return cache[info.path][info.frame]


def read_pixels(info: SliceInfo, patient: str | None = None, cache: dict | None = None) -> np.ndarray:
    """Decode one slice (or one frame of a multi-frame file) and return it in HU.

    Every transfer syntax with an installed decoder is read (``covidct.dicom.codecs``); the
    rescale is the frame's own (functional groups) or the file's RescaleSlope/Intercept.

    Args:
        info: The slice.
        patient: Pseudonymous id, for messages.
        cache: Optional dict in which the frames of the last multi-frame file read are kept.

    Raises:
        DicomInputError: pixel data cannot be decoded (a transfer syntax without an installed
            decoder, named with its UID; corrupt or truncated data).
    """

    register_decoders()
    ds = info.dataset
    try:
        if ds is None:
            ds = pydicom.dcmread(info.path, force=True)
        _refuse_undecodable(ds, info, patient)
        pixels = _decode(ds, info, patient, cache)
    except DicomInputError:
        raise
    except Exception as exc:
        syntax = ""
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "TransferSyntaxUID" in meta:
            syntax = f" (transfer syntax {meta.TransferSyntaxUID.name}, {meta.TransferSyntaxUID})"
        problem = " ".join(str(exc).split())  # pydicom's messages span lines; a log line must not
        raise DicomInputError(f"cannot decode pixel data{syntax}: {problem}", patient, info.path) from None
    if pixels.shape != (info.rows, info.columns):
        raise DicomInputError(
            f"pixel data has shape {pixels.shape}, expected one {info.rows}x{info.columns} frame", patient, info.path
        )
    padding = ds.get("PixelPaddingValue")
    if info.rescale is not None:
        slope, intercept = info.rescale
    else:
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return to_hu(pixels, slope, intercept, int(padding) if padding is not None else None)


def series_compression(slices: list[SliceInfo]) -> dict:
    """Transfer syntaxes of the chosen slices and whether any was compressed with loss."""

    syntaxes: dict[str, str] = {}
    evidence: list[str] = []
    seen = set()
    for s in slices:
        ds = s.dataset
        if ds is None or id(ds) in seen:
            continue
        seen.add(id(ds))
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if syntax is not None:
            syntaxes[str(syntax)] = syntax.name
        why = lossy_evidence(ds)
        if why and why not in evidence:
            evidence.append(why)
    return {
        "transfer_syntaxes": [{"uid": k, "name": v} for k, v in sorted(syntaxes.items())],
        "lossy": bool(evidence),
        "lossy_evidence": evidence,
    }


def _study(ds) -> dict:
    """The study date of the chosen series, only where the anonymizer shifted it (never a real date)."""
    temporal = text_of(ds, "LongitudinalTemporalInformationModified").upper()
    deidentified = text_of(ds, "PatientIdentityRemoved").upper() == "YES"
    shifted = deidentified and temporal == "MODIFIED"
    if shifted:
        note = "shifted by the anonymizer's per-patient offset (intervals kept)"
    elif deidentified and temporal == "REMOVED":
        note = "removed by the anonymizer"
    else:
        note = "not recorded: the images are not marked de-identified with modified dates"
    return {"study_date": text_of(ds, "StudyDate") or None if shifted else None, "study_date_note": note}


def _compressed(info: SliceInfo) -> bool:
    """Whether a slice's pixel data are compressed (decoding then costs 10-35 ms a 512 x 512 slice, against
    about 1 ms uncompressed: ``bench/measured/decode_syntaxes.txt``)."""
    meta = getattr(info.dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return bool(syntax is not None and syntax.is_compressed)


def _decode_slices(slices: list[SliceInfo], patient: str | None, workers: int = 1) -> np.ndarray:
    """The HU volume (int16) of sorted slices.

    With ``workers`` >= 2 (and ``fork``), a compressed series of at least ``MIN_SLICES_TO_SPLIT`` single-frame
    files of one size is decoded by two processes into one shared buffer, the second half by a forked child
    (the same values; the first half's error first, as in one process). Uncompressed pixel data decode faster
    than a second process starts, so they are read by one.
    """

    def decode_into(volume: np.ndarray, part: list[SliceInfo], start: int) -> None:
        cache: dict = {}
        for i, info in enumerate(part):
            volume[start + i] = read_pixels(info, patient, cache)

    sizes = {(s.rows, s.columns) for s in slices}
    split = (
        workers >= 2
        and len(slices) >= MIN_SLICES_TO_SPLIT
        and len(sizes) == 1
        and len({s.path for s in slices}) == len(slices)  # frames of one file are decoded together
        and any(_compressed(s) for s in slices)
        and forked.available()
    )
    if not split:
        cache: dict = {}
        return np.stack([read_pixels(s, patient, cache) for s in slices])
    shape = (len(slices), *sizes.pop())
    shared = mmap.mmap(-1, int(np.prod(shape)) * np.dtype(np.int16).itemsize)  # anonymous, shared with the child
    volume = np.frombuffer(shared, np.int16).reshape(shape)
    half = len(slices) // 2
    other = forked.start(decode_into, volume, slices[half:], half)
    with forked.running(other, patient):  # one process meets this half's error first
        decode_into(volume, slices[:half], 0)
    other.result(patient)
    return volume


def load_series(
    folder: str | Path,
    patient: str | None = None,
    series_uid: str | None = None,
    min_slices: int = MIN_SLICES,
    max_slices: int = MAX_SLICES,
    workers: int = 1,
):
    """Read a patient's folder into a HU ``SimpleITK.Image`` with true geometry.

    Args:
        folder: DICOM folder (anonymized).
        patient: Pseudonymous id, for messages.
        series_uid: Use this series instead of choosing one.
        min_slices: Minimum number of slices.
        max_slices: Maximum number of slices of the chosen series.
        workers: With 2 or more, two processes decode the pixel data (``_decode_slices``).

    Returns:
        ``(image, info)``: an int16 SimpleITK image whose axes follow the DICOM
        row, column and slice-normal directions, and a dict describing the choice, the
        compression (lossy or not), the study date where it was shifted, and the files skipped.
    """

    folder = Path(folder)
    infos, scan = scan_slice_infos(folder, patient, keep_datasets=True)
    patient_ids = {s.patient_id for s in infos}
    if len(patient_ids) > 1:
        raise DicomInputError(f"mixed patients in one folder: {len(patient_ids)} distinct PatientIDs", patient, folder)
    series = group_series(infos)
    chosen = choose_series(series, patient, series_uid, folder)
    slices, spacing = sort_slices(chosen, patient, min_slices, max_slices)
    volume = _decode_slices(slices, patient, workers)
    image = sitk.GetImageFromArray(volume)
    ref = slices[0]
    row, col = ref.orientation[:3], ref.orientation[3:]
    # PixelSpacing is (between rows, between columns) = (y, x) spacing.
    image.SetSpacing((ref.pixel_spacing[1], ref.pixel_spacing[0], spacing))
    image.SetOrigin(tuple(float(v) for v in ref.position))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row, col, ref.normal]).ravel()))
    compression = series_compression(slices)
    if compression["lossy"]:
        log.warning(
            "patient %s: the chosen series was compressed with loss: %s",
            patient,
            "; ".join(compression["lossy_evidence"]),
        )
    info = {
        "chosen_series": chosen.summary(),
        "series": [s.summary() for s in series],
        "shape_zyx": list(volume.shape),
        "spacing_xyz_mm": list(image.GetSpacing()),
        "hu_min": int(volume.min()),
        "hu_max": int(volume.max()),
        "compression": compression,
        "study": _study(ref.dataset),
        "files": scan.summary(),
    }
    return image, info
