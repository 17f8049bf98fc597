"""Severity of COVID-19 lung involvement: the original study's classes of the score (percent of
lung involved): 0-19 Low, 20-39 Mild, 40-59 Moderate, 60-79 Severe, >=80 Critical; the study's
CTSI shortcut (score // 4, 0-25), which is *not* a lobe score; and the radiologists' lobe score of
Pan et al. (Radiology 2020; 295:715-721): each lobe 0-5 by the share of it involved, summed over the
five lobes into the 25-point CT severity score (CTSS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Severity classes of the original study: lower bounds of Low, Mild, Moderate, Severe, Critical.
SEVERITY_BOUNDS = (0, 20, 40, 60, 80)


SEVERITY_CLASSES = ("Low", "Mild", "Moderate", "Severe", "Critical")


#: Upper bounds (percent of the lobe involved, inclusive) of the lobe scores 2, 3 and 4 of Pan et
#: al. 2020 (0 none, 1 < 5 %, 2 5-25 %, 3 26-50 %, 4 51-75 %, 5 > 75 %), read on a continuous
#: percentage: 1 below 5, 2 from 5 up to 25, 3 above 25 up to 50, 4 above 50 up to 75, 5 above 75.
LOBE_SCORE_MIN_2 = 5.0


LOBE_SCORE_MAX_2_3_4 = (25.0, 50.0, 75.0)


#: The highest lobe (or zone) score.
LOBE_SCORE_MAX = 5


def severity_class(score: float) -> int:
    """Index of the severity class of a score (0 Low .. 4 Critical).

    >>> [severity_class(s) for s in (0, 19.9, 20, 59, 60, 79.99, 80, 100)]
    [0, 0, 1, 2, 3, 3, 4, 4]
    """
    if not 0 <= score <= 100:
        raise ValueError(f"score {score} outside 0-100")
    return int(np.searchsorted(SEVERITY_BOUNDS, score, side="right") - 1)


def ctsi(score: float) -> int:
    """The original study's "CT severity index" shortcut: score // 4 (0-25), from a whole-lung
    percentage. It is not the 25-point CT severity score of the lobes (``lobe_score``, summed).

    >>> [ctsi(s) for s in (0, 3.9, 4, 50, 100)]
    [0, 0, 1, 12, 25]
    """
    return int(float(score) // 4)


def severity_classes(scores: Sequence[float]) -> np.ndarray:
    """Severity class index (0 Low .. 4 Critical) of each score, scores clipped to 0-100.

    >>> severity_classes([-3, 19.9, 20, 150]).tolist()
    [0, 0, 1, 4]
    """
    return np.array([severity_class(float(np.clip(s, 0, 100))) for s in scores], dtype=int)


def lobe_score(percent: float) -> int:
    """Pan et al.'s 0-5 score of one lobe (or zone) from the percent of it involved.

    0: nothing involved; 1: below 5 %; 2: 5-25 %; 3: above 25 up to 50 %; 4: above 50 up to 75 %;
    5: above 75 %.

    >>> [lobe_score(p) for p in (0, 0.01, 4.99, 5, 25, 25.01, 50, 50.5, 75, 75.01, 100)]
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    """
    p = float(percent)
    if not 0 <= p <= 100:
        raise ValueError(f"percent involved {p} outside 0-100")
    if p == 0:
        return 0
    if p < LOBE_SCORE_MIN_2:
        return 1
    return 2 + int(np.searchsorted(LOBE_SCORE_MAX_2_3_4, p, side="left"))


#: Lesion-type codes of a type map (the infection U-Net's lesion-type head, a read-out's types).
TYPE_GGO, TYPE_CONSOLIDATION = 1, 2


#: The lesion types by code, with the name their figures carry (``ggo_ml``, ``consolidation_percent``).
LESION_TYPES = ((TYPE_GGO, "ggo"), (TYPE_CONSOLIDATION, "consolidation"))


#: Decimals of volumes (mL) and percentages in the read-outs.
ML_DECIMALS, PERCENT_DECIMALS = 1, 2


def percent(part: int, whole: int) -> float:
    """``part`` in percent of ``whole``; 0 when ``whole`` is 0.

    >>> percent(1, 4), percent(3, 0)
    (25.0, 0.0)
    """
    return 100.0 * part / whole if whole else 0.0


def percent_opacity(infection: np.ndarray, lung: np.ndarray) -> float:
    """PO, the percentage of opacity: infected lung voxels / lung voxels x 100 (masks ``> 0`` on one
    grid, so a voxel count ratio); infection outside the lung does not count. 0 for an empty lung.

    >>> lung = np.array([1, 1, 1, 1, 0]); percent_opacity(np.array([1, 0, 0, 0, 1]), lung)
    25.0
    """
    lung = np.asarray(lung) > 0
    return percent(int(np.count_nonzero((np.asarray(infection) > 0) & lung)), int(np.count_nonzero(lung)))


def lesion_tallies(types: np.ndarray, n_lung: int, voxel_ml: float) -> dict[str, float]:
    """Ground-glass and consolidation of a scan: volume (mL) and percent of the lung, from the lesion-type
    codes of its infected lung voxels (``types``: any array of codes; other codes are not counted).

    Returns:
        ``ggo_ml``, ``ggo_percent``, ``consolidation_ml``, ``consolidation_percent``.

    >>> lesion_tallies(np.array([1, 1, 2, 0]), 8, 2.0)
    {'ggo_ml': 4.0, 'ggo_percent': 25.0, 'consolidation_ml': 2.0, 'consolidation_percent': 12.5}
    """
    out = {}
    for code, name in LESION_TYPES:
        n = int(np.count_nonzero(types == code))
        out[f"{name}_ml"] = round(n * voxel_ml, ML_DECIMALS)
        out[f"{name}_percent"] = round(percent(n, n_lung), PERCENT_DECIMALS)
    return out


@dataclass(frozen=True)
class SegmentationSeverity:
    """The infection U-Net's severity of a scan.

    Attributes:
        po: The PO, unrounded.
        figures: What ``predictions.csv`` and the infection JSON carry (see ``segmentation_severity``).
    """

    po: float
    figures: dict


def segmentation_severity(
    infection: np.ndarray, lung: np.ndarray, voxel_ml: float, types: np.ndarray | None = None
) -> SegmentationSeverity:
    """The infection U-Net's severity of a scan (the ``seg_*`` figures of ``predictions.csv``): PO as the
    study's score with its class and CTSI, infection and lung volumes, and with a lesion-type map the
    ground-glass and consolidation tallies (``seg_ggo_ml`` ...).

    Args:
        infection: Infection mask (``> 0``), on the lung's grid.
        lung: Lung mask (``> 0``).
        voxel_ml: Volume of one voxel (mL).
        types: Lesion types of the infected voxels (TYPE_GGO, TYPE_CONSOLIDATION), or None (a binary model).
    """
    po = percent_opacity(infection, lung)
    n_lung = int(np.count_nonzero(lung))
    figures = {
        "seg_score": round(po, PERCENT_DECIMALS),
        "seg_severity_class": SEVERITY_CLASSES[severity_class(po)],
        "seg_ctsi": ctsi(po),
        "infection_volume_ml": round(int(np.count_nonzero(infection)) * voxel_ml, ML_DECIMALS),
        "lung_volume_ml": round(n_lung * voxel_ml, ML_DECIMALS),
        "lesion_types": "model" if types is not None else None,
    }
    if types is not None:
        figures.update({f"seg_{k}": v for k, v in lesion_tallies(types, n_lung, voxel_ml).items()})
    return SegmentationSeverity(po, figures)
