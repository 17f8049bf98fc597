"""Lung masks measured against a reference: Dice, 95% Hausdorff distance and volume difference,
per lung and for both lungs.

The reference is either an RTSTRUCT (contours, lung ROIs found by name with configurable
patterns, rasterized onto the mask grid by ``covidct.dicom.rtstruct``) or a NIfTI label map
(1 right lung, 2 left lung, the pipeline's and lungmask's convention; any other non-zero
value counts as lung of unknown side). Array metrics are pure functions; ``evaluate``
reads the files and writes the JSON.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from covidct import config
from covidct.dicom.rtstruct import match_rois, rasterize, read_rtstruct
from covidct.errors import CovidctError
from covidct.io import atomic_path, read_volume, write_json
from covidct.lungs.labels import LEFT, RIGHT
from covidct.lungs.thorax import slice_hulls

log = logging.getLogger(__name__)

#: Default ROI name patterns (regular expressions, case-insensitive, full match) of an RTSTRUCT.
#: They cover the usual spellings: "Lung-Right", "Lung_R", "RT LUNG", "Right Lung", "lung r" ...
RIGHT_LUNG_PATTERN = r"(lung[ _-]*(right|rt|r)|(right|rt|r)[ _-]*lung)"
LEFT_LUNG_PATTERN = r"(lung[ _-]*(left|lt|l)|(left|lt|l)[ _-]*lung)"
#: Optional lesion ROIs (e.g. the tumour) added to the lungs for the "including lesions" figures.
LESION_PATTERN = config.default("lung_eval.lesion_roi")
#: Percentile of the Hausdorff distance (95: robust to a few stray voxels).
HD_PERCENTILE = 95.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two binary arrays (1.0 when both are empty).

    >>> dice(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.6666666666666666
    """
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff(
    a: np.ndarray, b: np.ndarray, spacing_zyx: tuple[float, float, float], percentile: float = HD_PERCENTILE
) -> float | None:
    """Percentile Hausdorff distance (mm) between the surfaces of two binary masks.

    The larger of the two directed ``percentile`` distances (surface of ``a`` to surface of
    ``b`` and back), as MONAI's ``compute_hausdorff_distance`` does.

    Args:
        a: Binary mask (z, y, x).
        b: Binary mask on the same grid.
        spacing_zyx: Voxel size (mm) along the array axes.
        percentile: 100 for the classical Hausdorff distance.

    Returns:
        Distance in mm; 0.0 when both are empty, None when only one is.
    """
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return None
    both = a | b
    box = tuple(slice(max(int(i.min()) - 2, 0), int(i.max()) + 3) for i in np.nonzero(both))
    a, b = a[box], b[box]
    sa, sb = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing_zyx)
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing_zyx)
    return float(max(np.percentile(to_b[sa], percentile), np.percentile(to_a[sb], percentile)))


def compare(mask_labels: np.ndarray, ref_labels: np.ndarray, spacing_zyx: tuple[float, float, float]) -> dict:
    """Dice, HD95 and volumes of a mask against a reference, per lung and for both.

    Args:
        mask_labels: The mask's labels (1 right, 2 left, other non-zero: lung of unknown side).
        ref_labels: The reference's labels, same convention and grid.
        spacing_zyx: Voxel size (mm) along the array axes.

    Returns:
        ``{"both": {...}, "right": {...}, "left": {...}}``, each with dice, hd95_mm, volume_ml,
        reference_ml, volume_diff_ml and volume_diff_percent; per-lung entries are None-valued
        when the mask does not tell the sides apart.
    """
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    out = {}
    sided = bool(np.isin(mask_labels, (RIGHT, LEFT)).any()) and not bool((mask_labels > LEFT).any())
    for name, value in (("both", None), ("right", RIGHT), ("left", LEFT)):
        if value is None:
            m, r = mask_labels > 0, ref_labels > 0
        else:
            m, r = mask_labels == value, ref_labels == value
        vol, ref = float(m.sum()) * voxel_ml, float(r.sum()) * voxel_ml
        entry = {"volume_ml": round(vol, 1), "reference_ml": round(ref, 1)}
        if value is not None and not sided:
            entry.update(dice=None, hd95_mm=None, volume_diff_ml=None, volume_diff_percent=None)
        else:
            hd = hausdorff(m, r, spacing_zyx)
            entry.update(
                dice=round(dice(m, r), 4),
                hd95_mm=None if hd is None else round(hd, 2),
                volume_diff_ml=round(vol - ref, 1),
                volume_diff_percent=round(100.0 * (vol - ref) / ref, 2) if ref > 0 else None,
            )
        out[name] = entry
    return out


def reference_labels(
    reference: str | Path,
    image,
    patient: str | None = None,
    right_pattern: str = RIGHT_LUNG_PATTERN,
    left_pattern: str = LEFT_LUNG_PATTERN,
    lesion_pattern: str | None = LESION_PATTERN,
    shift_mm: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Reference lung labels on the grid of ``image`` from an RTSTRUCT or a NIfTI label map.

    Args:
        reference: RTSTRUCT file (or folder with one) or a label-map volume (``.nii``/``.nii.gz``/``.nrrd``/...).
        image: SimpleITK image of the mask grid.
        patient: Pseudonymous id for messages.
        right_pattern: RTSTRUCT ROI name pattern of the right lung.
        left_pattern: RTSTRUCT ROI name pattern of the left lung.
        lesion_pattern: RTSTRUCT ROI name pattern of lesions to add for the "with lesions" figures;
            None or empty: none.
        shift_mm: (x, y) added to every RTSTRUCT contour vertex (see ``covidct.dicom.rtstruct.rasterize``).

    Returns:
        ``(labels, lesions, info)``: uint8 labels (z, y, x) 1 right, 2 left; a boolean lesion mask
        (None for a label map or when no ROI matches); and what was used (ROI names, kind).

    Raises:
        CovidctError: unreadable reference, no lung ROI matched, or a grid that does not fit.
    """

    path = Path(reference)
    if not path.exists():
        raise CovidctError("lung reference not found", patient, path)
    name = path.name.lower()
    if path.is_file() and name.endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")):
        try:
            ref = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise CovidctError(
                f"cannot read the reference label map ({exc.__class__.__name__})", patient, path
            ) from None
        if ref.GetDimension() != 3:
            raise CovidctError(f"reference label map has {ref.GetDimension()} dimensions, not 3", patient, path)
        ref = sitk.Resample(ref, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, ref.GetPixelID())
        arr = sitk.GetArrayFromImage(ref)
        if not (arr > 0).any():
            raise CovidctError(
                "reference label map is empty on the mask grid (different patient or space?)", patient, path
            )
        labels = np.where(arr == RIGHT, RIGHT, np.where(arr == LEFT, LEFT, np.where(arr > 0, 3, 0))).astype(np.uint8)
        return labels, None, {"kind": "label_map"}
    rois = read_rtstruct(path, patient)
    right, left = match_rois(rois, right_pattern), match_rois(rois, left_pattern)
    if not right or not left:
        missing = " and ".join(s for s, found in (("right", right), ("left", left)) if not found)
        raise CovidctError(
            f"no {missing} lung ROI in the RTSTRUCT (ROIs: {', '.join(sorted(rois))}); set the "
            f"lung ROI name patterns (lung_eval.right_roi / left_roi, or --right-roi/--left-roi)",
            patient,
            path,
        )
    overlap = {r.name for r in right} & {r.name for r in left}
    if overlap:
        raise CovidctError(
            f"ROI(s) {', '.join(sorted(overlap))} match both the right and the left lung pattern", patient, path
        )
    labels = np.zeros(image.GetSize()[::-1], np.uint8)
    labels[rasterize(right, image, patient, shift_mm)] = RIGHT
    labels[rasterize(left, image, patient, shift_mm) & (labels == 0)] = LEFT
    if not labels.any():
        raise CovidctError(
            "the lung ROIs do not overlap the mask grid (different patient or frame of reference?)", patient, path
        )
    lesion_rois = match_rois(rois, lesion_pattern) if lesion_pattern else []
    lesions = rasterize(lesion_rois, image, patient, shift_mm) if lesion_rois else None
    info = {
        "kind": "rtstruct",
        "right_rois": [r.name for r in right],
        "left_rois": [r.name for r in left],
        "lesion_rois": [r.name for r in lesion_rois],
        "contour_shift_mm": [float(v) for v in shift_mm],
    }
    return labels, lesions, info


def lesions_in_thorax(lesions: np.ndarray, ref_labels: np.ndarray) -> np.ndarray:
    """The part of a lesion ROI inside the lungs' outline: within the per-slice convex hull of either
    reference lung (each lung's own hull, so the mediastinum between them stays out).

    A tumour contour (GTV) may reach into the mediastinum or the chest wall; "lungs including
    lesions" keeps only the part inside a lung's outline on each slice.
    """

    hull = slice_hulls(ref_labels == RIGHT) | slice_hulls(ref_labels == LEFT)
    return lesions & hull


def evaluate(
    in_mask_labels: str | Path,
    reference: str | Path,
    out_json: str | Path,
    patient: str,
    right_pattern: str = RIGHT_LUNG_PATTERN,
    left_pattern: str = LEFT_LUNG_PATTERN,
    lesion_pattern: str | None = LESION_PATTERN,
    shift_mm: tuple[float, float] = (0.0, 0.0),
) -> dict:
    """Compare a mask (its label map) with a reference and write the metrics JSON.

    Args:
        in_mask_labels: The mask's labels (``results/lung_mask/<patient>_labels.nii.gz``); a binary
            mask works too (per-lung figures are then None).
        reference: RTSTRUCT or NIfTI label map (see ``reference_labels``).
        out_json: Output JSON.
        patient: Pseudonymous id (the only identifier written).
        right_pattern: See ``reference_labels``.
        left_pattern: See ``reference_labels``.
        lesion_pattern: See ``reference_labels``.
        shift_mm: See ``reference_labels``.

    Returns:
        The written dict: ``lungs`` (per lung and both), ``lungs_with_lesions`` (both lungs against
        the reference lungs plus the lesion ROIs inside the thorax; only with lesion ROIs) and ``reference``.
    """

    image = read_volume(in_mask_labels)
    mask = sitk.GetArrayFromImage(image)
    ref, lesions, info = reference_labels(
        reference, image, patient, right_pattern, left_pattern, lesion_pattern, shift_mm
    )
    spacing_zyx = tuple(float(s) for s in image.GetSpacing()[::-1])
    result = {"patient": patient, "reference": info, "lungs": compare(mask, ref, spacing_zyx)}
    if lesions is not None:
        extra = lesions_in_thorax(lesions, ref) & (ref == 0)
        with_lesions = ref.copy()
        with_lesions[extra] = 3
        both = compare((mask > 0).astype(np.uint8), (with_lesions > 0).astype(np.uint8), spacing_zyx)["both"]
        both["lesion_ml_added"] = round(float(extra.sum()) * float(np.prod(spacing_zyx)) / 1000.0, 1)
        result["lungs_with_lesions"] = both
    write_json(out_json, result)
    s = result["lungs"]
    log.info(
        "patient %s: lung mask vs reference Dice %.4f (right %s, left %s), HD95 %s mm",
        patient,
        s["both"]["dice"],
        s["right"]["dice"],
        s["left"]["dice"],
        s["both"]["hd95_mm"],
    )
    return result


TABLE_COLUMNS = (
    "patient_id",
    "dice",
    "dice_right",
    "dice_left",
    "hd95_mm",
    "hd95_right_mm",
    "hd95_left_mm",
    "volume_ml",
    "reference_ml",
    "volume_diff_ml",
    "dice_with_lesions",
)


def table_rows(results: list[dict]) -> list[dict]:
    """One row per evaluated patient (the ``evaluate`` dicts), for the cohort table."""
    rows = []
    for r in results:
        lungs = r["lungs"]
        rows.append(
            {
                "patient_id": r["patient"],
                "dice": lungs["both"]["dice"],
                "dice_right": lungs["right"]["dice"],
                "dice_left": lungs["left"]["dice"],
                "hd95_mm": lungs["both"]["hd95_mm"],
                "hd95_right_mm": lungs["right"]["hd95_mm"],
                "hd95_left_mm": lungs["left"]["hd95_mm"],
                "volume_ml": lungs["both"]["volume_ml"],
                "reference_ml": lungs["both"]["reference_ml"],
                "volume_diff_ml": lungs["both"]["volume_diff_ml"],
                "dice_with_lesions": r.get("lungs_with_lesions", {}).get("dice"),
            }
        )
    return rows


def write_table(results: list[dict], path: str | Path) -> None:
    """The cohort table of lung masks against their references (one row per patient's result, TABLE_COLUMNS;
    empty where None) as CSV, atomically."""
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in table_rows(results))
