"""Taking dense lung against the chest wall into a threshold lung mask.

Consolidation, atelectasis and tumour against the chest wall have the HU of the wall itself, so a
threshold leaves them out. Between the aerated lung and the inner surface of the rib cage there is
normally nothing but the pleura. On each axial slice, two kinds of dense pixels (HU at or above the
lung threshold) are taken into a lung:

1. a concavity between the lung and its convex hull whose opening faces the chest wall: the
   opening lies no deeper in the rib cage than ``OPENING_MAX_DEPTH_MM`` and shallower than the
   lung border of the concavity (the mediastinum, the heart and the dome of the diaphragm lie
   deeper in the chest than the lung that wraps around them);
2. a straight gap (along x or y) from the lung to the costal wall, at most ``GAP_MAX_MM`` long
   (a band of consolidation along the wall that the lung's hull does not reach). The costal wall is
   the cage's inner surface at least ``COSTAL_MIN_OFFSET_MM`` from the midline; nearer it the
   mediastinum meets the sternum and the spine.

Both only where aerated lung of the same side lies above and below within ``SANDWICH_MM`` in the
same column (a gap region is taken whole when most of it passes, so the rim of a lesion at the lung's
widest level, which has no lung right above or below it, comes with it): a lesion against the wall
has lung above and below it, while the abdomen under the
dome of the diaphragm (which can sit between a lung and the wall on a slice), the heart and the
soft tissue above the apex do not. A consolidation resting on the diaphragm or filling the apex is
therefore not taken in: real scans showed that the dome cannot be told from it on one slice.

"Depth" is the distance inside the rib cage: ``covidct.lungs.thorax.cage_depth``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from covidct.lungs.thorax import cage_depth, convex_fill

#: A concavity's opening may lie this deep in the rib cage (mm, median over the opening).
OPENING_MAX_DEPTH_MM = 30.0
#: Concavities smaller than this (mm^2) are filled whatever their opening (dents between vessels).
POCKET_MIN_AREA_MM2 = 4.0
#: Longest straight gap (mm) between the lung and the costal wall that is filled; a connected gap region
#: is filled whole when at least ``GAP_ALLOWED_FRACTION`` of it passes the 3D test below.
GAP_MAX_MM = 45.0
GAP_ALLOWED_FRACTION = 0.5
#: Gaps thinner than this (mm) are the pleura and its partial volume, not a lesion.
GAP_MIN_MM = 4.0
#: The costal wall: the cage's inner surface at least this far from the body's midline (mm).
COSTAL_MIN_OFFSET_MM = 50.0
#: The cage's inner surface lies one pixel outside the lung's border pixels at this percentile of
#: their depth (where the aerated lung touches the wall on the slice) ...
WALL_CONTACT_PERCENTILE = 10.0
#: ... clipped to this range (mm): ribs, intercostal muscle and pleura.
WALL_DEPTH_RANGE_MM = (5.0, 25.0)
#: Aerated lung of the same side must lie within this distance above and below (mm) in the same column.
SANDWICH_MM = 100.0


def _first_event(events: np.ndarray, axis: int, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """Distance (pixels) to, and code of, the first non-zero event along an axis from each pixel.

    ``reverse`` walks toward lower indices. The code is 0 where no event follows before the edge.
    """
    n = events.shape[axis]
    pos = np.arange(n).reshape([-1 if a == axis else 1 for a in range(events.ndim)])
    if not reverse:
        nxt = np.flip(np.minimum.accumulate(np.flip(np.where(events > 0, pos, n), axis), axis), axis)
        dist = nxt - pos
    else:
        nxt = np.maximum.accumulate(np.where(events > 0, pos, -1), axis)
        dist = pos - nxt
    valid = (nxt >= 0) & (nxt < n)
    code = np.take_along_axis(events, np.clip(nxt, 0, n - 1), axis) * valid
    return dist, code


def gap_pixels(
    lung2d: np.ndarray, blocked2d: np.ndarray, wall2d: np.ndarray, max_px: float, min_px: float = 1
) -> np.ndarray:
    """Pixels of straight gaps (along x or y) from the lung to the chest wall, ``min_px`` to ``max_px`` long.

    Args:
        lung2d: The lung of this side on the slice.
        blocked2d: Pixels a gap may not cross or end at (the other lung, airways, the mediastinal
            part of the wall).
        wall2d: The chest wall (outside the cage's inner surface).
        max_px: Longest gap in pixels.
        min_px: Shortest gap in pixels (thinner ones are the pleura itself).

    Returns:
        Boolean mask of gap pixels: neither lung, wall nor blocked.

    >>> lung = np.zeros((1, 8), bool); lung[0, 5:] = True
    >>> wall = np.zeros((1, 8), bool); wall[0, :2] = True
    >>> gap_pixels(lung, np.zeros((1, 8), bool), wall, 3).astype(int)
    array([[0, 0, 1, 1, 1, 0, 0, 0]])
    """
    lung_code, wall_code, block_code = 1, 2, 3
    events = np.zeros(lung2d.shape, np.int8)
    events[wall2d] = wall_code
    events[blocked2d] = block_code
    events[lung2d] = lung_code
    free = events == 0
    out = np.zeros(lung2d.shape, bool)
    for axis in (0, 1):
        d_fwd, c_fwd = _first_event(events, axis, reverse=False)
        d_bwd, c_bwd = _first_event(events, axis, reverse=True)
        ends = ((c_fwd == lung_code) & (c_bwd == wall_code)) | ((c_fwd == wall_code) & (c_bwd == lung_code))
        length = d_fwd + d_bwd - 1
        out |= free & ends & (length <= max_px) & (length >= min_px)
    return out


def cage_depths(hu: np.ndarray, lungs: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """``cage_depth`` of every slice with lung, as a float32 (z, y, x) volume (0 elsewhere)."""
    out = np.zeros(lungs.shape, np.float32)
    for z in np.nonzero(lungs.any(axis=(1, 2)))[0]:
        out[z] = cage_depth(hu[z], lungs[z], spacing[0])
    return out


def sandwiched(aerated: np.ndarray, reach: int) -> np.ndarray:
    """Voxels with ``aerated`` both above and below them within ``reach`` slices, in the same column.

    >>> a = np.zeros((7, 1, 1), bool); a[1] = a[5] = True
    >>> sandwiched(a, 2)[:, 0, 0].astype(int)
    array([0, 0, 0, 1, 0, 0, 0])
    """
    nz = aerated.shape[0]
    cs = np.concatenate([np.zeros((1,) + aerated.shape[1:], np.int32), np.cumsum(aerated, axis=0, dtype=np.int32)])
    zi = np.arange(nz)
    above = (cs[np.minimum(zi + 1 + reach, nz)] - cs[zi + 1]) > 0
    below = (cs[zi] - cs[np.maximum(zi - reach, 0)]) > 0
    return above & below


def fill_pleural(
    region: np.ndarray,
    aerated: np.ndarray,
    dense: np.ndarray,
    depth: np.ndarray,
    blocked: np.ndarray,
    spacing: tuple[float, float, float],
    midline_x: float,
) -> np.ndarray:
    """Dense lung against the chest wall, for one lung in its bounding box.

    Args:
        region: The lung so far (aerated, closed, holes filled), (z, y, x).
        aerated: The aerated lung of this side (the threshold result, before closing).
        dense: Voxels at or above the lung threshold: only they are added (air left out of the
            lung, such as gas cut off below the diaphragm, stays out).
        depth: Depth inside the rib cage (mm) in the same box (``cage_depths`` of whole slices).
        blocked: Pixels never taken (the other lung, airways).
        spacing: (x, y, z) voxel size in mm.
        midline_x: Column of the body's midline in this box.

    Returns:
        Boolean mask of the pixels to add.
    """
    sx, sy, sz = spacing
    allowed = sandwiched(aerated, max(1, int(round(SANDWICH_MM / sz)))) & dense & ~blocked
    add = np.zeros(region.shape, bool)
    min_px = POCKET_MIN_AREA_MM2 / (sx * sy)
    max_gap = GAP_MAX_MM / sx
    min_gap = GAP_MIN_MM / sx
    costal = (np.abs((np.arange(region.shape[2]) - midline_x) * sx) >= COSTAL_MIN_OFFSET_MM)[None, :]
    for z in np.nonzero(region.any(axis=(1, 2)) & allowed.any(axis=(1, 2)))[0]:
        lung2d = region[z]
        edge = lung2d & ~ndimage.binary_erosion(lung2d)
        contact = float(np.clip(np.percentile(depth[z][edge], WALL_CONTACT_PERCENTILE), *WALL_DEPTH_RANGE_MM))
        wall = depth[z] < contact - sx  # one pixel outside the deepest-reaching lung border: the pleura
        gaps = gap_pixels(lung2d, blocked[z] | (wall & ~costal), wall & costal, max_gap, min_gap) & dense[z]
        if gaps.any():  # a gap is filled whole when most of it is allowed (its rim at the wall may not be)
            gl, gn = ndimage.label(gaps)
            ok = np.bincount(gl[allowed[z]], minlength=gn + 1) >= GAP_ALLOWED_FRACTION * np.bincount(
                gl.ravel(), minlength=gn + 1
            )
            ok[0] = False
            add[z] |= ok[gl]
        hull = convex_fill(lung2d)
        pockets = hull & ~lung2d & ~blocked[z]
        if not pockets.any():
            continue
        labels, n = ndimage.label(pockets)
        opening = labels * ndimage.binary_dilation(~hull)
        border = labels * ndimage.binary_dilation(lung2d)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for k in range(1, n + 1):
            if sizes[k] < min_px:
                add[z] |= (labels == k) & dense[z]
                continue
            d_open, d_lung = depth[z][opening == k], depth[z][border == k]
            if d_open.size == 0 or d_lung.size == 0:
                continue
            mo, ml = float(np.median(d_open)), float(np.median(d_lung))
            if mo <= OPENING_MAX_DEPTH_MM and mo < ml:
                add[z] |= (labels == k) & allowed[z]
    return add
