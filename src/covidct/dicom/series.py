"""The images of a patient's folder, placed: one ``SliceInfo`` per image or frame (position,
orientation, spacing, rescale), grouped into series, the axial CT series chosen (and the choice
logged), its slices sorted along the normal with the spacing checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from covidct import config
from covidct.dicom.enhanced import frames, is_multiframe
from covidct.dicom.files import FolderScan, scan_folder, transfer_syntax_of
from covidct.errors import DicomInputError

log = logging.getLogger(__name__)


#: A series is axial when its slice normal is within this cosine of the patient z axis.
AXIAL_MIN_COSINE = 0.9


#: Relative deviation of a slice gap from the median gap that counts as non-uniform.
SPACING_TOLERANCE = 0.1


#: A series with more slices than this is refused before its pixels are stacked (a chest CT
#: at 0.5 mm has about 800; 5000 slices of 512 x 512 int16 are 2.4 GiB): config ``hu.max_slices``.
MAX_SLICES = config.default("hu.max_slices")


#: A series with fewer slices than this is not a volume: config ``hu.min_slices``.
MIN_SLICES = config.default("hu.min_slices")


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
        desc = (
            f"'{first.description}' "
            if first.description
            else f"kernel {first.convolution_kernel} "
            if first.convolution_kernel
            else ""
        )
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


def text_of(ds, keyword: str) -> str:
    """The stripped text of an attribute, "" when absent or empty."""
    return str(ds.get(keyword, "") or "").strip()


def _slice_infos_of(ds, path: Path, patient: str | None, keep_datasets: bool) -> list[SliceInfo]:
    """One SliceInfo per image of a CT file: one for a single-frame slice, one per frame of an
    enhanced multi-frame file (its geometry and rescale from the functional groups)."""

    common = dict(
        path=path,
        modality=text_of(ds, "Modality"),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        description=text_of(ds, "SeriesDescription"),
        patient_id=text_of(ds, "PatientID"),
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
    return [
        SliceInfo(
            series_uid=series_uid,
            image_type=_image_type(ds.get("ImageType")),
            position=np.array([float(v) for v in ds.ImagePositionPatient]),
            orientation=np.array([float(v) for v in ds.ImageOrientationPatient]),
            pixel_spacing=(float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
            instance_number=int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
            thickness=float(ds.SliceThickness) if ds.get("SliceThickness") not in (None, "") else None,
            **common,
        )
    ]


def scan_slice_infos(
    folder: str | Path, patient: str | None = None, keep_datasets: bool = False
) -> tuple[list[SliceInfo], FolderScan]:
    """Read the headers of every CT image in ``folder`` (recursively); skip and count the rest.

    Files are sorted into CT images and skips by ``covidct.dicom.files.scan_folder`` (the one
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
        raise DicomInputError(
            f"no axial CT series found (series present: {found}); non-axial series are refused", patient, folder
        )
    candidates.sort(key=lambda s: (-len(s.slices), np.inf if s.thickness is None else s.thickness, s.uid))
    chosen = candidates[0]
    if len(candidates) > 1:
        log.info(
            "patient %s: %d axial CT series; chose %s by the rule most slices, then thinnest; not chosen: %s",
            patient,
            len(candidates),
            chosen.label(),
            "; ".join(s.label() for s in candidates[1:]),
        )
    return chosen


def gaps_text(gaps: np.ndarray, spacing: float) -> str:
    """Every gap of a sorted series in one line, each told by the rank of the slice before it in position
    order (1 = the lowest), never by a file name or UID: a gap of about k spacings is k - 1 missing slices,
    any other uneven gap is told in mm.

    >>> gaps_text(np.array([5.0, 15.0, 5.0, 10.0, 7.5]), 5.0).split(": ", 1)[1]
    '3 slices missing: after slice 2 (2 missing), after 4 (1); uneven gap after slice 5 (7.50 mm)'
    """
    bad = np.abs(gaps - spacing) > SPACING_TOLERANCE * spacing
    missing, uneven = [], []
    for i in np.nonzero(bad)[0]:
        k = int(round(gaps[i] / spacing))
        if k >= 2 and abs(gaps[i] - k * spacing) <= SPACING_TOLERANCE * spacing:
            missing.append((i + 1, k - 1))
        else:
            uneven.append((i + 1, float(gaps[i])))
    parts = []
    if missing:
        n = sum(k for _, k in missing)
        told = ", ".join(
            f"after {'slice ' if j == 0 else ''}{rank} ({k}{' missing' if j == 0 else ''})"
            for j, (rank, k) in enumerate(missing)
        )
        parts.append(f"{n} slice{'s' if n > 1 else ''} missing: {told}")
    if uneven:
        told = ", ".join(
            f"after {'slice ' if j == 0 else ''}{rank} ({gap:.2f} mm)" for j, (rank, gap) in enumerate(uneven)
        )
        parts.append(f"uneven gap{'s' if len(uneven) > 1 else ''} {told}")
    return f"non-uniform slice spacing (median {spacing:.2f} mm, {len(gaps) + 1} slices): " + "; ".join(parts)


def sort_slices(
    series: SeriesInfo, patient: str | None = None, min_slices: int = MIN_SLICES, max_slices: int = MAX_SLICES
) -> tuple[list[SliceInfo], float]:
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
        raise DicomInputError(
            f"series has {len(slices)} slice(s); at least {min_slices} are needed for a volume", patient, folder
        )
    ref = slices[0]
    if len(slices) > max_slices:
        gib = len(slices) * ref.rows * ref.columns * 2 / 2**30
        raise DicomInputError(
            f"series has {len(slices)} slices of {ref.rows}x{ref.columns} ({gib:.2f} GiB as int16), more than "
            f"max_slices ({max_slices}): refused; raise max_slices if the series is real",
            patient,
            folder,
        )
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
        raise DicomInputError(
            f"duplicate slice position {dist[i]:.2f} mm along the slice normal (same position as {slices[i].name})",
            patient,
            slices[i + 1].path,
        )
    spacing = float(np.median(gaps))
    bad = np.abs(gaps - spacing) > SPACING_TOLERANCE * spacing
    if np.any(bad):
        raise DicomInputError(gaps_text(gaps, spacing), patient, folder)
    # In-plane position of the slices must follow the normal (no gantry tilt / shear).
    offsets = np.array([s.position - s.position.dot(normal) * normal for s in slices])
    if np.max(np.abs(offsets - offsets[0])) > 0.5 * min(ref.pixel_spacing):
        shift = float(np.linalg.norm(offsets[-1] - offsets[0]))
        extent = float(dist[-1] - dist[0])
        raise DicomInputError(
            f"slice positions do not lie along the slice normal: in-plane shift of {shift:.2f} mm over {extent:.2f} mm "
            f"({np.degrees(np.arctan2(shift, extent)):.1f} degrees; gantry tilt or sheared series)",
            patient,
            folder,
        )
    return slices, spacing
