"""Label maps brought from the isotropic analysis grid back onto the scan's own grid (the HU volume's).

Method: **label-wise linear interpolation of the one-hot maps**. For each label ``l`` the indicator
``[map == l]`` is resampled with trilinear interpolation onto the target grid, giving ``p_l`` in [0, 1];
background is ``1 - sum(p_l)`` (linear interpolation of a partition of unity stays one). A target voxel
takes the label with the largest ``p``: a two-label map becomes "inside where more than half of the
interpolated indicator", the usual ``> 0.5`` rule, and a multi-label map never gets a label absent
from both neighbours (as averaging codes would) nor the staircase of nearest-neighbour resampling.
Ties go to the label met first (background before any label, lower codes before higher ones).

``within`` restricts the choice: inside it a voxel takes the best *label* even when background wins
(every lung voxel gets a lobe or zone, every infected voxel a lesion type), outside it nothing. That
keeps the native maps nested as the isotropic ones are: regions and infection inside the lungs, types
on the infection.

The read-out's volumes and percentages stay computed on the isotropic grid (``results/severity``);
the native maps are for viewing and for the DICOM objects, and ``native_summary`` reports their
volumes beside the isotropic ones.
"""

from __future__ import annotations

import numpy as np

from covidct.lungs.lobes import geometric_zones, lobes_in_lung
from covidct.severity.readout import TYPE_CONSOLIDATION, TYPE_GGO
from covidct.volume import bounding_box

#: Voxels of margin around a label's bounding box when only that part of the target grid is resampled.
BOX_MARGIN_VOX = 2


def _target_box(labels, mask: np.ndarray, reference) -> tuple[slice, slice, slice] | None:
    """The part (z, y, x slices) of ``reference``'s grid that the nonzero voxels of ``mask`` (an array
    on ``labels``' grid) can reach, with a margin; None when the mask is empty or outside the grid."""

    box = bounding_box(mask, 1)
    if box is None:
        return None
    corners = []
    for k in (box[0].start, box[0].stop - 1):
        for j in (box[1].start, box[1].stop - 1):
            for i in (box[2].start, box[2].stop - 1):
                point = labels.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
                corners.append(reference.TransformPhysicalPointToContinuousIndex(point))
    corners = np.array(corners)
    size = np.array(reference.GetSize())
    lo = np.clip(np.floor(corners.min(axis=0)).astype(int) - BOX_MARGIN_VOX, 0, size)
    hi = np.clip(np.ceil(corners.max(axis=0)).astype(int) + BOX_MARGIN_VOX + 1, 0, size)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))


def _sub_grid(reference, box):
    """An empty image on the part ``box`` (z, y, x slices) of ``reference``'s grid."""
    import SimpleITK as sitk

    start = (box[2].start, box[1].start, box[0].start)
    size = [box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start]
    sub = sitk.Image(size, sitk.sitkUInt8)
    sub.SetSpacing(reference.GetSpacing())
    sub.SetDirection(reference.GetDirection())
    sub.SetOrigin(reference.TransformIndexToPhysicalPoint(tuple(int(v) for v in start)))
    return sub


def interpolate_labels(labels, reference, within: np.ndarray | None = None) -> np.ndarray:
    """A label map (SimpleITK image) on ``reference``'s grid by label-wise linear interpolation.

    Args:
        labels: The label map (any integer type), e.g. a lung label map on the 1.5 mm grid.
        reference: The target grid (a SimpleITK image, e.g. the HU volume).
        within: Optional boolean array (z, y, x) on the target grid: inside it every voxel takes its
            best label (background is not a choice), outside it every voxel is 0.

    Returns:
        uint8 labels (z, y, x) on the target grid.
    """
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(labels)
    codes = [int(c) for c in np.unique(array) if c != 0]
    shape = reference.GetSize()[::-1]
    out = np.zeros(shape, np.uint8)
    box = _target_box(labels, array != 0, reference)
    if box is None:
        return out
    sub = _sub_grid(reference, box)
    best = np.zeros(out[box].shape, np.float32)
    best_label = np.zeros(out[box].shape, np.uint8)
    total = np.zeros(out[box].shape, np.float32)
    for code in codes:
        onehot = sitk.GetImageFromArray((array == code).astype(np.float32))
        onehot.CopyInformation(labels)
        p = sitk.GetArrayFromImage(sitk.Resample(onehot, sub, sitk.Transform(), sitk.sitkLinear, 0.0))
        better = p > best
        best[better] = p[better]
        best_label[better] = code
        total += p
    if within is None:
        out[box] = np.where(best > 1.0 - total, best_label, 0)
    else:
        out[box] = np.where(within[box], best_label, 0)
    return out


def hu_band_types(hu: np.ndarray, infected: np.ndarray, consolidation_above_hu: float) -> np.ndarray:
    """Lesion types by HU bands (the read-out's rule without a lesion-type map): consolidation (2) above
    ``consolidation_above_hu``, ground-glass (1) at or below it, on the infected voxels only.

    >>> hu_band_types(np.array([-600, -100, 20]), np.array([True, True, False]), -200.0).tolist()
    [1, 2, 0]
    """

    types = np.where(hu > consolidation_above_hu, TYPE_CONSOLIDATION, TYPE_GGO).astype(np.uint8)
    return np.where(infected, types, 0).astype(np.uint8)


def volumes_ml(array: np.ndarray, spacing, codes) -> dict[str, float]:
    """Volume (mL) of each code of a label map (``{str(code): mL}``).

    >>> volumes_ml(np.array([[[0, 1, 1, 2]]]), (2.0, 1.0, 0.5), (1, 2))
    {'1': 0.002, '2': 0.001}
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {str(c): round(float(np.count_nonzero(array == c)) * voxel_ml, 3) for c in codes}


def scored_regions(lung_labels: np.ndarray, lobes: np.ndarray | None, spacing, scheme: str) -> np.ndarray:
    """The region map the read-out scored (``covidct.severity.readout``: lobes inside the lung mask, or the six
    zones), on the lung voxels of the isotropic grid.

    Args:
        lung_labels: Lung label map (1 right, 2 left, 3 side unknown).
        lobes: A lobe model's map on the same grid (``scheme`` lobes), else None.
        spacing: Voxel size (x, y, z) in mm.
        scheme: ``lobes`` or ``zones``, as the read-out JSON says (it falls back to zones when a lobe is missing).
    """

    out = np.zeros(lung_labels.shape, np.uint8)
    box = bounding_box(lung_labels > 0)
    if box is None:
        return out
    if scheme == "lobes":
        if lobes is None:
            raise ValueError("the read-out scored lobes but no lobe map is given")
        out[box] = lobes_in_lung(lung_labels[box], lobes[box], spacing)[0]
    else:
        out[box] = geometric_zones(lung_labels[box])
    return out


def native_maps(
    hu,
    lung_labels,
    infection,
    regions: np.ndarray,
    types: np.ndarray | None,
    consolidation_above_hu: float,
) -> dict[str, np.ndarray]:
    """The native-grid maps of one scan.

    Args:
        hu: The HU volume (SimpleITK image): the target grid.
        lung_labels: The lung label map on the isotropic grid (SimpleITK image).
        infection: The infection mask on the isotropic grid (SimpleITK image).
        regions: The scored regions (``scored_regions``) as an array on the isotropic grid.
        types: The lesion-type map (1 ground-glass, 2 consolidation) on the isotropic grid, or None
            when the read-out used HU bands (a binary U-Net): the native types then come from the
            same HU bands on the native HU.
        consolidation_above_hu: The read-out's band cut.

    Returns:
        ``lungs``, ``regions``, ``infection``, ``types``: uint8 (z, y, x) on ``hu``'s grid; regions
        inside the lungs, infection inside the lungs, types on the infection.
    """
    import SimpleITK as sitk

    def image(array):
        out = sitk.GetImageFromArray(array.astype(np.uint8))
        out.CopyInformation(lung_labels)
        return out

    lungs = interpolate_labels(lung_labels, hu)
    inside = lungs > 0
    infected = (interpolate_labels(infection, hu) > 0) & inside
    if types is None:
        native_types = hu_band_types(sitk.GetArrayViewFromImage(hu), infected, consolidation_above_hu)
    else:
        native_types = interpolate_labels(image(types), hu, within=infected)
    return {
        "lungs": lungs,
        "regions": interpolate_labels(image(regions), hu, within=inside),
        "infection": infected.astype(np.uint8),
        "types": native_types,
    }


def native_summary(maps: dict[str, np.ndarray], isos: dict[str, np.ndarray | None], native, isotropic) -> dict:
    """Volume (mL) of each code of each map on the native grid (``native``, an image) and, where the
    isotropic map is given, on the isotropic grid (``isotropic``); and the method."""
    out: dict = {"method": "label-wise linear interpolation of the one-hot maps"}
    for name, array in maps.items():
        codes = sorted(int(c) for c in np.unique(array) if c)
        out[name] = {"native_ml": volumes_ml(array, native.GetSpacing(), codes)}
        if isos.get(name) is not None:
            out[name]["isotropic_ml"] = volumes_ml(isos[name], isotropic.GetSpacing(), codes)
    return out
