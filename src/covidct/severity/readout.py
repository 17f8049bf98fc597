"""Clinical severity read-outs of one scan, from its lung label map and infection mask: what a
radiologist reads, per lobe (or zone) and per lung, rather than a single number.

- **Per region** (five lobes from a lobe model, else six geometric zones: ``covidct.lungs.lobes``):
  volume, infected volume, infected percent and the 0-5 score of Pan et al. (Radiology 2020; 0 none,
  1 < 5 %, 2 5-25 %, 3 26-50 %, 4 51-75 %, 5 > 75 %: ``covidct.severity.lobe_score``). Their sum is the
  CT severity score ``ctss`` (0-25) with lobes, the ``zone_score`` (0-30) with zones; the other is
  None, so a zone total is never read as a CTSS.
- **PO**, percentage of opacity: infected lung volume / lung volume x 100; **PHO**, percentage of
  high opacity: infected voxels above HIGH_OPACITY_HU (-200 HU) / lung volume x 100; per lung and
  total (the measures of the Siemens pulmonary-opacity algorithm, Chaganti et al., Radiology:
  Artificial Intelligence 2020; 2:e200048, where high opacity above -200 HU stands for consolidation).
- **Lesion types**: ground-glass and consolidation volumes and percent of the lung, from a lesion-type
  map (1 ground-glass, 2 consolidation; e.g. a multi-class infection U-Net) when one is given, else
  from HU bands inside the infection mask: consolidation above CONSOLIDATION_ABOVE_HU (-200 HU, the
  same cut as PHO, so that without a type map the consolidation percent is the PHO), ground-glass at
  or below it. Ground-glass is hazy attenuation through which vessels stay visible (about -750 to
  -300 HU), consolidation hides them (about -100 to +50 HU); a voxel between the two bands is
  partial volume, and the cut at -200 HU splits that gap.
- The study's severity class (Low .. Critical) of the PO.
- **Minimum lesion size** for a region's score: a region scores 1 or more only when a lesion of at least
  MIN_LESION_ML (0.5 mL, the volume of a ball 10 mm across) reaches into it. Pan et al.'s readers
  scored opacities they saw; a trace of scattered voxels (a network's false positives on healthy
  lung, partial volume at a vessel) is not one, and with the score's first step at "any involvement"
  such a trace would raise a healthy region from 0 to 1 (healthy demo phantoms got zone scores of
  5-6 of 30 from 0.1-1 % of false positives). 10 mm is the size below which the Fleischner Society
  calls a solid opacity a small nodule rather than a lesion to describe, and COVID-19 ground-glass
  lesions are reported from about 1 cm up (Pan et al.; Bernheim et al., Radiology 2020; 295:200463).
  The region's infected volume and percent still count every voxel, so PO and the region percents
  agree; only the score of a region without a lesion of that size is 0 (its ``traces_only`` is true).

Only the lung mask's voxels count: infection outside it is ignored (and counted in the QC).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from covidct import config
from covidct.errors import CovidctError
from covidct.lungs.labels import LEFT, RIGHT
from covidct.lungs.lobes import LOBES, ZONES, RegionScheme, geometric_zones, lobes_in_lung, lung_sides
from covidct.severity.scores import (
    ML_DECIMALS,
    PERCENT_DECIMALS,
    SEVERITY_CLASSES,
    TYPE_CONSOLIDATION,
    TYPE_GGO,
    lesion_tallies,
    lobe_score,
    percent,
    severity_class,
)
from covidct.volume import Volume, bounding_box

log = logging.getLogger(__name__)

#: Infected voxels above this HU are high opacity (PHO): config ``severity.high_opacity_hu``.
HIGH_OPACITY_HU = float(config.default("severity.high_opacity_hu"))


#: Without a lesion-type map, infected voxels above this HU are consolidation, the others ground-glass.
CONSOLIDATION_ABOVE_HU = float(config.default("severity.consolidation_above_hu"))


SIDE_NAMES = {RIGHT: "right", LEFT: "left"}


#: A region scores only when a lesion (a connected infected piece) of at least this volume reaches into it.
MIN_LESION_ML = float(config.default("severity.min_lesion_ml"))


@dataclass
class Readout:
    """A scan's read-out: the JSON-ready numbers and the maps the severity panel draws.

    Attributes:
        result: The numbers (see ``severity_readout``).
        regions: uint8 region codes (lobes or zones) on the lung voxels, full grid.
        types: uint8 lesion types (TYPE_GGO, TYPE_CONSOLIDATION) on the infected lung voxels.
        scheme: The region scheme used.
    """

    result: dict
    regions: np.ndarray
    types: np.ndarray
    scheme: RegionScheme


@dataclass(frozen=True)
class ReadoutSettings:
    """The ``severity`` configuration block (defaults: the schema's)."""

    high_opacity_hu: float = HIGH_OPACITY_HU
    consolidation_above_hu: float = CONSOLIDATION_ABOVE_HU
    min_lesion_ml: float = MIN_LESION_ML


def read_out(
    volume: Volume,
    labels: Volume,
    infection: Volume,
    patient: str,
    lobes: Volume | None = None,
    types: Volume | None = None,
    typed: bool = True,
    study: dict | None = None,
    settings: ReadoutSettings | None = None,
) -> Readout:
    """The read-out of one patient (``severity_readout`` on its maps), with the patient, the shifted
    study date and where its regions came from at the head of ``result``.

    Args:
        volume: The resampled HU volume; every map lies on its grid.
        labels: The lung label map.
        infection: The infection mask.
        lobes: A lobe model's map, or None (six geometric zones).
        types: A lesion-type map, or None (HU bands).
        typed: False when the type map is a binary U-Net's all-zero map (HU bands then).
        study: The HU step's ``study`` record (``study_date``, ``study_date_note``).
        settings: The thresholds (ReadoutSettings).

    Raises:
        CovidctError: a map off the volume's grid, or an empty lung mask.
    """
    for what, other in (
        ("lung label map", labels),
        ("infection mask", infection),
        ("lobe map", lobes),
        ("lesion-type map", types),
    ):
        if other is not None:
            other.require_grid_of(volume, what, patient)
    if not np.any(labels.array):
        raise CovidctError("lung mask is empty: no severity read-out", patient, labels.path)
    settings = settings or ReadoutSettings()
    readout = severity_readout(
        volume.array,
        labels.array,
        infection.array,
        volume.spacing,
        lobes=lobes.array if lobes is not None else None,
        types=types.array if types is not None and typed else None,
        high_opacity_hu=settings.high_opacity_hu,
        consolidation_above_hu=settings.consolidation_above_hu,
        min_lesion_ml=settings.min_lesion_ml,
    )
    study = study or {}
    by_lobes = lobes is not None and readout.scheme is LOBES
    readout.result = {
        "patient_id": patient,
        "study_date": study.get("study_date"),
        "study_date_note": study.get("study_date_note"),
        "regions_from": (
            f"lobe map {Path(lobes.path or 'in memory').name}"
            if by_lobes
            else "six geometric zones (thirds of each lung's height)"
        ),
        **readout.result,
    }
    return readout


def total_text(result: dict) -> str:
    """The read-out's total as people read it: ``CTSS n/25`` (lobes) or ``zone score n/30 (zones)``."""
    if result["scheme"] == LOBES.name:
        return f"CTSS {result['ctss']}/25"
    return f"zone score {result['zone_score']}/30 (zones)"


def severity_readout(
    hu: np.ndarray,
    lung_labels: np.ndarray,
    infection: np.ndarray,
    spacing: tuple[float, float, float],
    lobes: np.ndarray | None = None,
    types: np.ndarray | None = None,
    high_opacity_hu: float = HIGH_OPACITY_HU,
    consolidation_above_hu: float = CONSOLIDATION_ABOVE_HU,
    min_lesion_ml: float = MIN_LESION_ML,
) -> Readout:
    """The severity read-out of one scan (all arrays (z, y, x) on one LPS-aligned grid).

    Args:
        hu: HU volume.
        lung_labels: Lung label map (1 right, 2 left, 3 side unknown); the lung is ``> 0``.
        infection: Infection mask (``> 0``); only its voxels inside the lung count.
        spacing: Voxel size (x, y, z) in mm.
        lobes: A lobe model's map (lungmask convention) or None for the six geometric zones. When the
            lobe map leaves a lobe without any lung voxel, zones are used and a QC flag says why.
        types: Lesion-type map (1 ground-glass, 2 consolidation) or None for the HU bands; infected
            voxels it leaves untyped are typed by the HU bands (counted in the QC).
        high_opacity_hu: PHO counts infected voxels above this HU.
        consolidation_above_hu: Without ``types``: consolidation above this HU, ground-glass at or below.
        min_lesion_ml: A region scores 0 unless a connected lesion of at least this volume reaches into it.

    Returns:
        The read-out. ``result`` holds: ``scheme`` (lobes/zones), ``regions`` (per region: code, name,
        label, side, volume_ml, infected_ml, infected_percent, score), ``ctss`` (lobes) or
        ``zone_score`` (zones) and the other None, ``lung_volume_ml``, ``infected_ml``, ``po``,
        ``high_opacity_ml``, ``pho``, ``lungs`` (right/left: volume_ml, infected_ml, po, pho),
        ``ggo_ml``, ``ggo_percent``, ``consolidation_ml``, ``consolidation_percent`` (percent of the
        lung), ``lesion_types`` (``model`` or ``hu_bands``), ``po_severity_class``, ``thresholds_hu``
        and ``qc`` (flags, lobe voxels reassigned, infection outside the lung, sides unknown).
        Percentages are computed from voxel counts, scores from the unrounded percentages.
    """
    started = time.perf_counter()
    shapes = {a.shape for a in (hu, lung_labels, infection) + tuple(x for x in (lobes, types) if x is not None)}
    if len(shapes) != 1:
        raise ValueError(f"arrays of different shapes: {sorted(shapes)}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    flags: list[str] = []
    qc: dict = {}
    full_regions = np.zeros(lung_labels.shape, np.uint8)
    full_types = np.zeros(lung_labels.shape, np.uint8)
    box = bounding_box(lung_labels > 0)
    if box is None:
        raise ValueError("the lung label map is empty")
    labels = lung_labels[box]
    lung = labels > 0
    qc["infection_outside_lung_voxels"] = int(np.count_nonzero(infection > 0)) - int(
        np.count_nonzero(infection[box][lung] > 0)
    )

    scheme: RegionScheme = ZONES
    regions = None
    if lobes is not None:
        regions, stats = lobes_in_lung(labels, lobes[box], spacing)
        qc["lobe_voxels_reassigned"] = stats["reassigned_voxels"]
        qc["lobe_voxels_reassigned_percent"] = stats["reassigned_percent"]
        if stats["missing"]:
            flags.append(f"the lobe map has no {', '.join(stats['missing'])} in the lung mask: six zones used")
            regions = None
        else:
            scheme = LOBES
    if regions is None:
        regions = geometric_zones(labels)
    sides, n_unknown = lung_sides(labels)
    qc["side_unknown_voxels"] = n_unknown
    if n_unknown:
        flags.append(f"{n_unknown} lung voxels of unknown side were given a side by position")

    # Per lung voxel: region, side, infected, HU.
    region_at = regions[lung]
    side_at = sides[lung]
    infected_at = infection[box][lung] > 0
    hu_at = hu[box][lung]
    high_at = infected_at & (hu_at > high_opacity_hu)
    if types is not None:
        type_at = np.where(infected_at, types[box][lung], 0).astype(np.uint8)
        untyped = infected_at & ~np.isin(type_at, (TYPE_GGO, TYPE_CONSOLIDATION))
        qc["infected_voxels_typed_by_hu"] = int(np.count_nonzero(untyped))
        type_at[untyped] = np.where(hu_at[untyped] > consolidation_above_hu, TYPE_CONSOLIDATION, TYPE_GGO)
        source = "model"
    else:
        type_at = np.where(
            infected_at, np.where(hu_at > consolidation_above_hu, TYPE_CONSOLIDATION, TYPE_GGO), 0
        ).astype(np.uint8)
        source = "hu_bands"

    n_codes = max(scheme.codes()) + 1
    volume = np.bincount(region_at, minlength=n_codes)
    infected = np.bincount(region_at[infected_at], minlength=n_codes)
    lesions_at = _lesion_voxels(infection[box] > 0, lung, min_lesion_ml / voxel_ml)[lung]
    with_lesion = np.bincount(region_at[lesions_at], minlength=n_codes) > 0
    rows = []
    for region in scheme.regions:
        v, i = int(volume[region.code]), int(infected[region.code])
        share = percent(i, v)
        traces_only = i > 0 and not with_lesion[region.code]
        if v == 0:
            flags.append(f"the {region.label} has no lung voxel")
        rows.append(
            {
                "code": region.code,
                "name": region.name,
                "label": region.label,
                "side": SIDE_NAMES[region.side],
                "volume_ml": round(v * voxel_ml, ML_DECIMALS),
                "infected_ml": round(i * voxel_ml, ML_DECIMALS),
                "infected_percent": round(share, PERCENT_DECIMALS),
                "score": 0 if traces_only else lobe_score(share),
                "traces_only": traces_only,
            }
        )
    total = sum(r["score"] for r in rows)

    n_lung = int(lung.sum())
    n_inf, n_high = int(infected_at.sum()), int(high_at.sum())
    po = percent(n_inf, n_lung)
    per_lung = {}
    for side, name in SIDE_NAMES.items():
        here = side_at == side
        n = int(here.sum())
        per_lung[name] = {
            "volume_ml": round(n * voxel_ml, ML_DECIMALS),
            "infected_ml": round(int(np.count_nonzero(infected_at & here)) * voxel_ml, ML_DECIMALS),
            "po": round(percent(int(np.count_nonzero(infected_at & here)), n), PERCENT_DECIMALS),
            "pho": round(percent(int(np.count_nonzero(high_at & here)), n), PERCENT_DECIMALS),
        }
    result = {
        "scheme": scheme.name,
        "regions": rows,
        "ctss": total if scheme is LOBES else None,
        "zone_score": total if scheme is ZONES else None,
        "lung_volume_ml": round(n_lung * voxel_ml, ML_DECIMALS),
        "infected_ml": round(n_inf * voxel_ml, ML_DECIMALS),
        "po": round(po, PERCENT_DECIMALS),
        "high_opacity_ml": round(n_high * voxel_ml, ML_DECIMALS),
        "pho": round(percent(n_high, n_lung), PERCENT_DECIMALS),
        "lungs": per_lung,
        **lesion_tallies(type_at, n_lung, voxel_ml),
        "lesion_types": source,
        "po_severity_class": SEVERITY_CLASSES[severity_class(po)],
        "thresholds_hu": {"high_opacity_above": high_opacity_hu, "consolidation_above": consolidation_above_hu},
        "min_lesion_ml": min_lesion_ml,
        "qc": {"flags": flags, **qc},
    }
    full_regions[box][lung] = region_at
    full_types[box][lung] = type_at
    result["seconds"] = round(time.perf_counter() - started, 3)
    return Readout(result, full_regions, full_types, scheme)


def _lesion_voxels(infected: np.ndarray, lung: np.ndarray, min_voxels: float) -> np.ndarray:
    """The infected lung voxels that belong to a connected lesion (26-connected) of at least ``min_voxels``."""
    lesions = infected & lung
    if min_voxels <= 1 or not lesions.any():
        return lesions
    labels, n = ndimage.label(lesions, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


#: Per-region score columns of the tables: lobes (``score_RUL`` ...) and zones (``score_RUZ`` ...);
#: a scan fills those of its scheme and leaves the others empty.
REGION_COLUMNS = [f"score_{r.name}" for r in LOBES.regions] + [f"score_{r.name}" for r in ZONES.regions]


#: The read-out's columns in ``predictions.csv`` and the cohort table.
READOUT_COLUMNS = [
    "region_scheme",
    "ctss",
    "zone_score",
    *REGION_COLUMNS,
    "po",
    "pho",
    "po_right",
    "po_left",
    "pho_right",
    "pho_left",
    "ggo_percent",
    "consolidation_percent",
    "lesion_types",
    "po_severity_class",
]


def readout_row(result: dict) -> dict:
    """A read-out (``severity_readout``'s result, or its JSON) as one table row (READOUT_COLUMNS;
    None where it does not apply)."""
    row = dict.fromkeys(READOUT_COLUMNS)
    row.update(
        {
            "region_scheme": result["scheme"],
            "ctss": result["ctss"],
            "zone_score": result["zone_score"],
            "po": result["po"],
            "pho": result["pho"],
            "ggo_percent": result["ggo_percent"],
            "consolidation_percent": result["consolidation_percent"],
            "lesion_types": result["lesion_types"],
            "po_severity_class": result["po_severity_class"],
        }
    )
    for side in ("right", "left"):
        row[f"po_{side}"] = result["lungs"][side]["po"]
        row[f"pho_{side}"] = result["lungs"][side]["pho"]
    for region in result["regions"]:
        row[f"score_{region['name']}"] = region["score"]
    return row
