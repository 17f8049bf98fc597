"""The model-ready array: lung-cropped, air outside the lung, windowed, resized."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from covidct import config
from covidct.hounsfield import HU_AIR, MODEL_WINDOW_HU, window
from covidct.volume import bounding_box

DEFAULT_SHAPE = tuple(config.default("export.shape"))


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
    margin_mm: float = config.default("export.margin_mm"),
    hu_window: tuple[float, float] = MODEL_WINDOW_HU,
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
    box = bounding_box(lung, margin)
    if box is None:
        raise ValueError("empty lung mask: nothing to crop")
    crop = np.where(lung[box], hu[box], HU_AIR)
    return np.clip(resize(window(crop, *hu_window), shape), 0.0, 1.0).astype(np.float32)
