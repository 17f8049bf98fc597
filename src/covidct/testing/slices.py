"""Synthetic axial chest slices with known lungs and lesions, for the infection U-Net's tests and benchmarks:
an HU slice and its 8-bit exports in any lung window, as a 2D source would hand them out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from covidct.hounsfield import HU_AIR

LUNG_HU = -860.0
TISSUE_HU = 40.0
GGO_HU = -450.0


@dataclass
class ChestSlice:
    """An HU slice and its truth: the lungs, the lesions (ground-glass, ``GGO_HU``)."""

    hu: np.ndarray
    lung: np.ndarray
    lesions: np.ndarray


def chest_slice(h: int = 160, w: int = 200, seed: int = 0, n_lesions: int = 0, noise_hu: float = 25.0) -> ChestSlice:
    """Air, an elliptic body of soft tissue, two elliptic lungs with noise and vessels, and ``n_lesions``
    round ground-glass lesions (radius 4-12 % of the height) inside the lungs.

    >>> s = chest_slice(n_lesions=2, seed=1)
    >>> bool(s.lesions.any()) and not bool((s.lesions & ~s.lung).any())
    True
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    hu = np.full((h, w), float(HU_AIR))
    body = ((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2 <= 1
    hu[body] = TISSUE_HU
    lung = np.zeros((h, w), bool)
    for cx in (0.3 * w, 0.7 * w):
        lung |= ((yy - h / 2) / (0.3 * h)) ** 2 + ((xx - cx) / (0.15 * w)) ** 2 <= 1
    hu[lung] = LUNG_HU + rng.normal(0, noise_hu, int(lung.sum()))
    hu[lung & (rng.random((h, w)) < 0.01)] = 0.0  # vessels
    lesions = np.zeros((h, w), bool)
    inside = np.argwhere(lung)
    for _ in range(n_lesions):
        cy, cx = inside[rng.integers(len(inside))]
        r = rng.uniform(0.04, 0.12) * h
        lesions |= ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & lung
    hu[lesions] = GGO_HU + rng.normal(0, noise_hu, int(lesions.sum()))
    return ChestSlice(hu, lung, lesions)


def export_8bit(hu: np.ndarray, lo: float = -1250.0, hi: float = 250.0) -> np.ndarray:
    """An 8-bit export of an HU slice in the window [lo, hi] (what a JPG/PNG source holds)."""
    return np.round(np.clip((hu - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
