"""Lung label maps: 0 background, 1 right lung, 2 left lung (lungmask's convention), 3 lung whose
side could not be told; the left/right split of a binary mask, volumes per lung, and the versions of
the packages that shape a mask."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np
from scipy import ndimage

from covidct.volume import ball, bounding_box

RIGHT, LEFT, UNKNOWN_SIDE = 1, 2, 3


def volume_stats(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Total, right and left lung volume (mL) of a label map, for the provenance JSON of either backend."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        "lung_volume_ml": round(float(np.count_nonzero(labels) * voxel_ml), 1),
        "right_volume_ml": round(float(np.count_nonzero(labels == RIGHT) * voxel_ml), 1),
        "left_volume_ml": round(float(np.count_nonzero(labels == LEFT) * voxel_ml), 1),
    }


def split_left_right(lung: np.ndarray, spacing) -> tuple[np.ndarray, bool]:
    """Label a binary lung mask: 1 right (low x in LPS), 2 left; 3 if the sides cannot be separated.

    Two large components are the two lungs (smaller ones join the side whose centroid is nearer);
    one component is eroded until it falls apart (lungs touching at the anterior junction).
    """
    labels = np.zeros(lung.shape, np.uint8)
    box = bounding_box(lung, 1)
    if box is None:
        return labels, False
    sub = lung[box]
    comps, n = ndimage.label(sub)
    sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:] if n else np.array([])
    order = np.argsort(sizes)[::-1] + 1
    seeds = None
    if n >= 2 and sizes[order[1] - 1] > 0.1 * sizes[order[0] - 1]:
        seeds = np.zeros(sub.shape, np.int32)
        seeds[comps == order[0]] = 1
        seeds[comps == order[1]] = 2
        xc = np.bincount(
            comps.ravel(), weights=np.broadcast_to(np.arange(sub.shape[2]), sub.shape).ravel(), minlength=n + 1
        )[1:] / np.maximum(sizes, 1)
        for k in order[2:]:  # smaller pieces join the lung whose centroid is nearer
            seeds[comps == k] = 1 if abs(xc[k - 1] - xc[order[0] - 1]) <= abs(xc[k - 1] - xc[order[1] - 1]) else 2
        parts = [sub & (seeds == 1), sub & (seeds == 2)]
    else:
        eroded = sub
        parts = None
        for _ in range(6):  # separate lungs that touch at the anterior junction
            eroded = ndimage.binary_erosion(eroded, ball(1, 3))
            ec, en = ndimage.label(eroded)
            if en >= 2:
                esizes = np.bincount(ec.ravel(), minlength=en + 1)[1:]
                eorder = np.argsort(esizes)[::-1] + 1
                if esizes[eorder[1] - 1] > 0.1 * esizes[eorder[0] - 1]:
                    seeds = np.zeros(eroded.shape, np.int32)
                    seeds[ec == eorder[0]] = 1
                    seeds[ec == eorder[1]] = 2
                    _, idx = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
                    nearest = seeds[tuple(idx)]
                    parts = [sub & (nearest == 1), sub & (nearest == 2)]
                    break
        if parts is None:
            labels[box][sub] = UNKNOWN_SIDE
            return labels, False
    cx = [float((p.sum(axis=(0, 1)) * np.arange(sub.shape[2])).sum() / max(p.sum(), 1)) for p in parts]
    right, left = (parts[0], parts[1]) if cx[0] < cx[1] else (parts[1], parts[0])
    target = labels[box]
    target[right] = RIGHT
    target[left] = LEFT
    return labels, True


def versions() -> dict[str, str]:
    """Versions of the packages that shape a mask."""

    out = {}
    for pkg in ("covidct", "numpy", "scipy", "SimpleITK", "lungmask", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
