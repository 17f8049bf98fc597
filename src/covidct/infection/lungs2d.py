"""Lungs on one 2D grey-level slice (an exported JPG/PNG, no HU, no spacing): the lung finder of 2D sources.

A 2D training or test image (COVID-SemiSeg's tight lung crops, a full-field-of-view 8-bit export)
carries no lung mask; the infection U-Net's input space needs one (``covidct.infection.inputs``: crop to
the lungs, calibrate intensities inside them). The finder works on any windowing, field of view and
in-plane orientation:

1. The slice is scaled to [0, 1] by its 1st and 99th percentiles, lightly smoothed and split into dark
   (air, aerated lung) and bright (tissue) by Otsu's threshold, computed at a working size of
   ``WORK_SIZE`` pixels.
2. **Outside air** is the dark area connected to the image border that covers at least
   ``OUTSIDE_BORDER_SHARE`` of the border's length (a full field of view is framed by air; a lung of a
   tight crop touches the border along a short stretch only), or that is cut off from the image by the
   body's outline (a lung lies inside the body's convex hull).
3. **Lungs** are the remaining dark regions of at least ``MIN_LUNG_SHARE`` of the image (the trachea,
   bowel gas pockets and corners are smaller), at most ``MAX_LUNGS`` of them, largest first, each
   closed and hole-filled (vessels and lesions surrounded by aerated lung), then the convex hull of each
   lung (lesions against the chest wall), clipped to the body.
4. **Orientation**: two lungs side by side are left and right. ``side_by_side`` tells whether they lie
   along the image's rows (the axial convention) or its columns (a slice rotated by 90 degrees, as
   COVID-SemiSeg's are); the input space turns the latter.

Returns a ``Lungs2D``: the lung region (hulls), the aerated-lung pixels it found, the body, and the
orientation. Nothing here is fitted to a data set: the constants are shares of the image, named below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covidct.lungs.thorax import convex_fill

#: Working size (pixels, the longer side) of the finder.
WORK_SIZE = 256
#: A dark region touching the border along at least this share of the border's length is outside air.
OUTSIDE_BORDER_SHARE = 0.25
#: A lung is at least this share of the image area.
MIN_LUNG_SHARE = 0.01
#: A slice whose border is at least this share dark is a full field of view framed by outside air.
FULL_VIEW_BORDER_SHARE = 0.5
#: Opening radius (share of the working size) that cuts the table and cables off the body.
BODY_OPENING_SHARE = 0.015
#: Lung-like: darker than this share of the way from aerated lung to soft tissue (ground-glass, about
#: -500 HU, lies near 0.45 of the way from -900 to +40 HU; fat, about -100 HU, near 0.85).
LUNG_LIKE_SHARE = 0.6
#: The second lung counts when it is at least this share of the first.
SECOND_LUNG_SHARE = 0.12
MAX_LUNGS = 2
#: The thoracic cavity: the body's bounding box less this share of its size on each side.
CAVITY_INSET = 0.12
#: Lungs spanning less than this share of the cavity along an axis were found only in part.
PARTIAL_LUNG_SHARE = 0.5
#: Closing radius of a lung region, as a share of the working size.
CLOSING_SHARE = 0.04


@dataclass
class Lungs2D:
    """The lungs of one 2D slice (all masks on the slice's own grid).

    Attributes:
        region: The lungs including dense lesions: each lung's filled convex hull inside the body.
        aerated: The dark (aerated) lung pixels the region was grown from.
        body: Everything that is not outside air.
        side_by_side: ``"rows"`` when the two lungs lie left and right along a row (axial convention),
            ``"columns"`` when they lie one above the other (a slice turned by 90 degrees); ``"rows"``
            for one lung, by the region's aspect.
        n_lungs: Lung regions found (0, 1 or 2).
    """

    region: np.ndarray
    aerated: np.ndarray
    body: np.ndarray
    side_by_side: str
    n_lungs: int

    def box(self) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) of the lungs: the lung region's bounding box, widened along an axis to
        the chest's expected cavity when the lungs found span less than ``PARTIAL_LUNG_SHARE`` of it.

        The cavity is the body's bounding box less ``CAVITY_INSET`` of its size per side (an adult
        chest's lungs span about 0.75-0.8 of its width and depth), so lungs found only in part (white
        lung in severe disease) still get a box of the chest's scale.
        """
        h, w = self.region.shape
        if not self.region.any():
            return (0, h, 0, w)
        box = list(_bbox(self.region))
        if self.body.any():
            r0, r1, c0, c1 = _bbox(self.body)
            dr, dc = CAVITY_INSET * (r1 - r0), CAVITY_INSET * (c1 - c0)
            cavity = (round(r0 + dr), round(r1 - dr), round(c0 + dc), round(c1 - dc))
            for axis in (0, 1):
                lo, hi = 2 * axis, 2 * axis + 1
                if box[hi] - box[lo] < PARTIAL_LUNG_SHARE * (cavity[hi] - cavity[lo]):
                    box[lo], box[hi] = min(box[lo], cavity[lo]), max(box[hi], cavity[hi])
        return tuple(int(v) for v in box)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of values in [0, 1] (between-class variance maximized over ``bins`` levels).

    >>> v = np.r_[np.full(100, 0.1), np.full(100, 0.8)]
    >>> 0.1 < otsu_threshold(v) < 0.8
    True
    """
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _resize(image: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    out = ndimage.zoom(image, factors, order=order, grid_mode=True, mode="nearest")
    return out[: shape[0], : shape[1]]


def _border_share(component: np.ndarray) -> float:
    """Share of the image border's pixels that belong to ``component``."""
    edge = np.concatenate([component[0], component[-1], component[1:-1, 0], component[1:-1, -1]])
    return float(edge.mean())


def _hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of a 2D mask (empty stays empty)."""
    return convex_fill(mask) if mask.any() else mask.copy()


def unit_scale(image: np.ndarray) -> np.ndarray:
    """A slice scaled to [0, 1] by its 1st and 99th percentiles (clipped), float32."""
    image = np.asarray(image, np.float32)
    lo, hi = np.percentile(image, [1, 99])
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def _disc(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1) ** 2
    return np.add.outer(r, r) <= radius**2


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def find_lungs(image: np.ndarray) -> Lungs2D:
    """The lungs of a 2D grey-level slice (any windowing, field of view, in-plane orientation).

    Args:
        image: (H, W) grey levels (8-bit export or any scale; dark = air).

    Returns:
        ``Lungs2D`` on the slice's grid; ``n_lungs`` 0 (and empty masks) when no region is large enough.

    >>> img = np.full((100, 140), 200.0); img[20:80, 15:60] = 20; img[20:80, 80:125] = 20
    >>> lungs = find_lungs(img)
    >>> lungs.n_lungs, lungs.side_by_side, int(lungs.region.sum()) >= 2 * 45 * 60 * 0.95
    (2, 'rows', True)
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"find_lungs takes one 2D slice, got shape {image.shape}")
    h, w = image.shape
    scale = WORK_SIZE / max(h, w)
    shape = (max(8, round(h * scale)), max(8, round(w * scale)))
    small = ndimage.gaussian_filter(_resize(unit_scale(image), shape, order=1), 1.0)
    dark = small < otsu_threshold(small.ravel())
    # outside air: a field of view framed by air (most of the border dark) loses every dark region on
    # the border; a tight crop only the regions that run along much of it
    full_view = _border_share(dark) >= FULL_VIEW_BORDER_SHARE
    labels, n = ndimage.label(dark)
    outside = np.zeros_like(dark)
    for idx in range(1, n + 1):
        comp = labels == idx
        share = _border_share(comp)
        if share >= OUTSIDE_BORDER_SHARE or (full_view and share > 0):
            outside |= comp
    body = ~outside
    if outside.any():
        # the body: its largest piece once thin lines (table, bed, cables) are cut, holes filled
        radius = max(1, round(BODY_OPENING_SHARE * max(shape)))
        opened = ndimage.binary_opening(body, _disc(radius))
        body = ndimage.binary_fill_holes(_largest(opened if opened.any() else body))
    lungs_like, aerated_level, tissue_level = _lung_like(small, dark, body)
    labels, n = ndimage.label(lungs_like)
    area = lungs_like.size
    regions: list[np.ndarray] = []
    if n:
        sizes = ndimage.sum_labels(lungs_like, labels, index=np.arange(1, n + 1))
        order = np.argsort(sizes)[::-1]
        for rank, idx in enumerate(order[:MAX_LUNGS]):
            if sizes[idx] < MIN_LUNG_SHARE * area:
                break
            if rank == 1 and sizes[idx] < SECOND_LUNG_SHARE * sizes[order[0]]:
                break
            regions.append(labels == (idx + 1))
    radius = max(1, round(CLOSING_SHARE * max(shape)))
    disc = _disc(radius)
    aerated = np.zeros_like(dark)
    region = np.zeros_like(dark)
    for comp in regions:
        aerated |= comp & dark
        closed = ndimage.binary_closing(np.pad(comp, radius), disc)[radius:-radius, radius:-radius]
        region |= _hull(ndimage.binary_fill_holes(closed))
    region &= body
    side = _side_by_side(regions, region)
    full = (h, w)
    return Lungs2D(
        region=_resize(region.astype(np.float32), full, order=0) > 0.5,
        aerated=_resize(aerated.astype(np.float32), full, order=0) > 0.5,
        body=_resize(body.astype(np.float32), full, order=0) > 0.5,
        side_by_side=side,
        n_lungs=len(regions),
    )


def _lung_like(small: np.ndarray, dark: np.ndarray, body: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Pixels of the body darker than ``LUNG_LIKE_SHARE`` of the way from aerated lung to soft tissue
    (aerated lung and ground-glass; not fat, muscle, vessels' walls or consolidation), and the two levels."""
    inside_dark = small[body & dark]
    inside_bright = small[body & ~dark]
    if inside_dark.size == 0 or inside_bright.size == 0:
        return np.zeros_like(dark), 0.0, 1.0
    aerated_level = float(np.percentile(inside_dark, 5))
    tissue_level = float(np.median(inside_bright))
    cut = aerated_level + LUNG_LIKE_SHARE * (tissue_level - aerated_level)
    return (small < cut) & body, aerated_level, tissue_level


def _side_by_side(regions: list[np.ndarray], region: np.ndarray) -> str:
    """``rows`` when the lungs lie along the rows (left and right), ``columns`` when one is above the other."""
    if len(regions) == 2:
        (y0, x0), (y1, x1) = (ndimage.center_of_mass(r) for r in regions)
        return "rows" if abs(x1 - x0) >= abs(y1 - y0) else "columns"
    if region.any():
        ys, xs = np.nonzero(region)
        return "rows" if np.ptp(xs) >= np.ptp(ys) else "columns"
    return "rows"
