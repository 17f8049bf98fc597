"""DICOM series to a Hounsfield-unit volume.

Reading (pydicom) is kept here; the pure array functions (``to_hu``) know nothing of files.
Which files of a folder are CT images is decided by ``covidct.dicom_files`` (shared with the
anonymizer); a multi-frame (Enhanced) CT file gives one ``SliceInfo`` per frame
(``covidct.enhanced_ct``); every installed decoder is used (``covidct.pixel_codecs``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from covidct.dicom_files import FolderScan, scan_folder, transfer_syntax_of
from covidct.errors import DicomInputError

log = logging.getLogger(__name__)

HU_AIR = -1000
HU_MIN = -1024
HU_MAX = 3071
#: Stored HU below this after rescaling are padding / outside the reconstruction circle.
HU_PADDING_BELOW = -1500
#: A series is axial when its slice normal is within this cosine of the patient z axis.
AXIAL_MIN_COSINE = 0.9
#: Relative deviation of a slice gap from the median gap that counts as non-uniform.
SPACING_TOLERANCE = 0.1
#: A series with more slices than this is refused before its pixels are stacked (a chest CT
#: at 0.5 mm has about 800; 5000 slices of 512 x 512 int16 are 2.4 GiB).
MAX_SLICES = 5000


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


@dataclass
class SliceInfo:
    """What we need of one DICOM image to place it in a volume."""

    path: Path
    series_uid: str
    modality: str
    image_type: tuple[str, ...]
    position: np.ndarray  # ImagePositionPatient (3,)
    orientation: np.ndarray  # ImageOrientationPatient (6,)
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing)
    rows: int
    columns: int
    description: str = ""
    instance_number: int | None = None
    patient_id: str = ""
    thickness: float | None = None  # SliceThickness (mm), if the file has one
    convolution_kernel: str = ""
    frame: int | None = None  # 0-based frame of a multi-frame file; None for a single-frame slice
    rescale: tuple[float, float] | None = None  # (slope, intercept) of a frame; None: the file's own
    dataset: object | None = field(default=None, repr=False)  # the whole pydicom Dataset, when kept

    @property
    def name(self) -> str:
        """How a message names the image: its file, and its frame in a multi-frame file."""
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame + 1}"

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:])


@dataclass
class SeriesInfo:
    """One series found in a patient's folder."""

    uid: str
    slices: list[SliceInfo] = field(default_factory=list)

    @property
    def first(self) -> SliceInfo:
        return self.slices[0]

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.first.image_type

    @property
    def thickness(self) -> float | None:
        """SliceThickness of the first slice, else the median gap between slice positions (mm);
        None for a single image without SliceThickness."""
        if self.first.thickness:
            return self.first.thickness
        dist = np.sort([float(np.dot(s.position, self.first.normal)) for s in self.slices])
        return float(np.median(np.diff(dist))) if len(dist) > 1 else None

    @property
    def plane(self) -> str:
        normal = np.abs(self.first.normal)
        return ("sagittal", "coronal", "axial")[int(np.argmax(normal))]

    def summary(self) -> dict:
        return {
            "series_uid": self.uid,
            "n_slices": len(self.slices),
            "modality": self.first.modality,
            "plane": self.plane,
            "image_type": "\\".join(self.first.image_type),
            "description": self.first.description,
            "convolution_kernel": self.first.convolution_kernel,
            "multiframe": self.first.frame is not None,
            "slice_thickness_mm": None if self.thickness is None else round(self.thickness, 3),
        }

    def label(self) -> str:
        """How log lines name the series: description (else kernel, if any), UID, slices, thickness."""
        first = self.first
        desc = (f"'{first.description}' " if first.description
                else f"kernel {first.convolution_kernel} " if first.convolution_kernel else "")
        thickness = "thickness unknown" if self.thickness is None else f"{self.thickness:g} mm"
        return f"{desc}{self.uid} ({len(self.slices)} slices, {thickness})"


def _image_type(value) -> tuple[str, ...]:
    """ImageType values, upper case; a single value comes as a plain string, not a list.

    >>> _image_type("ORIGINAL"), _image_type(["ORIGINAL", "primary", "LOCALIZER"])
    (('ORIGINAL',), ('ORIGINAL', 'PRIMARY', 'LOCALIZER'))
    """
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(str(v).upper() for v in value)


def _kernel(value) -> str:
    """ConvolutionKernel as one string (several values joined by a backslash)."""
    if value in (None, ""):
        return ""
    return "\\".join(str(v).strip() for v in ([value] if isinstance(value, str) else value))


def _text(ds, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _slice_infos_of(ds, path: Path, patient: str | None, keep_datasets: bool) -> list[SliceInfo]:
    """One SliceInfo per image of a CT file: one for a single-frame slice, one per frame of an
    enhanced multi-frame file (its geometry and rescale from the functional groups)."""
    from covidct.enhanced_ct import frames, is_multiframe

    common = dict(
        path=path,
        modality=_text(ds, "Modality"),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        description=_text(ds, "SeriesDescription"),
        patient_id=_text(ds, "PatientID"),
        convolution_kernel=_kernel(ds.get("ConvolutionKernel")),
        dataset=ds if keep_datasets else None,
    )
    series_uid = str(ds.get("SeriesInstanceUID", "unknown"))
    if is_multiframe(ds):
        found = frames(ds, path, patient)
        stacks = sorted({f.stack_id for f in found})
        return [
            SliceInfo(
                series_uid=series_uid if len(stacks) < 2 else f"{series_uid} stack {f.stack_id or '(none)'}",
                image_type=f.frame_type,
                position=f.position,
                orientation=f.orientation,
                pixel_spacing=f.pixel_spacing,
                instance_number=f.in_stack_position if f.in_stack_position is not None else f.index + 1,
                thickness=f.thickness,
                frame=f.index,
                rescale=(f.slope, f.intercept),
                **common,
            )
            for f in found
        ]
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if k not in ds]
    if missing:
        raise DicomInputError(f"image lacks {', '.join(missing)}: cannot place it in a volume", patient, path)
    return [SliceInfo(
        series_uid=series_uid,
        image_type=_image_type(ds.get("ImageType")),
        position=np.array([float(v) for v in ds.ImagePositionPatient]),
        orientation=np.array([float(v) for v in ds.ImageOrientationPatient]),
        pixel_spacing=(float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
        instance_number=int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
        thickness=float(ds.SliceThickness) if ds.get("SliceThickness") not in (None, "") else None,
        **common,
    )]


def scan_slice_infos(folder: str | Path, patient: str | None = None,
                     keep_datasets: bool = False) -> tuple[list[SliceInfo], FolderScan]:
    """Read the headers of every CT image in ``folder`` (recursively); skip and count the rest.

    Files are sorted into CT images and skips by ``covidct.dicom_files.scan_folder`` (the one
    discovery the anonymizer shares): hidden files, files that are not DICOM (PNG, NIfTI, PDF,
    text, executables, ...), DICOMDIR, non-image DICOM objects (SR, PR, KO, RTSTRUCT, SEG, ...)
    and images that are not CT (secondary capture, PET, ...) are skipped and logged by rank.

    Args:
        folder: The patient's DICOM folder.
        patient: Pseudonymous id, for error messages.
        keep_datasets: Read each file whole, once, and keep its dataset (pixel data
            still encoded) in ``SliceInfo.dataset``, so that nothing is read twice.

    Returns:
        One SliceInfo per image (per frame of a multi-frame file), and the scan (its skips).

    Raises:
        DicomInputError: missing or empty folder, a broken DICOM file (unreadable, a CT image
            without pixel data: truncated), an image without geometry, no CT image at all.
    """
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise DicomInputError("DICOM folder does not exist", patient, folder)
    scan = scan_folder(folder)
    if not scan.files:
        raise DicomInputError("DICOM folder is empty", patient, folder)
    infos = []
    for path in scan.candidates:
        try:
            # without keep_datasets, large values (pixels) stay on disk; force: a bare data set
            # without preamble that the scan recognised
            ds = pydicom.dcmread(path, defer_size=None if keep_datasets else 1024, force=True)
        except Exception as exc:  # truncated or corrupt headers raise many kinds
            problem = " ".join(str(exc).split())
            raise DicomInputError(f"unreadable DICOM file ({type(exc).__name__}: {problem})", patient, path) from None
        if not scan.accept(path, ds):
            continue
        if "PixelData" not in ds:
            raise DicomInputError("image without pixel data: the file is truncated or corrupt", patient, path)
        if not ds.file_meta.get("TransferSyntaxUID"):  # a bare data set: name the encoding it was read with
            ds.file_meta.TransferSyntaxUID = transfer_syntax_of(ds)
        try:
            infos.extend(_slice_infos_of(ds, path, patient, keep_datasets))
        except (ValueError, TypeError, AttributeError) as exc:
            raise DicomInputError(f"malformed geometry tags ({exc})", patient, path) from None
    scan.log_skips(patient)
    if not infos:
        raise DicomInputError(f"no CT image in the folder (skipped: {scan.describe_skips()})", patient, folder)
    return infos, scan


def read_slice_infos(folder: str | Path, patient: str | None = None, keep_datasets: bool = False) -> list[SliceInfo]:
    """The CT images of ``folder``, as ``scan_slice_infos`` finds them (without the scan)."""
    return scan_slice_infos(folder, patient, keep_datasets)[0]


def group_series(infos: list[SliceInfo]) -> list[SeriesInfo]:
    """Group slices by SeriesInstanceUID, largest series first."""
    by_uid: dict[str, SeriesInfo] = {}
    for info in infos:
        by_uid.setdefault(info.series_uid, SeriesInfo(info.series_uid)).slices.append(info)
    return sorted(by_uid.values(), key=lambda s: (-len(s.slices), s.uid))


def choose_series(
    series: list[SeriesInfo], patient: str | None = None, series_uid: str | None = None, folder: Path | None = None
) -> SeriesInfo:
    """Choose the CT axial series: the override if given, else by the rule below.

    Rule: among the axial CT series (localizers and coronal/sagittal reformats are refused),
    the one with most slices; of those with equally many, the thinnest (SliceThickness, else
    the gap between slice positions); then the smallest SeriesInstanceUID. The choice and the
    series passed over are logged, with their descriptions.

    Raises:
        DicomInputError: the override is absent, or no axial CT series exists.
    """
    if series_uid:
        for s in series:
            if s.uid == series_uid:
                if s.plane != "axial":
                    raise DicomInputError(f"series {series_uid} is {s.plane}, not axial", patient, folder)
                return s
        raise DicomInputError(f"configured series {series_uid} not found among {len(series)} series", patient, folder)
    candidates = []
    for s in series:
        if s.first.modality not in ("CT", ""):
            reason = f"modality {s.first.modality}"
        elif s.is_localizer:
            reason = "localizer"
        elif abs(s.first.normal[2]) < AXIAL_MIN_COSINE:
            reason = f"{s.plane} orientation (only axial series are used)"
        else:
            candidates.append(s)
            continue
        log.info("patient %s: series %s (%d images) skipped: %s", patient, s.uid, len(s.slices), reason)
    if not candidates:
        found = "; ".join(f"{len(s.slices)} images, {s.plane}, {s.first.modality or 'no modality'}" for s in series)
        raise DicomInputError(f"no axial CT series found (series present: {found}); non-axial series are refused",
                              patient, folder)
    candidates.sort(key=lambda s: (-len(s.slices), np.inf if s.thickness is None else s.thickness, s.uid))
    chosen = candidates[0]
    if len(candidates) > 1:
        log.info("patient %s: %d axial CT series; chose %s by the rule most slices, then thinnest; not chosen: %s",
                 patient, len(candidates), chosen.label(), "; ".join(s.label() for s in candidates[1:]))
    return chosen


def sort_slices(series: SeriesInfo, patient: str | None = None, min_slices: int = 3,
                max_slices: int = MAX_SLICES) -> tuple[list[SliceInfo], float]:
    """Sort slices by position along the slice normal and check the spacing.

    Args:
        series: The chosen series.
        patient: Pseudonymous id, for error messages.
        min_slices: Fewer slices than this is an error.
        max_slices: More slices than this is an error (refused before any pixel is stacked).

    Returns:
        The sorted slices (ascending along the normal) and the slice spacing in mm.

    Raises:
        DicomInputError: too few or too many slices, inconsistent orientation or matrix,
            duplicate positions, or non-uniform spacing (a missing slice).
    """
    slices = series.slices
    folder = slices[0].path.parent
    if len(slices) < min_slices:
        raise DicomInputError(f"series has {len(slices)} slice(s); at least {min_slices} are needed for a volume",
                              patient, folder)
    ref = slices[0]
    if len(slices) > max_slices:
        gib = len(slices) * ref.rows * ref.columns * 2 / 2**30
        raise DicomInputError(
            f"series has {len(slices)} slices of {ref.rows}x{ref.columns} ({gib:.2f} GiB as int16), more than "
            f"max_slices ({max_slices}): refused; raise max_slices if the series is real", patient, folder)
    for s in slices[1:]:
        if not np.allclose(s.orientation, ref.orientation, atol=1e-3):
            raise DicomInputError("inconsistent ImageOrientationPatient between slices of one series", patient, s.path)
        if (s.rows, s.columns) != (ref.rows, ref.columns) or not np.allclose(s.pixel_spacing, ref.pixel_spacing):
            raise DicomInputError("slices of one series differ in matrix size or pixel spacing", patient, s.path)
    normal = ref.normal
    dist = np.array([float(np.dot(s.position, normal)) for s in slices])
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    dist = dist[order]
    gaps = np.diff(dist)
    if np.any(gaps < 1e-3):
        i = int(np.argmin(gaps))
        raise DicomInputError(f"duplicate slice position {dist[i]:.2f} mm along the slice normal (same position "
                              f"as {slices[i].name})", patient, slices[i + 1].path)
    spacing = float(np.median(gaps))
    bad = np.abs(gaps - spacing) > SPACING_TOLERANCE * spacing
    if np.any(bad):
        i = int(np.argmax(bad))
        raise DicomInputError(
            f"non-uniform slice spacing: gap of {gaps[i]:.2f} mm between positions {dist[i]:.2f} and "
            f"{dist[i + 1]:.2f} mm (median {spacing:.2f} mm); a slice is missing", patient, slices[i + 1].path)
    # In-plane position of the slices must follow the normal (no gantry tilt / shear).
    offsets = np.array([s.position - s.position.dot(normal) * normal for s in slices])
    if np.max(np.abs(offsets - offsets[0])) > 0.5 * min(ref.pixel_spacing):
        shift = float(np.linalg.norm(offsets[-1] - offsets[0]))
        extent = float(dist[-1] - dist[0])
        raise DicomInputError(
            f"slice positions do not lie along the slice normal: in-plane shift of {shift:.2f} mm over {extent:.2f} mm "
            f"({np.degrees(np.arctan2(shift, extent)):.1f} degrees; gantry tilt or sheared series)", patient, folder)
    return slices, spacing


def _refuse_undecodable(ds, info: SliceInfo, patient: str | None) -> None:
    """Refuse, with a clear message, a transfer syntax no installed decoder reads, or native
    pixel data shorter than the image (a truncated file)."""
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and not syntax.is_transfer_syntax:  # newer than the installed pydicom (JPEG XL, ...)
        raise DicomInputError(f"transfer syntax {syntax} is unknown to the installed pydicom: no decoder reads it",
                              patient, info.path)
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:  # pydicom knows no decoder for it at all
            decoder = None
        if decoder is None or not decoder.is_available:
            options = "; ".join(decoder.missing_dependencies) if decoder is not None else "none known to pydicom"
            raise DicomInputError(f"transfer syntax {syntax.name} ({syntax}) cannot be decoded: no decoder is "
                                  f"installed (options: {options})", patient, info.path)
    elif "PixelData" in ds:
        frames = int(ds.get("NumberOfFrames") or 1) if info.frame is not None else 1
        expected = (info.rows * info.columns * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated) // 8
                    * frames)
        if len(ds.PixelData) < expected:
            raise DicomInputError(f"pixel data has {len(ds.PixelData)} of {expected} bytes: the file is truncated",
                                  patient, info.path)


def _decode(ds, info: SliceInfo, patient: str | None, cache: dict | None) -> np.ndarray:
    """Stored values of one image: the file's only frame, or frame ``info.frame`` of a multi-frame
    file (all its frames decoded once and kept in ``cache`` when one is given)."""
    from pydicom.pixels import pixel_array

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

    Every transfer syntax with an installed decoder is read (``covidct.pixel_codecs``); the
    rescale is the frame's own (functional groups) or the file's RescaleSlope/Intercept.

    Args:
        info: The slice.
        patient: Pseudonymous id, for messages.
        cache: Optional dict in which the frames of the last multi-frame file read are kept.

    Raises:
        DicomInputError: pixel data cannot be decoded (a transfer syntax without an installed
            decoder, named with its UID; corrupt or truncated data).
    """
    import pydicom

    from covidct.pixel_codecs import register_decoders

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
        raise DicomInputError(f"pixel data has shape {pixels.shape}, expected one {info.rows}x{info.columns} frame",
                              patient, info.path)
    padding = ds.get("PixelPaddingValue")
    if info.rescale is not None:
        slope, intercept = info.rescale
    else:
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return to_hu(pixels, slope, intercept, int(padding) if padding is not None else None)


def _compression(slices: list[SliceInfo]) -> dict:
    """Transfer syntaxes of the chosen slices and whether any was compressed with loss."""
    from covidct.pixel_codecs import lossy_evidence

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
    temporal = _text(ds, "LongitudinalTemporalInformationModified").upper()
    deidentified = _text(ds, "PatientIdentityRemoved").upper() == "YES"
    shifted = deidentified and temporal == "MODIFIED"
    if shifted:
        note = "shifted by the anonymizer's per-patient offset (intervals kept)"
    elif deidentified and temporal == "REMOVED":
        note = "removed by the anonymizer"
    else:
        note = "not recorded: the images are not marked de-identified with modified dates"
    return {"study_date": _text(ds, "StudyDate") or None if shifted else None, "study_date_note": note}


def load_series(
    folder: str | Path, patient: str | None = None, series_uid: str | None = None, min_slices: int = 3,
    max_slices: int = MAX_SLICES,
):
    """Read a patient's folder into a HU ``SimpleITK.Image`` with true geometry.

    Args:
        folder: DICOM folder (anonymized).
        patient: Pseudonymous id, for messages.
        series_uid: Use this series instead of choosing one.
        min_slices: Minimum number of slices.
        max_slices: Maximum number of slices of the chosen series.

    Returns:
        ``(image, info)``: an int16 SimpleITK image whose axes follow the DICOM
        row, column and slice-normal directions, and a dict describing the choice, the
        compression (lossy or not), the study date where it was shifted, and the files skipped.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    infos, scan = scan_slice_infos(folder, patient, keep_datasets=True)
    patient_ids = {s.patient_id for s in infos}
    if len(patient_ids) > 1:
        raise DicomInputError(f"mixed patients in one folder: {len(patient_ids)} distinct PatientIDs", patient, folder)
    series = group_series(infos)
    chosen = choose_series(series, patient, series_uid, folder)
    slices, spacing = sort_slices(chosen, patient, min_slices, max_slices)
    cache: dict = {}
    volume = np.stack([read_pixels(s, patient, cache) for s in slices])
    cache.clear()
    image = sitk.GetImageFromArray(volume)
    ref = slices[0]
    row, col = ref.orientation[:3], ref.orientation[3:]
    # PixelSpacing is (between rows, between columns) = (y, x) spacing.
    image.SetSpacing((ref.pixel_spacing[1], ref.pixel_spacing[0], spacing))
    image.SetOrigin(tuple(float(v) for v in ref.position))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row, col, ref.normal]).ravel()))
    compression = _compression(slices)
    if compression["lossy"]:
        log.warning("patient %s: the chosen series was compressed with loss: %s", patient,
                    "; ".join(compression["lossy_evidence"]))
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
