"""The classical lung mask (CPU, no weights): air-like voxels inside the body, airways taken out
(``covidct.lungs.airways``), gas outside the thorax cut off (``covidct.lungs.thorax``), the lungs
selected and told apart left/right, vessels and lesions filled in, dense lung against the chest wall
taken in (``covidct.lungs.pleural_fill``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covidct import config, forked
from covidct.errors import CovidctError
from covidct.lungs.airways import AIRWAY_MAX_AREA_MM2, Airways, body_midline_x, find_airways
from covidct.lungs.labels import LEFT, RIGHT, UNKNOWN_SIDE, split_left_right, volume_stats
from covidct.lungs.pleural_fill import cage_depths, fill_pleural
from covidct.lungs.thorax import outside_air
from covidct.volume import ball, bounding_box

log = logging.getLogger(__name__)


#: Voxels below this HU are air-like (lung parenchyma, airways, outside air): config ``lung_mask.threshold``.
LUNG_MAX_HU = config.default("lung_mask.threshold.lung_max_hu")


#: Airway lumen is darker than aerated lung (about -850 HU): config ``lung_mask.threshold``.
AIRWAY_MAX_HU = config.default("lung_mask.threshold.airway_max_hu")


#: Thin bridges (partial volume through a thin diaphragm or pleura) are cut by an erosion of this radius (mm).
SPLIT_MM = 3.0


#: A region whose eroded core has a median below this HU is gas (bowel, stomach, table, outside air
#: pockets), not lung: aerated lung is parenchyma and vessels, about -850 HU; even severe emphysema
#: keeps its median above about -950 HU, and an emphysematous lung is connected to the airways anyway.
GAS_MEDIAN_HU = -960


#: A lung reaches up to the level of the hila: a region whose top lies more than this below the
#: carina (mm) is under the diaphragm (stomach, colon), not lung. The hila lie 1-3 cm below the carina.
HILUM_BELOW_CARINA_MM = 40.0


#: Inside a lung region, a core below the hila with a median under this HU is gas joined to the lung
#: (colon, stomach) and is cut off, if it holds at least ``GAS_CORE_MIN_ML``.
GAS_CUT_HU = -930


GAS_CORE_MIN_ML = 0.5


#: Gas pockets that touch a lung base broadly (no thin bridge to erode) are found as gas (smoothed over
#: this many mm) mostly surrounded (this fraction of a shell this thick) by what is not lung.
GAS_SMOOTH_MM = 1.5


GAS_SHELL_MM = 3.0


GAS_OUTSIDE_FRACTION = 0.5


#: The pocket's partial-volume rim (taken out with it) is darker than this (HU, smoothed).
GAS_RIM_HU = -600


#: The trachea and main bronchi are removed with a rim of this width (mm): their wall's partial volume.
AIRWAY_RIM_MM = 2.0


#: Holes of a lung slice up to this area (mm^2, a disc of about 36 mm) are filled: vessels, nodules,
#: small lesions. Larger holes are filled only when enclosed in 3D (a tumour), never when open below
#: (the dome of the diaphragm seen through a ring of lung).
HOLE_MAX_MM2 = 1000.0


@dataclass(frozen=True)
class ThresholdParams:
    """Parameters of the threshold backend: config ``lung_mask.threshold``, whose schema holds the defaults."""

    lung_max_hu: float = LUNG_MAX_HU
    airway_max_hu: float = AIRWAY_MAX_HU
    min_component_ml: float = float(config.default("lung_mask.threshold.min_component_ml"))
    min_lung_ml: float = float(config.default("lung_mask.threshold.min_lung_ml"))
    closing_mm: float = float(config.default("lung_mask.threshold.closing_mm"))
    fill_pleural: bool = config.default("lung_mask.threshold.fill_pleural")


def _remove_airway(inside: np.ndarray, airway: np.ndarray, spacing) -> np.ndarray:
    """The part of the airway to take out of the lung candidate: the trachea and main bronchi outside the lungs.

    On each slice, an air region (at the lung threshold) that holds airway lumen and is no larger
    than an airway cross-section is airway whole (lumen and partial-volume wall); inside a lung
    region (a bronchus that has entered the lung) only the lumen is, and it is filled back as lung.
    """

    out = np.zeros(inside.shape, bool)
    box = bounding_box(airway, (0, 3, 3))
    if box is None:
        return out
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 2)
    lab, n = ndimage.label(inside[box], structure=plane)
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    small = counts * spacing[0] * spacing[1] <= 2.0 * AIRWAY_MAX_AREA_MM2
    hit = np.zeros(n + 1, bool)
    hit[np.unique(lab[airway[box]])] = True
    take = small & hit
    take[0] = False
    region = take[lab]
    rim = max(1, int(round(AIRWAY_RIM_MM / spacing[0])))
    region = ndimage.binary_dilation(region, ball(rim)[None]) & (inside[box] | region)
    out[box] = region | airway[box] & ~small[lab]
    return out


def _lung_regions(
    inside: np.ndarray, hu: np.ndarray, airway, spacing, params: ThresholdParams
) -> tuple[np.ndarray, dict]:
    """The lungs among the air regions inside the body.

    Each region of at least ``min_component_ml`` is eroded by ``SPLIT_MM``, which cuts thin bridges
    (partial volume through a thin diaphragm joins a lung base to the gas of the stomach or colon) and
    leaves cores. A core is lung when it is connected to the airways, or when it is not gas (median HU
    above ``GAS_MEDIAN_HU``) and reaches up to the hila (``HILUM_BELOW_CARINA_MM`` below the carina; without
    a carina, above the middle of the largest core). A region is lung when it holds a lung core; inside
    it, the voxels nearest to a gas core below the hila (median under ``GAS_CUT_HU``, at least
    ``GAS_CORE_MIN_ML``, not itself lung) are cut off.

    Returns:
        The lung mask and figures for the provenance (regions dropped, gas volume cut off).
    """
    sx, sy, sz = spacing
    voxel_ml = sx * sy * sz / 1000.0
    info = {"regions_dropped": 0, "gas_cut_ml": 0.0}
    out = np.zeros(inside.shape, bool)
    box = bounding_box(inside, 1)
    if box is None:
        return out, info
    sub = inside[box]
    comps, n = ndimage.label(sub)
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    big = sizes * voxel_ml >= params.min_component_ml
    big[0] = False
    if not big.any():
        return out, info
    cand = big[comps]
    r = max(1, int(round(SPLIT_MM / min(sx, sy))))
    struct = ndimage.generate_binary_structure(3, 1)
    if int(round(SPLIT_MM / sz)) == 0:  # coarse slices: erode in-plane only
        struct = np.zeros((3, 3, 3), bool)
        struct[1] = ndimage.generate_binary_structure(2, 1)
    cores, nc = ndimage.label(ndimage.binary_erosion(cand, struct, iterations=r))
    if nc == 0:  # everything thin (a very coarse grid): each region is its own core
        cores, nc = np.where(cand, comps, 0), n
    csizes = np.bincount(cores.ravel(), minlength=nc + 1)
    objects = ndimage.find_objects(cores)
    ztop = np.full(nc + 1, -1.0)
    zmean = np.zeros(nc + 1)
    median = np.full(nc + 1, np.nan)
    owner = np.zeros(nc + 1, int)  # the region that holds each core
    hsub = hu[box]
    zc = np.arange(sub.shape[0], dtype=float)
    for k, obj in enumerate(objects, start=1):
        if obj is None:
            continue
        sel = cores[obj] == k
        ztop[k] = obj[0].stop - 1
        zmean[k] = float((sel.sum(axis=(1, 2)) * zc[obj[0]]).sum() / max(sel.sum(), 1))
        median[k] = float(np.median(hsub[obj][sel]))
        owner[k] = int(comps[obj][sel].flat[0])
    touches = np.zeros(nc + 1, bool)
    if airway.found:
        reach = r + max(1, int(round(AIRWAY_RIM_MM / sx))) + 2
        abox = bounding_box(airway.mask[box], reach)
        if abox is not None:
            near = ndimage.binary_dilation(
                airway.mask[box][abox], ndimage.generate_binary_structure(3, 1), iterations=reach
            )
            touches[np.unique(cores[abox][near])] = True
    touches[0] = False
    if airway.found and airway.carina_z is not None:
        level = airway.carina_z - box[0].start - HILUM_BELOW_CARINA_MM / sz
    else:
        level = zmean[int(np.argmax(csizes[1:])) + 1]
    gas = median < GAS_MEDIAN_HU
    lung_core = touches | (~gas & (ztop >= level))
    lung_core[0] = False
    if not lung_core.any():  # nothing looks like lung: the largest non-gas core (QC will tell)
        ok = ~gas & (csizes > 0)
        ok[0] = False
        if ok.any():
            lung_core[int(np.argmax(np.where(ok, csizes, 0)))] = True
    keep = np.zeros(n + 1, bool)
    keep[owner[lung_core]] = True
    keep &= big
    out_sub = keep[comps]
    seed_ok = csizes * voxel_ml >= GAS_CORE_MIN_ML
    cut = np.nonzero((median < GAS_CUT_HU) & ~lung_core & (ztop < level) & keep[owner] & seed_ok)[0]
    for c in cut:
        cb = bounding_box(cores == c, r + 3)
        seeds = np.where(seed_ok[cores[cb]], cores[cb], 0)
        _, idx = ndimage.distance_transform_edt(seeds == 0, return_indices=True, sampling=(sz, sy, sx))
        drop = out_sub[cb] & (seeds[tuple(idx)] == c)
        info["gas_cut_ml"] += float(drop.sum() * voxel_ml)
        out_sub[cb] &= ~drop
    info["gas_cut_ml"] += _cut_gas_pockets(
        out_sub, hsub, int(np.floor(level)), airway.mask[box] if airway.found else None, spacing
    )
    info["regions_dropped"] = int(np.count_nonzero(big & ~keep)) + len(cut)
    info["gas_cut_ml"] = round(info["gas_cut_ml"], 1)
    out[box] = out_sub
    return out, info


def _cut_gas_pockets(lung: np.ndarray, hu: np.ndarray, level: int, airway: np.ndarray | None, spacing) -> float:
    """Cut gas pockets below the hila out of ``lung`` (in place); returns the mL cut.

    A pocket is a connected region of gas (HU under ``GAS_CUT_HU`` after smoothing by ``GAS_SMOOTH_MM``) of at
    least ``GAS_CORE_MIN_ML`` below slice ``level``, not next to the airways, which with its partial-volume
    rim (up to ``GAS_SHELL_MM``, darker than ``GAS_RIM_HU``) is mostly (``GAS_OUTSIDE_FRACTION``) surrounded
    by what is not lung (a shell of ``GAS_SHELL_MM``): a stomach or colon joined to
    a lung base by a broad partial-volume contact, which the erosion cannot cut. A bulla is surrounded by lung.
    """
    sx, sy, sz = spacing
    voxel_ml = sx * sy * sz / 1000.0
    level = min(max(level, 0), lung.shape[0])
    if level == 0 or not lung[:level].any():
        return 0.0
    low = lung[:level]
    sigma = [GAS_SMOOTH_MM / v for v in (sz, sy, sx)]
    smooth = ndimage.gaussian_filter(hu[:level].astype(np.float32), sigma)
    gas = (smooth < GAS_CUT_HU) & low
    pieces, n = ndimage.label(gas)
    if n == 0:
        return 0.0
    sizes = np.bincount(pieces.ravel(), minlength=n + 1) * voxel_ml
    shell_vox = max(1, int(round(GAS_SHELL_MM / sx)))
    cut = 0.0
    for k, obj in enumerate(ndimage.find_objects(pieces), start=1):
        if obj is None or sizes[k] < GAS_CORE_MIN_ML:
            continue
        box = tuple(
            slice(max(s.start - 2 * shell_vox, 0), min(s.stop + 2 * shell_vox, dim)) for s, dim in zip(obj, low.shape)
        )
        piece = pieces[box] == k
        # the pocket with its partial-volume rim (gas blurred with its wall), then a shell around that
        pocket = ndimage.binary_dilation(piece, iterations=shell_vox, mask=low[box] & (smooth[box] < GAS_RIM_HU))
        grown = ndimage.binary_dilation(pocket, iterations=shell_vox)
        if airway is not None and (grown & airway[:level][box]).any():
            continue
        shell = grown & ~pocket
        if not shell.any() or float((~low[box][shell]).mean()) < GAS_OUTSIDE_FRACTION:
            continue
        drop = pocket & low[box]
        cut += float(drop.sum() * voxel_ml)
        low[box] &= ~drop
    return cut


def _fill_side(
    side: np.ndarray,
    dense: np.ndarray,
    depth: np.ndarray | None,
    others: np.ndarray,
    spacing,
    params: ThresholdParams,
    midline_x: float,
) -> np.ndarray:
    """One lung's final mask in its bounding box: vessels, nodules and lesions taken in.

    Per axial slice: a closing of ``closing_mm``; holes up to ``HOLE_MAX_MM2`` filled; then (with
    ``fill_pleural``) dense lung between the aerated lung and the chest wall
    (``covidct.lungs.pleural_fill``): juxtapleural consolidation and tumour. Finally holes enclosed in 3D
    are filled (a tumour inside the lung), whatever their size.
    """
    sx, sy, _ = spacing
    pixel_mm2 = sx * sy
    radius = max(1, int(round(params.closing_mm / sx)))
    disk = ball(radius)[None]
    region = ndimage.binary_closing(side, disk, border_value=0) | side
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    holes = ndimage.binary_fill_holes(region, plane) & ~region
    if holes.any():
        hl, hn = ndimage.label(holes, plane)
        hs = np.bincount(hl.ravel(), minlength=hn + 1) * pixel_mm2
        ok = hs <= HOLE_MAX_MM2
        ok[0] = False
        region |= ok[hl]
    if params.fill_pleural:
        region |= fill_pleural(region, side, dense, depth, others, spacing, midline_x)
    region |= ndimage.binary_fill_holes(region)
    return region


def threshold_lungs(
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    params: ThresholdParams = ThresholdParams(),
    patient: str | None = None,
) -> tuple[np.ndarray, dict]:
    """Classical lung segmentation: ``(labels, stats)`` of ``segment_threshold``."""
    result = segment_threshold(hu, spacing, params, patient)
    return result.labels, result.stats


@dataclass
class ThresholdResult:
    """What the threshold backend found: labels, figures for the provenance, and the airways (for QC)."""

    labels: np.ndarray
    stats: dict
    airways: Airways


def segment_threshold(
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    params: ThresholdParams = ThresholdParams(),
    patient: str | None = None,
    workers: int = 1,
) -> ThresholdResult:
    """Classical lung segmentation on a (z, y, x) HU array on an LPS-aligned grid.

    Steps: air-like voxels (HU < ``lung_max_hu``) not connected to the image border within their
    slice; the airways (larynx, trachea, main bronchi; ``covidct.lungs.airways``) taken out; the lungs
    chosen among the remaining air regions, gas below the diaphragm and outside the lungs cut off
    (``_lung_regions``); the two lungs told apart; each lung closed and filled slice by slice, with
    juxtapleural lesions taken in (``_fill_side``).

    Args:
        hu: HU array, axes (z, y, x) with x toward patient left and z toward the head.
        spacing: (x, y, z) voxel size in mm.
        params: Thresholds and sizes.
        patient: Pseudonymous id for messages.
        workers: With 2 or more, the two lungs are filled at once (the first in a forked process).

    Returns:
        Labels (uint8: 1 right, 2 left, 3 side unknown), a dict of figures and the airways found.

    Raises:
        CovidctError: no lungs found.
    """

    spacing = tuple(float(s) for s in spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    air = hu < params.lung_max_hu
    outside = outside_air(air)
    inside = air & ~outside
    del air
    airway = find_airways(hu, inside, spacing, params.airway_max_hu, body_midline_x(~outside))
    del outside
    removed = _remove_airway(inside, airway.mask, spacing) if airway.found else np.zeros(hu.shape, bool)
    candidate = inside & ~removed
    del inside
    lung, info = _lung_regions(candidate, hu, airway, spacing, params)
    del candidate
    total_ml = float(lung.sum() * voxel_ml)
    if total_ml < params.min_component_ml:
        raise CovidctError(
            f"no lungs found: no air-filled region inside the body of at least {params.min_component_ml:.0f} mL "
            f"looks like lung (is this a chest CT?)",
            patient,
        )
    labels, lr_known = split_left_right(lung, spacing)
    del lung
    depth = None
    if params.fill_pleural:
        depth = cage_depths(hu, labels > 0, spacing)
    filled = np.zeros_like(labels)
    radius = max(1, int(round(params.closing_mm / spacing[0])))
    sides = []  # (label value, bounding box, the other lungs in the box)
    for value in (RIGHT, LEFT, UNKNOWN_SIDE):
        side = labels == value
        box = bounding_box(side, (1, radius + 2, radius + 2))
        if box is not None:
            sides.append((value, box, (labels[box] > 0) & ~side[box]))

    def fill(value: int, box: tuple, others: np.ndarray) -> np.ndarray:
        return _fill_side(
            labels[box] == value,
            hu[box] >= params.lung_max_hu,
            None if depth is None else depth[box],
            others | removed[box],
            spacing,
            params,
            airway.midline_x - box[2].start,
        )

    # With two workers the first lung is filled in a forked child while this process fills the others
    # (the fill is per lung and single-threaded); the regions, and the error raised, are the same either way.
    child = forked.start(fill, *sides[0]) if workers >= 2 and len(sides) >= 2 and forked.available() else None
    with forked.running(child, patient, ahead=True):
        regions = [None if child and i == 0 else fill(*side) for i, side in enumerate(sides)]
        if child:
            regions[0] = child.result(patient)
    for (value, box, others), region in zip(sides, regions, strict=True):
        target = filled[box]
        target[region & (target == 0) & ~others & ~removed[box]] = value
    total_ml = float((filled > 0).sum() * voxel_ml)
    if total_ml < params.min_lung_ml:
        raise CovidctError(
            f"no lungs found: air-filled region inside the body is {total_ml:.0f} mL, below the "
            f"{params.min_lung_ml:.0f} mL minimum (is this a chest CT?)",
            patient,
        )
    stats = {
        **volume_stats(filled, spacing),
        "airway_volume_ml": round(float(removed.sum() * voxel_ml), 1),
        "airway_found": bool(airway.found),
        "carina_z_index": airway.carina_z,
        "left_right_known": bool(lr_known),
        **info,
    }
    log.info(
        "patient %s: airways %s (%.0f mL out), carina at slice %s, %d air regions not lung, %.0f mL gas cut off",
        patient,
        "found" if airway.found else "not found",
        stats["airway_volume_ml"],
        airway.carina_z,
        stats["regions_dropped"],
        stats["gas_cut_ml"],
    )
    return ThresholdResult(filled, stats, airway)
