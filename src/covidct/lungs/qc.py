"""Quality checks of a lung mask, so that a person sees a suspect mask without opening every montage.

``mask_qc`` measures a label map (1 right, 2 left) against what a lung mask of an adult chest CT
looks like and returns the figures and a list of flags (empty: nothing suspect). It runs on the
output of either backend and uses the HU volume only to find the airways and the rib cage.
Each range below is deliberately wide: a flag asks a person to look, it does not reject the mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from covidct.lungs.airways import body_midline_x, find_airways
from covidct.lungs.thorax import BONE_MIN_HU, CAGE_SEARCH_MM, RING, fill_convex_points, outside_air

#: Both lungs together (mL). Adult total lung capacity is about 4-8 L (GLI reference values for static
#: lung volumes, Hall et al., Eur Respir J 2021; 57: 2000289); CT at full inspiration measures about
#: 80-95 % of it and an expiratory or shallow-breath scan much less. Below 1.5 L or above 9 L the mask is
#: probably cut short or has taken in something else (or the scan covers only part of the lungs).
TOTAL_VOLUME_ML = (1500.0, 9000.0)
#: One lung (mL): the same reasoning, for one lung (the right holds about 55 %).
LUNG_VOLUME_ML = (500.0, 5500.0)
#: Left/right volume ratio. The right lung has three lobes and is about 10-20 % larger than the
#: left (left/right about 0.8-0.9); outside 0.6-1.25 one lung is collapsed, filled with fluid or
#: lesion, or the mask has lost or gained a large part.
LEFT_RIGHT_RATIO = (0.6, 1.25)
#: Gas under the dome of the diaphragm inside the mask: in the lower half of the mask, connected pieces
#: of gas (HU below ``GAS_HU`` after a light smoothing, grown back over the gas voxels) of at least
#: ``GAS_PIECE_MIN_ML`` whose surroundings (a shell of ``SHELL_MM``) lie mostly (``OUTSIDE_FRACTION``)
#: outside the mask: stomach or colon joined to a lung base through a thin diaphragm. A bulla or an airway
#: inside the lung is surrounded by lung. Flagged above ``BELOW_DIAPHRAGM_MAX_ML``.
GAS_HU = -950.0
GAS_PIECE_MIN_ML = 1.0
SHELL_MM = 3.0
OUTSIDE_FRACTION = 0.5
BELOW_DIAPHRAGM_MAX_ML = 3.0
#: Mask outside the rib cage: voxels more than ``OUTSIDE_CAGE_MM`` outside the convex hull of the bones
#: within ``covidct.lungs.thorax.CAGE_SEARCH_MM`` of the mask on their slice, the bones gathered over a slab of
#: +-``CAGE_SLAB_MM`` (ribs run obliquely and thick slices blur them). A slice is judged only when it
#: has at least ``CAGE_MIN_BONE_PIXELS`` bone pixels and their hull holds all but
#: ``CAGE_MAX_OUTSIDE_FRACTION`` of its mask (else the bones there do not surround the lungs: the
#: apex above the first ribs, a slice with the spine only). Flagged above ``OUTSIDE_CAGE_MAX_ML``.
OUTSIDE_CAGE_MM = 10.0
CAGE_SLAB_MM = 10.0
CAGE_MIN_BONE_PIXELS = 50
CAGE_MAX_OUTSIDE_FRACTION = 0.5
OUTSIDE_CAGE_MAX_ML = 5.0
#: Trachea (above the carina) inside the mask: flagged above this (mL).
AIRWAY_IN_MASK_MAX_ML = 1.0
#: Per-slice area of a lung changes smoothly: between neighbouring slices that both hold at least
#: ``AREA_JUMP_MIN_FRACTION`` of the lung's largest slice area, a change of more than
#: ``AREA_JUMP_PER_MM`` of that area per mm (a pocket of gas or a cut-off part appearing at once) is a
#: jump. The apex and the base, where a slice cuts the lung tangentially, are not judged. Measured on
#: good masks: LUNG1-003 (3 mm slices) 5 %/mm, A0002 (8 mm) 9 %/mm, demo phantoms (5-6 mm) up to 13 %/mm;
#: LUNG1-003 with its trachea and colon gas in the mask: 18-23 %/mm.
AREA_JUMP_MIN_FRACTION = 0.25
AREA_JUMP_PER_MM = 0.15


def _area_jump(side: np.ndarray, sz: float) -> float:
    """Largest change of per-slice area between neighbouring slices, as a fraction of the largest area per mm."""
    area = side.sum(axis=(1, 2)).astype(float)
    if area.size < 2 or area.max() <= 0:
        return 0.0
    big = area >= AREA_JUMP_MIN_FRACTION * area.max()
    both = big[1:] & big[:-1]
    if not both.any():
        return 0.0
    return float(np.abs(np.diff(area))[both].max() / area.max() / sz)


def _gas_under_diaphragm(mask: np.ndarray, hu: np.ndarray, voxel_mm: float, voxel_ml: float) -> float:
    """mL of gas pieces in the lower half of the mask that are mostly surrounded by non-mask (see ``GAS_HU``)."""
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return 0.0
    top = (zs[0] + zs[-1]) // 2 + 1
    shell_vox = max(1, int(round(SHELL_MM / voxel_mm)))
    sub = hu[: top + shell_vox].astype(np.float32)
    m = mask[: top + shell_vox]
    gas = (ndimage.gaussian_filter(sub, 1.0) < GAS_HU) & m
    gas[top:] = False
    # the smoothed core, grown back over the gas voxels themselves (smoothing shrinks a pocket)
    gas = ndimage.binary_dilation(gas, iterations=3, mask=(sub < GAS_HU) & m) | gas
    pieces, n = ndimage.label(gas)
    if n == 0:
        return 0.0
    sizes = np.bincount(pieces.ravel(), minlength=n + 1) * voxel_ml
    total = 0.0
    for k, obj in enumerate(ndimage.find_objects(pieces), start=1):
        if obj is None or sizes[k] < GAS_PIECE_MIN_ML:
            continue
        box = tuple(slice(max(s.start - shell_vox, 0), s.stop + shell_vox) for s in obj)
        piece = pieces[box] == k
        shell = ndimage.binary_dilation(piece, iterations=shell_vox) & ~piece
        if shell.any() and float((~m[box][shell]).mean()) >= OUTSIDE_FRACTION:
            total += float(sizes[k])
    return total


def _outside_cage(mask: np.ndarray, hu: np.ndarray, pixel_mm: float, slice_mm: float) -> np.ndarray:
    """Mask pixels more than ``OUTSIDE_CAGE_MM`` outside the convex hull of the nearby bones, per slice."""

    out = np.zeros(mask.shape, bool)
    pad = int(np.ceil(CAGE_SEARCH_MM / pixel_mm))
    slab = 2 * int(round(CAGE_SLAB_MM / slice_mm)) + 1
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return out
    z0, z1 = zs[0], zs[-1] + 1
    bones = ndimage.maximum_filter1d((hu[z0:z1] > BONE_MIN_HU).view(np.uint8), slab, axis=0) > 0
    limit = OUTSIDE_CAGE_MM / pixel_mm
    for z in zs:
        rows = np.nonzero(mask[z].any(axis=1))[0]
        cols = np.nonzero(mask[z].any(axis=0))[0]
        r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, mask.shape[1])
        c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, mask.shape[2])
        bone = bones[z - z0, r0:r1, c0:c1]
        if np.count_nonzero(bone) < CAGE_MIN_BONE_PIXELS:
            continue
        try:
            hull = ConvexHull(np.argwhere(bone).astype(float))
        except (QhullError, ValueError):
            continue
        m = mask[z, r0:r1, c0:c1]
        cage = fill_convex_points(hull.points[hull.vertices], m.shape)
        if np.count_nonzero(m & ~cage) > CAGE_MAX_OUTSIDE_FRACTION * np.count_nonzero(m):
            continue  # bones that do not surround the lungs here
        grown = (hull.points[hull.vertices][:, None, :] + limit * RING[None]).reshape(-1, 2)
        out[z, r0:r1, c0:c1] = m & ~fill_convex_points(grown, m.shape)
    return out


def mask_qc(
    labels: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    airway_max_hu: float = -930.0,
    lung_max_hu: float = -320.0,
    airway=None,
) -> dict:
    """Figures and flags of a lung label map.

    Args:
        labels: (z, y, x) uint8, 1 right, 2 left, 3 side unknown; z index increasing toward the head.
        hu: The HU volume on the same grid.
        spacing: (x, y, z) voxel size in mm.
        airway_max_hu: Airway lumen threshold (for finding the trachea).
        lung_max_hu: Air-like threshold (for finding the trachea).
        airway: The ``covidct.lungs.airways.Airways`` already found (the threshold backend's), else found here.

    Returns:
        ``{"flags": [...], ...figures}``; each flag is a short phrase naming what is suspect.
    """

    sx, sy, sz = (float(s) for s in spacing)
    voxel_ml = sx * sy * sz / 1000.0
    mask = labels > 0
    counts = np.array([0, np.count_nonzero(labels == 1), np.count_nonzero(labels == 2), np.count_nonzero(labels > 2)])
    total = float(counts[1:].sum() * voxel_ml)
    right, left = float(counts[1] * voxel_ml), float(counts[2] * voxel_ml)
    flags: list[str] = []
    qc: dict = {
        "total_volume_ml": round(total, 1),
        "right_volume_ml": round(right, 1),
        "left_volume_ml": round(left, 1),
    }
    if not TOTAL_VOLUME_ML[0] <= total <= TOTAL_VOLUME_ML[1]:
        flags.append(
            f"total volume {total / 1000:.2f} L outside {TOTAL_VOLUME_ML[0] / 1000:.1f}-"
            f"{TOTAL_VOLUME_ML[1] / 1000:.1f} L"
        )
    sided = counts[3] == 0 and right > 0 and left > 0
    qc["left_right_ratio"] = round(left / right, 3) if sided else None
    if not sided:
        flags.append("left and right lung not told apart")
    else:
        for name, vol in (("right", right), ("left", left)):
            if not LUNG_VOLUME_ML[0] <= vol <= LUNG_VOLUME_ML[1]:
                flags.append(
                    f"{name} lung {vol / 1000:.2f} L outside {LUNG_VOLUME_ML[0] / 1000:.1f}-"
                    f"{LUNG_VOLUME_ML[1] / 1000:.1f} L"
                )
        if not LEFT_RIGHT_RATIO[0] <= left / right <= LEFT_RIGHT_RATIO[1]:
            flags.append(
                f"left/right volume ratio {left / right:.2f} outside {LEFT_RIGHT_RATIO[0]}-{LEFT_RIGHT_RATIO[1]}"
            )
    below = _gas_under_diaphragm(mask, hu, sx, voxel_ml)
    qc["below_diaphragm_ml"] = round(below, 1)
    if below > BELOW_DIAPHRAGM_MAX_ML:
        flags.append(f"{below:.0f} mL of gas under the diaphragm in the mask")
    outside = float(_outside_cage(mask, hu, sx, sz).sum() * voxel_ml)
    qc["outside_rib_cage_ml"] = round(outside, 1)
    if outside > OUTSIDE_CAGE_MAX_ML:
        flags.append(f"{outside:.0f} mL of mask outside the rib cage")
    if airway is None:
        air = hu < lung_max_hu
        out_air = outside_air(air)
        airway = find_airways(hu, air & ~out_air, spacing, airway_max_hu, body_midline_x(~out_air))
        del air, out_air
    qc["airway_found"] = bool(airway.found)
    qc["carina_found"] = airway.carina_z is not None
    if airway.found:
        top = airway.mask.copy()
        if airway.carina_z is not None:
            top[: airway.carina_z + 1] = False
        in_mask = float((top & mask).sum() * voxel_ml)
        qc["trachea_in_mask_ml"] = round(in_mask, 1)
        if in_mask > AIRWAY_IN_MASK_MAX_ML:
            flags.append(f"{in_mask:.0f} mL of trachea inside the mask")
    else:
        qc["trachea_in_mask_ml"] = None
        flags.append("no trachea found")
    jumps = {name: _area_jump(labels == value, sz) for name, value in (("right", 1), ("left", 2))}
    qc["max_area_jump_per_mm"] = {k: round(v, 4) for k, v in jumps.items()}
    for name, jump in jumps.items():
        if jump > AREA_JUMP_PER_MM:
            flags.append(f"{name} lung area jumps {100 * jump:.0f} %/mm between slices")
    qc["flags"] = flags
    return qc
