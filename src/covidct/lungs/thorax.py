"""Where the lungs can be: outside air, the rib cage and per-slice convex hulls.

Pure array code on (z, y, x) arrays of an LPS-aligned grid (z index increasing toward the
head), shared by the threshold lung backend (``covidct.lungs``), the mask QC
(``covidct.lungs.qc``) and the evaluation against references (``covidct.lungs.evaluation``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

#: Cortical and cancellous bone of ribs, spine and sternum is above this HU even after partial volume
#: on a 1.5 mm grid; costal cartilage (100-200 HU) and most patient tables (carbon fibre) are below it.
BONE_MIN_HU = 250.0
#: Bones further than this from the lungs (in-plane, mm) are not part of the rib cage (arms, shoulders).
CAGE_SEARCH_MM = 30.0

_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def outside_air(air: np.ndarray) -> np.ndarray:
    """Air connected, within its own axial slice, to the in-plane border of the image.

    Slice by slice (not in 3D), so the airways and lungs of a scan that reaches an open mouth
    or nose are not mistaken for outside air.
    """
    lab, _ = ndimage.label(air, structure=_PLANE)
    edges = np.concatenate([lab[:, 0, :].ravel(), lab[:, -1, :].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()])
    border = np.unique(edges)
    border = border[border > 0]
    lut = np.zeros(int(lab.max()) + 1, bool)
    lut[border] = True
    return lut[lab]


def fill_convex_points(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The convex hull of (row, column) points, filled on a grid (pixel centres inside or on the hull).

    >>> fill_convex_points(np.array([[1, 1], [1, 3], [3, 2]]), (5, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 0, 0, 0]])
    """
    out = np.zeros(shape, bool)
    pts = np.asarray(points, float)
    if len(pts) == 0:
        return out
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):  # collinear or too few points: fill their bounding box
        r0, c0 = np.floor(pts.min(axis=0)).astype(int).clip(0)
        r1, c1 = np.ceil(pts.max(axis=0)).astype(int)
        out[r0 : r1 + 1, c0 : c1 + 1] = True
        return out
    # half-planes a*r + b*c + d <= 0 of the hull; on each row the hull is one interval
    eq = hull.equations
    lo_r = max(int(np.ceil(pts[:, 0].min() - 1e-6)), 0)
    hi_r = min(int(np.floor(pts[:, 0].max() + 1e-6)), shape[0] - 1)
    if hi_r < lo_r:
        return out
    r_all = np.arange(lo_r, hi_r + 1, dtype=float)
    a, b, d = eq[:, 0][None], eq[:, 1][None], eq[:, 2][None]
    rhs = -(a * r_all[:, None] + d)  # b*c <= rhs
    eps = 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = rhs / b
    lo_c = np.where(b < -eps, bound, -np.inf).max(axis=1)
    hi_c = np.where(b > eps, bound, np.inf).min(axis=1)
    feasible = np.all(np.where(np.abs(b) <= eps, rhs >= -1e-6, True), axis=1)
    lo_i = np.ceil(lo_c - 1e-6).clip(0, shape[1] - 1).astype(int)
    hi_i = np.floor(hi_c + 1e-6).clip(-1, shape[1] - 1).astype(int)
    cols = np.arange(shape[1])
    out[lo_r : hi_r + 1] = (cols[None] >= lo_i[:, None]) & (cols[None] <= hi_i[:, None]) & feasible[:, None]
    return out


def convex_fill(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a 2D mask's pixel centres, filled (pixel centres inside or on the hull).

    >>> m = np.zeros((5, 5), bool); m[1, 1] = m[1, 3] = m[3, 2] = True
    >>> convex_fill(m).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 0, 0, 0]])
    """
    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return np.zeros(mask.shape, bool)
    sub = mask[rows]
    first = np.argmax(sub, axis=1)
    last = mask.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    pts = np.concatenate([np.column_stack([rows, first]), np.column_stack([rows, last])])
    if np.ptp(pts[:, 0]) == 0 or np.ptp(pts[:, 1]) == 0:  # one row or one column: the extents are the hull
        out = np.zeros(mask.shape, bool)
        out[rows.min() : rows.max() + 1, pts[:, 1].min() : pts[:, 1].max() + 1] = True
        return out
    return fill_convex_points(pts, mask.shape)


#: Directions sampled when growing a convex hull (a 32-gon around each vertex).
RING = np.stack(
    [np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False)), np.cos(np.linspace(0, 2 * np.pi, 32, endpoint=False))],
    axis=1,
)


def grow_convex(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """The convex hull of a 2D mask grown outward by ``radius_px`` pixels, filled (empty mask: empty)."""
    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return np.zeros(mask.shape, bool)
    sub = mask[rows]
    first = np.argmax(sub, axis=1)
    last = mask.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    pts = np.concatenate([np.column_stack([rows, first]), np.column_stack([rows, last])]).astype(float)
    return fill_convex_points((pts[:, None, :] + radius_px * RING[None]).reshape(-1, 2), mask.shape)


def slice_hulls(mask: np.ndarray) -> np.ndarray:
    """Per-axial-slice convex hull of a (z, y, x) mask."""
    out = np.zeros(mask.shape, bool)
    for z in np.nonzero(mask.any(axis=(1, 2)))[0]:
        out[z] = convex_fill(mask[z])
    return out


def cage_depth(hu2d: np.ndarray, lungs2d: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Depth inside the rib cage (mm) of every pixel of one axial slice.

    The cage is the convex hull of the bone pixels (HU above ``BONE_MIN_HU``) within
    ``CAGE_SEARCH_MM`` of the lungs' convex hull (not the arms, not the patient table), together with
    the lungs themselves; the depth of a pixel is its distance to the outside of that hull (0 outside).

    Args:
        hu2d: HU of the slice.
        lungs2d: The lungs on the slice.
        pixel_mm: In-plane pixel size (mm).

    Returns:
        Float32 depth (mm), same shape.
    """
    out = np.zeros(hu2d.shape, np.float32)
    pad = int(np.ceil(CAGE_SEARCH_MM / pixel_mm)) + 1
    rows = np.nonzero(lungs2d.any(axis=1))[0]
    cols = np.nonzero(lungs2d.any(axis=0))[0]
    if rows.size == 0:
        return out
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, hu2d.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, hu2d.shape[1])
    lung = lungs2d[r0:r1, c0:c1]
    near = grow_convex(lung, CAGE_SEARCH_MM / pixel_mm)  # the lungs' hull grown by CAGE_SEARCH_MM
    bone = (hu2d[r0:r1, c0:c1] > BONE_MIN_HU) & near
    hull = np.pad(convex_fill(bone | lung), 1)
    out[r0:r1, c0:c1] = ndimage.distance_transform_edt(hull)[1:-1, 1:-1] * pixel_mm
    return out
