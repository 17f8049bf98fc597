"""The phantom written as a real CT series: one file per slice, shuffled file names, varying
orientation sign, slice order, pixel encoding and padding, fake identifiers in the headers, an optional
localizer; and its truth (labels, lesion masks, score) as NIfTI and JSON."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from scipy import ndimage

from covidct.demo.anatomy import (
    LABEL_LEFT_LUNG,
    LABEL_RIGHT_LUNG,
    LESION_CONSOLIDATION,
    LESION_GGO,
    Phantom,
    fov_disc,
    make_phantom,
)
from covidct.demo.identities import MANUFACTURERS, inject_identifiers, localizer_series_uid, scan_identity
from covidct.demo.spec import PhantomSpec
from covidct.hounsfield import HU_AIR
from covidct.io import atomic_dir, write_json, write_volume
from covidct.lungs.lobes import LOBES, ZONES, geometric_zones
from covidct.severity import lobe_score
from covidct.severity.readout import HIGH_OPACITY_HU

if TYPE_CHECKING:
    import SimpleITK

log = logging.getLogger(__name__)


CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


LOCALIZER_SIZE = 128


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) with up to 4 decimals."""
    text = f"{round(float(value), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _stored_values(hu: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """HU -> stored pixel values (exact: 1/slope and the intercept are integers)."""
    stored = np.rint((hu.astype(np.float64) - spec.intercept) / spec.rescale_slope)
    dtype = np.uint16 if spec.unsigned else np.int16
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"{spec.patient_id}: HU range does not fit {dtype.__name__} with this rescale")
    return stored.astype(dtype)


def _file_meta(sop_uid: str):

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _common_dataset(spec: PhantomSpec, identity: dict[str, str], image_type: list[str]):

    rng = np.random.default_rng([spec.seed, 7])
    manufacturer, model, kernel = MANUFACTURERS[int(rng.integers(len(MANUFACTURERS)))]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = image_type
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.ConvolutionKernel = kernel
    ds.KVP = "120"
    ds.XRayTubeCurrent = str(int(rng.integers(80, 300)))
    ds.BodyPartExamined = "CHEST"
    # A row cosine of (-1, 0, 0) is what a feet-first supine acquisition gives.
    ds.PatientPosition = "FFS" if spec.flip_x else "HFS"
    ds.PositionReferenceIndicator = ""
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    inject_identifiers(ds, identity)
    return ds


def _write_localizer(phantom: Phantom, spec: PhantomSpec, out_dir: Path, identity: dict[str, str], name: str) -> Path:
    """One coronal LOCALIZER image: the mean attenuation through the patient, 128 x 128."""
    ds = _common_dataset(spec, identity, ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    nz, ny, nx = phantom.hu.shape
    sx, sy, sz = phantom.spacing
    x0, y0, z0 = phantom.origin
    projection = phantom.hu.astype(np.float32).mean(axis=1)  # (z, x)
    n = LOCALIZER_SIZE
    col_spacing = nx * sx / n
    row_spacing = nz * sz / n
    x_first = x0 - sx / 2 + col_spacing / 2
    z_first = z0 + (nz - 0.5) * sz - row_spacing / 2  # row 0 is the most superior
    cols = (x_first + col_spacing * np.arange(n) - x0) / sx
    rows = (z_first - row_spacing * np.arange(n) - z0) / sz
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    image = ndimage.map_coordinates(projection, [rr, cc], order=1, mode="nearest")
    pixels = np.clip((image - HU_AIR) * 3.0, 0, 4095).astype(np.uint16)
    ds.SeriesDescription = "SCOUT AP"
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    ds.SOPInstanceUID = f"{localizer_series_uid(identity['SeriesInstanceUID'])}.1"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    ds.ImagePositionPatient = [_ds(x_first), _ds(y0 + (ny - 1) / 2 * sy), _ds(z_first)]
    ds.PixelSpacing = [_ds(row_spacing), _ds(col_spacing)]
    ds.Rows = n
    ds.Columns = n
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "2000"
    ds.WindowWidth = "4000"
    ds.PixelData = pixels.tobytes()
    ds.file_meta = _file_meta(ds.SOPInstanceUID)
    path = out_dir / name
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(phantom: Phantom, spec: PhantomSpec, out_dir: Path, identity: dict[str, str]) -> list[Path]:
    """Write the phantom as a CT series, one file per slice (plus the localizer, if asked).

    File names are random (``IM<4 digits>.dcm``), never in position order. With
    ``flip_x`` the row cosine is (-1, 0, 0) and each slice's pixels are mirrored, its
    ImagePositionPatient being that of the patient's leftmost column.

    Args:
        phantom: From ``make_phantom(spec)``.
        spec: The specification (acquisition variants).
        out_dir: Folder to write into (created if needed).
        identity: Fake identifiers, as from ``fake_identity``.

    Returns:
        The written files (axial slices first, in z order, then the localizer).

    Raises:
        ValueError: the padding value is also a real stored value in the field of view.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = phantom.hu.shape
    sx, sy, sz = phantom.spacing
    x0, y0, z0 = phantom.origin
    stored = _stored_values(phantom.hu, spec)
    if spec.padding is not None:
        fov = fov_disc(spec)
        if np.any(stored[:, fov] == spec.padding):
            raise ValueError(f"{spec.patient_id}: padding value {spec.padding} occurs as a real pixel value")
        stored[:, ~fov] = spec.padding
    if spec.flip_x:
        stored = stored[:, :, ::-1]
    signed = not spec.unsigned
    bits_stored = 12 if (spec.unsigned and int(stored.max()) < 4096) else 16

    ds = _common_dataset(spec, identity, ["ORIGINAL", "PRIMARY", "AXIAL"])
    ds.SeriesNumber = "2"
    ds.AcquisitionNumber = "1"
    ds.SliceThickness = _ds(sz)
    ds.SpacingBetweenSlices = _ds(sz)
    ds.ReconstructionDiameter = _ds(nx * sx)
    ds.ImageOrientationPatient = ["-1" if spec.flip_x else "1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept = _ds(spec.intercept)
    ds.RescaleSlope = _ds(spec.rescale_slope)
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    if spec.padding is not None:
        ds.add_new(0x00280120, "SS" if signed else "US", int(spec.padding))  # PixelPaddingValue
    x_first = x0 + (nx - 1) * sx if spec.flip_x else x0

    rng = np.random.default_rng([spec.seed, 6])
    names = [f"IM{n:04d}.dcm" for n in rng.choice(np.arange(1000, 10000), size=nz + 1, replace=False)]
    series_uid = identity["SeriesInstanceUID"]
    paths = []
    for k in range(nz):
        instance = nz - k if spec.descending else k + 1
        z = z0 + k * sz
        ds.InstanceNumber = str(instance)
        ds.SOPInstanceUID = f"{series_uid}.{instance}"
        ds.ImagePositionPatient = [_ds(x_first), _ds(y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2" if signed else "<u2").tobytes()
        ds.file_meta = _file_meta(ds.SOPInstanceUID)
        path = out_dir / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    if spec.localizer:
        paths.append(_write_localizer(phantom, spec, out_dir, identity, names[nz]))
    return paths


def label_image(array: np.ndarray, phantom: Phantom) -> SimpleITK.Image:
    """A SimpleITK image of a canonical array: identity direction, the phantom's geometry."""

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(v) for v in phantom.spacing))
    image.SetOrigin(tuple(float(v) for v in phantom.origin))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def truth_paths(truth_dir: str | Path, patient_id: str) -> dict[str, Path]:
    """The truth files ``write_patient`` writes for a patient: ``json``, ``lung``, ``lesion``, ``lobes``."""
    truth_dir = Path(truth_dir)
    return {
        "json": truth_dir / f"{patient_id}.json",
        "lung": truth_dir / f"{patient_id}_lung.nii.gz",
        "lesion": truth_dir / f"{patient_id}_lesion.nii.gz",
        "lobes": truth_dir / f"{patient_id}_lobes.nii.gz",
    }


def truth_readout(phantom: Phantom) -> dict:
    """The severity read-out's truth, counted on the phantom's own grid from its lobes, lungs,
    lesions and HU: per lobe and per geometric zone volume, lesion volume, percent and 0-5 score,
    CTSS and zone score; PO and PHO per lung and total; ground-glass and consolidation percent of
    the lung (from the lesion kinds)."""

    voxel_ml = float(np.prod(phantom.spacing)) / 1000.0
    lesion = phantom.lesion_mask > 0
    high = lesion & (phantom.hu > HIGH_OPACITY_HU)

    def pct(part: np.ndarray, whole: np.ndarray) -> float:
        n = int(np.count_nonzero(whole))
        return 100.0 * int(np.count_nonzero(part & whole)) / n if n else 0.0

    def regions(scheme, codes: np.ndarray) -> tuple[dict, int]:
        rows = {}
        for region in scheme.regions:
            inside = codes == region.code
            percent = pct(lesion, inside)
            rows[region.name] = {
                "volume_ml": round(int(np.count_nonzero(inside)) * voxel_ml, 3),
                "lesion_ml": round(int(np.count_nonzero(inside & lesion)) * voxel_ml, 3),
                "percent": round(percent, 4),
                "score": lobe_score(percent),
            }
        return rows, sum(r["score"] for r in rows.values())

    lobes, ctss = regions(LOBES, phantom.lobes)
    zones, zone_score = regions(ZONES, geometric_zones(phantom.lung_labels))
    lung = phantom.lung_labels > 0
    kind = phantom.lesion_kind if phantom.lesion_kind is not None else phantom.lesion_mask
    return {
        "lobes": lobes,
        "ctss": ctss,
        "zones": zones,
        "zone_score": zone_score,
        "po": round(pct(lesion, lung), 4),
        "pho": round(pct(high, lung), 4),
        "lungs": {
            name: {
                "po": round(pct(lesion, phantom.lung_labels == side), 4),
                "pho": round(pct(high, phantom.lung_labels == side), 4),
            }
            for name, side in (("right", LABEL_RIGHT_LUNG), ("left", LABEL_LEFT_LUNG))
        },
        "ggo_percent": round(pct(kind == LESION_GGO, lung), 4),
        "consolidation_percent": round(pct(kind == LESION_CONSOLIDATION, lung), 4),
        "high_opacity_above_hu": HIGH_OPACITY_HU,
    }


def write_patient(spec: PhantomSpec, dicom_dir: Path, truth_dir: Path) -> dict:
    """Generate one patient: its DICOM folder (atomic) and its truth files.

    Truth files: ``<pid>.json`` (with the severity read-out's truth, ``truth_readout``),
    ``<pid>_lung.nii.gz`` (labels 1 right, 2 left), ``<pid>_lesion.nii.gz`` and
    ``<pid>_lobes.nii.gz`` (lungmask's lobe labels), the masks in the same physical space as the
    DICOM series.

    Args:
        spec: The patient.
        dicom_dir: The patient's DICOM folder (replaced if present).
        truth_dir: Folder for the truth files.

    Returns:
        The truth dict written to ``<pid>.json``.
    """
    started = time.perf_counter()
    phantom = make_phantom(spec)
    identity = scan_identity(spec.seed, spec.person_seed, spec.days_after)
    with atomic_dir(dicom_dir) as tmp:
        files = write_series(phantom, spec, tmp, identity)
    truth_dir = Path(truth_dir)
    pid = spec.patient_id
    voxel_ml = float(np.prod(phantom.spacing)) / 1000.0
    labels = phantom.lung_labels
    kind = phantom.lesion_kind if phantom.lesion_kind is not None else phantom.lesion_mask
    truth = {
        "patient_id": pid,
        "label": int(spec.covid),
        "score": round(phantom.score, 6),
        "target_score": spec.target_score,
        "lung_volume_ml": round(float(np.count_nonzero(labels)) * voxel_ml, 3),
        "right_lung_volume_ml": round(float(np.count_nonzero(labels == LABEL_RIGHT_LUNG)) * voxel_ml, 3),
        "left_lung_volume_ml": round(float(np.count_nonzero(labels == LABEL_LEFT_LUNG)) * voxel_ml, 3),
        "lesion_volume_ml": round(float(np.count_nonzero(phantom.lesion_mask)) * voxel_ml, 3),
        "ggo_volume_ml": round(float(np.count_nonzero(kind == LESION_GGO)) * voxel_ml, 3),
        "consolidation_volume_ml": round(float(np.count_nonzero(kind == LESION_CONSOLIDATION)) * voxel_ml, 3),
        "n_slices": spec.n_slices,
        "matrix": spec.matrix,
        "spacing": list(phantom.spacing),
        "origin": list(phantom.origin),
        "flip_x": spec.flip_x,
        "descending": spec.descending,
        "unsigned": spec.unsigned,
        "padding": spec.padding,
        "localizer": spec.localizer,
        "rescale_slope": spec.rescale_slope,
        "rescale_intercept": spec.intercept,
        "n_files": len(files),
        "identity": identity,
        "person_seed": spec.person_seed if spec.person_seed is not None else spec.seed,
        "days_after": spec.days_after,
        "lobe_involvement": list(spec.lobe_involvement) if spec.lobe_involvement is not None else None,
        "readout": truth_readout(phantom),
    }
    paths = truth_paths(truth_dir, pid)
    write_volume(paths["lung"], label_image(labels, phantom))
    write_volume(paths["lesion"], label_image(phantom.lesion_mask, phantom))
    write_volume(paths["lobes"], label_image(phantom.lobes, phantom))
    write_json(paths["json"], truth)
    log.info("patient %s: %d DICOM files and truth written in %.2f s", pid, len(files), time.perf_counter() - started)
    return truth
