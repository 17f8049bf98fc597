"""The central airways (pharynx, larynx, trachea, main bronchi) of a chest CT, found without a seed.

The trachea is the long tube of dark air (lumen, about -1000 HU) in the middle of the upper
body: on every axial slice it is a small, separate air region near the midline, and it runs
through many consecutive slices. ``find_airways`` therefore

1. takes the dark voxels (lightly smoothed HU below ``airway_max_hu``) inside the body, in a
   central band around the body's midline, and keeps on each slice only the small regions
   (a cross-section no larger than ``AIRWAY_MAX_AREA_MM2``: a lung slice is far larger);
2. joins those regions across slices into 3D tubes and takes as the trachea the tube with the
   most volume near the midline, if it runs at least ``TRACHEA_MIN_LENGTH_MM``. The tube carries
   the main bronchi down to where they enter the lungs (there a slice's dark region stops being
   small or stops being dark), so no leak control is needed;
3. adds everything air-like connected to the top of the tube above it (larynx, pharynx: their
   cross-section can be large), whatever slice the scan starts at;
4. finds the carina, the first level (from the top) where the tube has split into two branches
   that persist for ``CARINA_PERSIST_MM``.

Works on a (z, y, x) array on an LPS-aligned grid (z index increasing toward the head), as the
pipeline's resampled volumes are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

#: Largest axial cross-section of a trachea or main bronchus (mm^2). An adult trachea is at most
#: about 25 mm wide (about 490 mm^2); an obliquely cut left main bronchus can look twice that long.
AIRWAY_MAX_AREA_MM2 = 900.0
#: Smallest cross-section counted when telling one branch from two at the carina (mm^2).
BRANCH_MIN_AREA_MM2 = 12.0
#: The trachea runs this close to the body's midline (mm; it may be pushed aside by a goitre or a mass).
TRACHEA_MAX_OFFSET_MM = 40.0
#: Shortest tube taken for a trachea (mm); an oesophagus with a little air rarely forms one this long.
TRACHEA_MIN_LENGTH_MM = 20.0
#: Half width of the band searched for airways (mm from the midline): the hila lie within it.
AIRWAY_BAND_MM = 110.0
#: Two branches must persist this far below the split to make it the carina (mm).
CARINA_PERSIST_MM = 6.0
#: Gaussian smoothing of the HU before thresholding the lumen (mm): suppresses noise, keeps the lumen.
AIRWAY_SMOOTH_MM = 1.5
#: The larynx and pharynx above the trachea lie within this distance of the midline (mm).
UPPER_AIRWAY_MAX_OFFSET_MM = 60.0

_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = ndimage.generate_binary_structure(2, 2)  # 2D 8-connectivity, no link across slices


@dataclass
class Airways:
    """What ``find_airways`` found.

    Attributes:
        mask: Boolean (z, y, x) airway lumen (empty when no trachea is in the field of view).
        found: A trachea was found.
        carina_z: Slice index of the carina (the lowest slice of the undivided trachea), or None.
        top_z: Highest slice index of the airway, or None.
        midline_x: Column index of the body's midline used.
    """

    mask: np.ndarray
    found: bool
    carina_z: int | None
    top_z: int | None
    midline_x: float


def body_midline_x(body: np.ndarray) -> float:
    """Column index of the body's midline: the mean x of body voxels (sampled every 4th slice)."""
    sample = body[::4] if body.shape[0] >= 8 else body
    xs = np.nonzero(sample.any(axis=1))
    if xs[0].size == 0:
        return (body.shape[2] - 1) / 2.0
    counts = sample.sum(axis=1)  # (z, x)
    total = counts.sum()
    return float((counts.sum(axis=0) * np.arange(body.shape[2])).sum() / max(total, 1))


def find_airways(
    hu: np.ndarray,
    inside: np.ndarray,
    spacing: tuple[float, float, float],
    airway_max_hu: float,
    midline_x: float | None = None,
) -> Airways:
    """Trachea, main bronchi and the upper airway above them.

    Args:
        hu: HU array (z, y, x), z index increasing toward the head.
        inside: Air-like voxels inside the body (outside air removed).
        spacing: (x, y, z) voxel size in mm.
        airway_max_hu: The lumen is darker than this (HU).
        midline_x: Column of the body's midline (default: middle of ``inside``'s extent).

    Returns:
        The airways found (``found`` False and an empty mask when there is no trachea).
    """
    sx, sy, sz = spacing
    nz, ny, nx = hu.shape
    mask = np.zeros(hu.shape, bool)
    if midline_x is None:
        cols = np.nonzero(inside.any(axis=(0, 1)))[0]
        midline_x = float(cols.mean()) if cols.size else (nx - 1) / 2.0
    none = Airways(mask, False, None, None, midline_x)
    band = int(round(AIRWAY_BAND_MM / sx))
    x0, x1 = max(int(midline_x) - band, 0), min(int(midline_x) + band + 1, nx)
    zs = np.nonzero(inside[:, :, x0:x1].any(axis=(1, 2)))[0]
    if zs.size == 0 or x1 <= x0:
        return none
    box = (slice(int(zs[0]), int(zs[-1]) + 1), slice(None), slice(x0, x1))
    sigma = [AIRWAY_SMOOTH_MM / s for s in (sz, sy, sx)]
    smooth = ndimage.gaussian_filter(hu[box].astype(np.float32), sigma=sigma, truncate=2.0)
    dark = (smooth < airway_max_hu) & inside[box]
    del smooth
    # small dark regions per slice
    lab2, n2 = ndimage.label(dark, structure=_PLANE)
    if n2 == 0:
        return none
    pixel_mm2 = sx * sy
    counts = np.bincount(lab2.ravel(), minlength=n2 + 1)
    small = counts * pixel_mm2 <= AIRWAY_MAX_AREA_MM2
    small[0] = False
    tubes_in = small[lab2]
    del lab2
    tubes, nt = ndimage.label(tubes_in, structure=np.ones((3, 3, 3), bool))
    if nt == 0:
        return none
    xs = (np.arange(x0, x1, dtype=np.float32) - np.float32(midline_x)) * np.float32(sx)
    central = np.abs(xs) <= TRACHEA_MAX_OFFSET_MM
    cen_counts = np.bincount(tubes[:, :, central].ravel(), minlength=nt + 1)
    cen_counts[0] = 0
    best = int(np.argmax(cen_counts))
    tube = tubes == best
    tz = np.nonzero(tube.any(axis=(1, 2)))[0]
    central_slices = np.count_nonzero(tube[:, :, central].any(axis=(1, 2)))
    if best == 0 or central_slices * sz < TRACHEA_MIN_LENGTH_MM:
        log.info("no trachea found (longest central air tube %.0f mm)", central_slices * sz)
        return none
    # upper airway: air connected to the tube's top, above it
    top = int(tz[-1])
    upper = inside[box][top:]
    if upper.shape[0] > 1:
        up_lab, _ = ndimage.label(upper)
        keep = np.unique(up_lab[0][tube[top]])
        keep = keep[keep > 0]
        if keep.size:
            region = np.isin(up_lab, keep)
            cols = np.nonzero(region.any(axis=(0, 1)))[0]
            offset = np.max(np.abs(xs[cols])) if cols.size else 0.0
            if offset <= UPPER_AIRWAY_MAX_OFFSET_MM:
                tube[top:] |= region
            else:
                log.info("air above the trachea reaches %.0f mm from the midline: not taken as upper airway", offset)
    carina = _carina(tube, tz, pixel_mm2, sz)
    if carina is not None:
        carina += box[0].start
    mask[box] = tube
    zs_all = np.nonzero(mask.any(axis=(1, 2)))[0]
    return Airways(mask, True, carina, int(zs_all[-1]), midline_x)


def _carina(tube: np.ndarray, tz: np.ndarray, pixel_mm2: float, sz: float) -> int | None:
    """Lowest slice index of the undivided trachea, or None if it never divides.

    Walking down, the carina is the first split into two or more branches that persist for
    ``CARINA_PERSIST_MM``, after at least ``TRACHEA_MIN_LENGTH_MM`` of a single tube (so the
    piriform sinuses beside the larynx, two air pockets above the trachea, are not taken for it).
    """
    persist = max(1, int(round(CARINA_PERSIST_MM / sz)))
    single_needed = max(1, int(round(TRACHEA_MIN_LENGTH_MM / sz)))
    min_px = max(1, int(np.ceil(BRANCH_MIN_AREA_MM2 / pixel_mm2)))
    counts = []
    for z in tz[::-1]:
        lab, n = ndimage.label(tube[z], structure=np.ones((3, 3), bool))
        sizes = np.bincount(lab.ravel())[1:] if n else np.array([], int)
        counts.append(int(np.count_nonzero(sizes >= min_px)))
    run = 0
    for i, k in enumerate(counts):
        if k == 1:
            run += 1
            continue
        if k >= 2 and run >= single_needed and i + persist <= len(counts) and min(counts[i : i + persist]) >= 2:
            return int(tz[::-1][i - 1])
        run = 0 if k >= 2 else run
    return None
