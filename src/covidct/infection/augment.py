"""Augmentation of 2D slice/mask pairs for the infection U-Net.

Geometry (image and mask together): a left-right flip, rotation up to 15 degrees, zoom 0.85-1.15,
shift up to 8 % and, with probability 0.3, an elastic deformation (a smooth random displacement
field of up to about 3 % of the side). Intensity (image only, on the slice scaled to [0, 1], so other
scanners, kernels, windows and exports are covered): gamma 0.7-1.5, contrast x0.75-1.25 and
brightness +-0.1, Gaussian blur, Gaussian noise, and local contrast equalization (CLAHE), each with
its own probability; the slice is standardized again afterwards, as every input is. Labels stay
labels (nearest-neighbour sampling).
"""

from __future__ import annotations

import numpy as np

from covidct.infection.unet import standardize

P_ELASTIC = 0.3
P_GAMMA = 0.3
P_CONTRAST = 0.5
P_BLUR = 0.2
P_NOISE = 0.2
P_CLAHE = 0.15


def _coordinates(shape: tuple[int, int], rng: np.random.Generator, elastic: bool) -> np.ndarray:
    """Sampling coordinates (2, H, W) of a random flip-free affine map plus an optional elastic field."""
    from scipy import ndimage

    h, w = shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    zoom = rng.uniform(0.85, 1.15)
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


def augment_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gamma, contrast/brightness, blur, noise and CLAHE of one standardized slice; standardized again."""
    from scipy import ndimage

    lo, hi = float(image.min()), float(image.max())
    u = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    if rng.random() < P_GAMMA:
        u = np.clip(u, 0, 1) ** rng.uniform(0.7, 1.5)
    if rng.random() < P_CONTRAST:
        m = float(u.mean())
        u = (u - m) * rng.uniform(0.75, 1.25) + m + rng.uniform(-0.1, 0.1)
    if rng.random() < P_BLUR:
        u = ndimage.gaussian_filter(u, rng.uniform(0.3, 1.2) * u.shape[0] / 128)
    if rng.random() < P_NOISE:
        u = u + rng.normal(0.0, rng.uniform(0.0, 0.05), u.shape)
    if rng.random() < P_CLAHE:
        from skimage.exposure import equalize_adapthist

        u = equalize_adapthist(np.clip(u, 0, 1), clip_limit=rng.uniform(0.01, 0.03))
    return standardize(u)


def augment_pairs(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Randomly augmented copies of (N, H, W, 1) standardized slices and their label maps."""
    from scipy import ndimage

    xa, ya = np.empty(x.shape, np.float32), np.empty_like(y)
    for i in range(len(x)):
        img, msk = x[i, ..., 0].astype(np.float32), y[i, ..., 0]
        if rng.random() < 0.5:
            img, msk = img[:, ::-1], msk[:, ::-1]
        coords = _coordinates(img.shape, rng, rng.random() < P_ELASTIC)
        img = ndimage.map_coordinates(img, coords, order=1, mode="constant", cval=float(img.min()))
        msk = ndimage.map_coordinates(np.ascontiguousarray(msk), coords, order=0, mode="constant", cval=0)
        xa[i, ..., 0] = augment_intensity(img, rng)
        ya[i, ..., 0] = msk
    return xa, ya
