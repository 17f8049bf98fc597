"""The model-ready array: lung-cropped, air outside the lung, windowed, resized."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from covidct.dicom import HU_AIR

#: Default HU window, as the Keras 3D CT example (min -1000, max 400) the original study followed.
WINDOW_HU = (-1000.0, 400.0)
DEFAULT_SHAPE = (64, 128, 128)


def lung_bbox(mask: np.ndarray, margin_vox: tuple[int, int, int] = (0, 0, 0)) -> tuple[slice, slice, slice]:
    """Bounding box of the nonzero voxels of a (z, y, x) mask, grown by ``margin_vox`` and clipped.

    >>> m = np.zeros((5, 6, 7), bool); m[2, 1:3, 4] = True
    >>> lung_bbox(m, (1, 1, 1))
    (slice(1, 4, None), slice(0, 4, None), slice(3, 6, None))
    """
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        raise ValueError("empty lung mask: nothing to crop")
    return tuple(
        slice(max(int(i.min()) - m, 0), min(int(i.max()) + 1 + m, n)) for i, m, n in zip(idx, margin_vox, mask.shape)
    )


def window(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip HU to [lo, hi] and scale linearly to [0, 1] (float32).

    >>> window(np.array([-2000, -1000, -300, 400, 900]), -1000, 400).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    return ((np.clip(hu.astype(np.float32), lo, hi) - lo) / np.float32(hi - lo)).astype(np.float32)


def resize(volume: np.ndarray, shape: tuple[int, int, int], order: int = 1) -> np.ndarray:
    """Resize a 3D array to ``shape`` by spline interpolation (linear by default)."""
    factors = [t / s for t, s in zip(shape, volume.shape)]
    out = ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)
    assert out.shape == tuple(shape), (out.shape, shape)
    return out


def model_array(
    hu: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    margin_mm: float = 5.0,
    hu_window: tuple[float, float] = WINDOW_HU,
) -> np.ndarray:
    """Build the model input from a (z, y, x) HU volume and its binary lung mask.

    Crops to the lung bounding box plus ``margin_mm``, sets voxels outside the
    lung to air, windows to ``hu_window`` scaled to [0, 1], resizes to ``shape``
    (depth, height, width).

    Args:
        hu: HU array (z, y, x).
        mask: Lung mask, same shape; any nonzero value is lung.
        spacing: (x, y, z) voxel size in mm.
        shape: Output (depth, height, width).
        margin_mm: Margin around the lung bounding box.
        hu_window: (low, high) HU mapped to 0 and 1.

    Returns:
        float32 array of ``shape`` with values in [0, 1].
    """
    lung = mask > 0
    margin = tuple(int(np.ceil(margin_mm / s)) for s in (spacing[2], spacing[1], spacing[0]))
    box = lung_bbox(lung, margin)
    crop = np.where(lung[box], hu[box], HU_AIR)
    return np.clip(resize(window(crop, *hu_window), shape), 0.0, 1.0).astype(np.float32)
