"""Volumes on grids: ``Volume``, an array that travels with its grid (as torchio's ``Image`` travels
with its affine); resampling to the isotropic grid aligned with the patient axes; the bounding box of
a mask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from covidct.errors import CovidctError
from covidct.hounsfield import HU_AIR
from covidct.io import read_volume, write_volume

#: Two grids are one when their voxel sizes (mm), origins (mm) and directions agree to these tolerances.
GRID_ATOL = {"spacing": 1e-4, "origin": 1e-3, "direction": 1e-6}


@dataclass(frozen=True, eq=False)
class Volume:
    """A volume on its grid.

    Attributes:
        array: The voxels, axes (z, y, x).
        spacing: Voxel size (x, y, z) in mm, as SimpleITK gives it.
        origin: Position of the first voxel's centre (x, y, z) in mm (DICOM LPS).
        direction: The 3 x 3 direction cosines, row-major (SimpleITK's order).
        path: The file it was read from, for messages (None when built in memory).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    path: Path | None = None

    @classmethod
    def from_image(cls, image: sitk.Image, path: str | Path | None = None) -> Volume:
        """The voxels and grid of a SimpleITK image."""
        return cls(
            sitk.GetArrayFromImage(image),
            tuple(image.GetSpacing()),
            tuple(image.GetOrigin()),
            tuple(image.GetDirection()),
            Path(path) if path is not None else None,
        )

    @classmethod
    def read(cls, path: str | Path) -> Volume:
        """Read a NIfTI (or any SimpleITK-readable) volume."""
        return cls.from_image(read_volume(path), path)

    def to_image(self) -> sitk.Image:
        """The volume as a SimpleITK image (for SimpleITK and lungmask)."""
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def write(self, path: str | Path) -> None:
        """Write the volume atomically (``covidct.io.write_volume``)."""
        write_volume(path, self.to_image())

    def like(self, array: np.ndarray) -> Volume:
        """Another array on this grid (same shape)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array of shape {array.shape} on a grid of shape {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction)

    @property
    def voxel_ml(self) -> float:
        """The volume of one voxel in mL."""
        return float(np.prod(self.spacing)) / 1000.0

    def on_grid_of(self, other: Volume) -> bool:
        """Whether this volume lies on ``other``'s grid (same shape; spacing, origin and direction within
        GRID_ATOL)."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=GRID_ATOL["spacing"])
            and np.allclose(self.origin, other.origin, atol=GRID_ATOL["origin"])
            and np.allclose(self.direction, other.direction, atol=GRID_ATOL["direction"])
        )

    def require_grid_of(self, reference: Volume, what: str, patient: str) -> Volume:
        """This volume, when it lies on ``reference``'s grid (``reference`` is a patient's resampled volume).

        Raises:
            CovidctError: naming ``what`` and this volume's file.
        """
        if not self.on_grid_of(reference):
            raise CovidctError(f"the {what} is not on the resampled volume's grid", patient, self.path)
        return self


def canonical_grid(image, spacing_mm: float) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """The identity-direction (LPS-aligned) grid that covers ``image``'s physical extent.

    Args:
        image: A SimpleITK image with any direction.
        spacing_mm: Isotropic output spacing.

    Returns:
        ``(size_xyz, origin_xyz)`` of the output grid.
    """
    size = np.array(image.GetSize())
    # Physical positions of the 8 corner voxel centres.
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
        for corner in np.array(np.meshgrid(*[[0, s - 1] for s in size], indexing="ij")).reshape(3, -1).T
    ]
    corners = np.array(corners)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    n = np.floor((hi - lo) / spacing_mm + 1e-6).astype(int) + 1
    return tuple(int(v) for v in n), tuple(float(v) for v in lo)


def resample(image, spacing_mm: float = 1.5, interpolator: str = "linear", default_value: float = HU_AIR):
    """Resample to isotropic ``spacing_mm`` on a grid aligned with the patient axes.

    The output has identity direction, so its array axes are (z, y, x) with
    x toward patient left, y toward posterior, z toward superior (DICOM LPS),
    whatever the slice order or in-plane orientation of the input.

    Args:
        image: SimpleITK image (HU or labels).
        spacing_mm: Isotropic output spacing in mm.
        interpolator: ``linear`` for intensities, ``nearest`` for label maps.
        default_value: Value outside the input field of view (air for HU).

    Returns:
        The resampled SimpleITK image, same pixel type as the input.
    """
    if spacing_mm <= 0:
        raise ValueError(f"spacing must be positive, got {spacing_mm}")
    size, origin = canonical_grid(image, spacing_mm)
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interpolator]
    out = sitk.Resample(
        image,
        size,
        sitk.Transform(),
        interp,
        origin,
        (spacing_mm,) * 3,
        (1, 0, 0, 0, 1, 0, 0, 0, 1),
        float(default_value),
        image.GetPixelID(),
    )
    return out


def resample_like(image, reference, interpolator: str = "nearest", default_value: float = 0):
    """Resample ``image`` onto the grid of ``reference`` (e.g. a mask back to the HU grid)."""
    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interpolator]
    return sitk.Resample(image, reference, sitk.Transform(), interp, float(default_value), image.GetPixelID())


def bounding_box(mask: np.ndarray, margin: tuple[int, ...] | int = 0) -> tuple[slice, ...] | None:
    """Bounding box of the nonzero voxels of a mask, grown by ``margin`` voxels per axis and clipped;
    None when the mask is empty.

    >>> m = np.zeros((5, 6, 7), bool); m[2, 1:3, 4] = True
    >>> bounding_box(m, (1, 1, 1))
    (slice(1, 4, None), slice(0, 4, None), slice(3, 6, None))
    >>> bounding_box(np.zeros((2, 2), bool)) is None
    True
    """
    margins = (margin,) * mask.ndim if isinstance(margin, int) else margin
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.nonzero(mask.any(axis=other))[0]
        if idx.size == 0:
            return None
        out.append(slice(max(int(idx[0]) - margins[axis], 0), min(int(idx[-1]) + 1 + margins[axis], mask.shape[axis])))
    return tuple(out)


def ball(radius_vox: int, ndim: int = 2) -> np.ndarray:
    """A digital ball (disc in 2D) of radius ``radius_vox`` (at least 1), a structuring element.

    >>> ball(1).astype(int).tolist()
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    """
    r = max(int(radius_vox), 1)
    grid = np.ogrid[tuple(slice(-r, r + 1) for _ in range(ndim))]
    return sum(g**2 for g in grid) <= r * r
