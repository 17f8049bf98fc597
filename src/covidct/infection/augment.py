"""Augmentation of 2D slice/mask pairs in the infection U-Net's input space (``covidct.infection.inputs``).

Geometry (image and mask together): left-right and up-down flips, rotation up to 15 degrees, zoom
0.8-1.25, shift up to 8 % and, with probability 0.3, an elastic deformation (a smooth random
displacement field of up to about 3 % of the side).

Intensity (image only), for other scanners, kernels, exports, windows and patients. The slices are
calibrated (aerated lung 0, soft tissue 1), so each augmentation is a change an export, a scanner or a
patient's position could make:

- **dependent density** (with the slice's lung mask): a supine patient's lungs are denser toward the back
  (gravity-dependent atelectasis and blood volume; on free-breathing planning CTs the gradient reaches
  250-300 HU, ground-glass levels); a smooth ramp rising toward one side of each lung (0-0.3, i.e. up to
  about 270 HU, over 8-30 % of the slice) is added, the labels unchanged, so a smooth gradient is not
  read as a lesion;

- **window**: the export's lung window clipped tissue at a lower level (top at 0.55-1 of the tissue
  anchor; calibration then maps that top to 1) or the air at a higher one (bottom -0.25..0.05);
- **calibration error**: the anchors off by a scale of 0.85-1.15 and a shift of +-0.08;
- **gamma** 0.7-1.5 of the 0..1 range (a non-linear display curve);
- **blur** (sharp vs soft kernels), **resolution** (down-sampled by 1.5-3x and back: thick slices,
  small exports), **noise** (low dose);
- **CLAHE** (contrast-enhanced exports), re-anchored on the slice's dark and bright pixels.

Each with its own probability; labels stay labels (nearest-neighbour sampling); outputs are clipped to
the input space's range.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.exposure import equalize_adapthist

from covidct.infection.inputs import CLIP, resize

P_DEPENDENT = 0.4
#: Range of the dependent-density ramp's height at the lung's dependent edge, calibrated units (1 = soft
#: tissue minus aerated lung, about 940 HU). 0.05-0.6 was measured on real CT and changed nothing beyond the
#: seeds' spread (docs/measurements.md, infection U-Net).
DEPENDENT_RISE = (0.05, 0.3)
P_FLIP_LR = 0.5
P_FLIP_UD = 0.5
P_ELASTIC = 0.3
P_WINDOW = 0.3
P_CALIBRATION = 0.5
P_GAMMA = 0.3
P_BLUR = 0.2
P_RESOLUTION = 0.2
P_NOISE = 0.2
P_CLAHE = 0.15
ZOOM = (0.8, 1.25)


def _coordinates(shape: tuple[int, int], rng: np.random.Generator, elastic: bool) -> np.ndarray:
    """Sampling coordinates (2, H, W) of a random flip-free affine map plus an optional elastic field."""
    h, w = shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    zoom = np.exp(rng.uniform(np.log(ZOOM[0]), np.log(ZOOM[1])))
    angle = np.deg2rad(rng.uniform(-15, 15))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
    shift = rng.uniform(-0.08, 0.08, 2) * np.array([h, w])
    grid = np.mgrid[:h, :w].reshape(2, -1).astype(np.float32)
    coords = (rot @ (grid - centre[:, None]) + centre[:, None] - shift[:, None]).reshape(2, h, w)
    if elastic:
        coarse = rng.normal(0.0, 0.03 * max(h, w) / 2, (2, 5, 5))
        field = np.stack([ndimage.zoom(c, (h / 5, w / 5), order=3)[:h, :w] for c in coarse])
        coords = coords + field
    return coords


def _clahe(u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """CLAHE of a calibrated slice, re-anchored: the dark pixels' 5th percentile to 0, the bright ones'
    median to 1 (what calibration does on a contrast-enhanced export)."""
    span = CLIP[1] - CLIP[0]
    eq = equalize_adapthist(np.clip((u - CLIP[0]) / span, 0.0, 1.0), clip_limit=rng.uniform(0.01, 0.03))
    dark, bright = eq[u < 0.3], eq[u > 0.7]
    if dark.size < 20 or bright.size < 20:
        return u
    lo, hi = float(np.percentile(dark, 5)), float(np.median(bright))
    return (eq - lo) / (hi - lo) if hi > lo else u


def dependent_density(image: np.ndarray, lung: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth density ramp inside the lungs, highest at each lung column's edge toward one side of the
    slice (up or down, at random: the back may lie either way in a turned 2D source).

    >>> lung = np.zeros((20, 10), bool); lung[5:15, 2:8] = True
    >>> out = dependent_density(np.zeros((20, 10), np.float32), lung, np.random.default_rng(0))
    >>> bool(out[~lung].any()), bool((out[lung] > 0).all())
    (False, True)
    """
    lung = np.asarray(lung) > 0
    if not lung.any():
        return image
    rows = np.arange(lung.shape[0])[:, None]
    down = rng.random() < 0.5
    edge = np.where(lung, rows, -1).max(axis=0) if down else np.where(lung, rows, lung.shape[0]).min(axis=0)
    depth = (edge[None, :] - rows) if down else (rows - edge[None, :])
    length = rng.uniform(0.08, 0.3) * lung.shape[0]
    ramp = rng.uniform(*DEPENDENT_RISE) * np.exp(-np.clip(depth, 0, None) / length)
    ramp = ndimage.gaussian_filter(np.where(lung, ramp, 0.0).astype(np.float32), 1.0)
    return (image + np.where(lung, ramp, 0.0)).astype(np.float32)


def augment_intensity(image: np.ndarray, rng: np.random.Generator, lung: np.ndarray | None = None) -> np.ndarray:
    """Random dependent density (with ``lung``), window, calibration error, gamma, blur, resolution, noise and
    CLAHE of one calibrated slice."""
    u = np.asarray(image, np.float32)
    if lung is not None and rng.random() < P_DEPENDENT:
        u = dependent_density(u, lung, rng)
    if rng.random() < P_WINDOW:
        top = rng.uniform(0.55, 1.0)
        u = np.minimum(u, top) / top
        u = np.maximum(u, rng.uniform(CLIP[0], 0.05))
    if rng.random() < P_CALIBRATION:
        u = u * rng.uniform(0.85, 1.15) + rng.uniform(-0.08, 0.08)
    if rng.random() < P_GAMMA:
        inside = np.clip(u, 0.0, 1.0)
        u = u - inside + inside ** rng.uniform(0.7, 1.5)
    if rng.random() < P_BLUR:
        u = ndimage.gaussian_filter(u, rng.uniform(0.3, 1.2) * u.shape[0] / 128)
    if rng.random() < P_RESOLUTION:
        factor = rng.uniform(1.5, 3.0)
        small = (max(8, round(u.shape[0] / factor)), max(8, round(u.shape[1] / factor)))
        u = resize(resize(u, small, order=1), u.shape, order=1)
    if rng.random() < P_NOISE:
        u = u + rng.normal(0.0, rng.uniform(0.0, 0.05), u.shape)
    if rng.random() < P_CLAHE:
        u = _clahe(u, rng)
    return np.clip(u, *CLIP).astype(np.float32)


def augment_pairs(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, lung: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly augmented copies of (N, H, W, 1) calibrated slices and their label maps (and, with their lung
    masks ``lung``, the dependent density inside the lungs)."""
    xa, ya = np.empty(x.shape, np.float32), np.empty_like(y)
    for i in range(len(x)):
        img, msk = x[i, ..., 0].astype(np.float32), y[i, ..., 0]
        lng = lung[i, ..., 0] if lung is not None else None
        if rng.random() < P_FLIP_LR:
            img, msk = img[:, ::-1], msk[:, ::-1]
            lng = lng[:, ::-1] if lng is not None else None
        if rng.random() < P_FLIP_UD:
            img, msk = img[::-1], msk[::-1]
            lng = lng[::-1] if lng is not None else None
        coords = _coordinates(img.shape, rng, rng.random() < P_ELASTIC)
        img = ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=CLIP[0])
        msk = ndimage.map_coordinates(np.ascontiguousarray(msk), coords, order=0, mode="constant", cval=0)
        if lng is not None:
            lng = ndimage.map_coordinates(np.ascontiguousarray(lng), coords, order=0, mode="constant", cval=0)
        xa[i, ..., 0] = augment_intensity(img, rng, lng)
        ya[i, ..., 0] = msk
    return xa, ya
