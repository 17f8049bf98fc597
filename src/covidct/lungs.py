"""Lung segmentation: a classical threshold backend (CPU, no weights) and the
``lungmask`` R231 U-Net backend (CUDA when available).

Both return a label map on the input grid: 0 background, 1 right lung,
2 left lung (lungmask's convention), 3 lung whose side could not be told.
The lung *mask* used downstream is always ``labels > 0``: binary, never the
label values (the original study multiplied the image by the label map and so
doubled the HU of the left lung).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from covidct.errors import CovidctError, MissingWeightsError
from covidct.export import lung_bbox

log = logging.getLogger(__name__)

RIGHT, LEFT, UNKNOWN_SIDE = 1, 2, 3
#: Voxels below this HU are air-like (lung parenchyma, airways, outside air).
LUNG_MAX_HU = -320
#: Airway lumen is darker than aerated lung (about -850 HU).
AIRWAY_MAX_HU = -930
#: An airway slice larger than this factor times the previous one has leaked into the lung.
AIRWAY_LEAK_FACTOR = 2.5
#: A trachea cross-section is smaller than this (mm^2); an 18 mm trachea is about 250 mm^2.
TRACHEA_MAX_AREA_MM2 = 700.0
R231_FILE = "unet_r231-d5d2fc3d.pth"
R231_URL = "https://github.com/JoHof/lungmask/releases/download/v0.0/unet_r231-d5d2fc3d.pth"


@dataclass(frozen=True)
class ThresholdParams:
    """Parameters of the threshold backend (see config ``lung_mask.threshold``)."""

    lung_max_hu: float = LUNG_MAX_HU
    airway_max_hu: float = AIRWAY_MAX_HU
    min_component_ml: float = 30.0
    min_lung_ml: float = 300.0
    closing_mm: float = 6.0


def _ball(radius_vox: int, ndim: int = 2) -> np.ndarray:
    r = max(int(radius_vox), 1)
    grid = np.ogrid[tuple(slice(-r, r + 1) for _ in range(ndim))]
    return sum(g**2 for g in grid) <= r * r


def _border_touching(labels: np.ndarray) -> set[int]:
    """Labels of components touching the in-plane (x or y) border of a (z, y, x) array."""
    edges = [labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]]
    return set(np.unique(np.concatenate([e.ravel() for e in edges]))) - {0}


def find_airways(hu: np.ndarray, candidate: np.ndarray, spacing: tuple[float, float, float],
                 airway_max_hu: float = AIRWAY_MAX_HU) -> np.ndarray:
    """Trachea and main bronchi, grown slice by slice downward from the top with leak control.

    Args:
        hu: (z, y, x) HU array, z increasing toward superior.
        candidate: Air-like voxels inside the body.
        spacing: (x, y, z) voxel size in mm.
        airway_max_hu: Airway lumen threshold.

    Returns:
        Boolean airway mask (may be empty when no trachea is in the field of view).
    """
    pixel_area = spacing[0] * spacing[1]
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), sigma=1.0)
    dark = (smooth < airway_max_hu) & candidate
    airway = np.zeros_like(candidate)
    zs = np.nonzero(candidate.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return airway
    # Seed: in the most superior slices with air-like voxels, a small dark component near the midline.
    seed = None
    for z in zs[::-1][:max(3, int(round(40.0 / spacing[2])))]:
        lab, n = ndimage.label(candidate[z])
        for i in range(1, n + 1):
            comp = lab == i
            area = comp.sum() * pixel_area
            # the lumen is dark; its rim is blurred by partial volume, so ask for a dark core, not a dark mean
            if area > TRACHEA_MAX_AREA_MM2 or np.mean(dark[z][comp]) < 0.3:
                continue
            cx = np.mean(np.nonzero(comp)[1])
            if abs(cx - hu.shape[2] / 2) < 0.25 * hu.shape[2]:
                seed = (z, comp & dark[z])
                break
        if seed is not None:
            break
    if seed is None or not seed[1].any():
        return airway
    z0, prev = seed
    reach = _ball(max(1, int(round(3.0 / spacing[0]))))
    first_area = prev.sum()
    airway[z0] = prev
    for z in range(z0 - 1, -1, -1):
        lab, _ = ndimage.label(dark[z])
        touching = np.unique(lab[ndimage.binary_dilation(prev, reach) & (lab > 0)])
        cur = np.isin(lab, touching[touching > 0])
        if not cur.any() or cur.sum() > AIRWAY_LEAK_FACTOR * max(prev.sum(), first_area):
            break
        airway[z] = cur
        prev = cur
    return airway


def _padded_bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Bounding box of a mask grown by ``pad`` voxels in-plane (not along z), clipped to the array."""
    return lung_bbox(mask, (0, pad, pad))


def volume_stats(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Total, right and left lung volume (mL) of a label map, for the provenance JSON of either backend."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        "lung_volume_ml": round(float((labels > 0).sum() * voxel_ml), 1),
        "right_volume_ml": round(float((labels == RIGHT).sum() * voxel_ml), 1),
        "left_volume_ml": round(float((labels == LEFT).sum() * voxel_ml), 1),
    }


def _split_left_right(lung: np.ndarray, spacing) -> tuple[np.ndarray, bool]:
    """Label a binary lung mask: 1 right (low x in LPS), 2 left; 3 if the sides cannot be separated."""
    labels = np.zeros(lung.shape, np.uint8)
    comps, n = ndimage.label(lung)
    sizes = ndimage.sum(lung, comps, range(1, n + 1)) if n else []
    order = np.argsort(sizes)[::-1] + 1
    parts = None
    if n >= 2 and sizes[order[1] - 1] > 0.1 * sizes[order[0] - 1]:
        parts = [comps == order[0], comps == order[1]]
    else:
        box = _padded_bbox(lung, 1)
        eroded = lung[box]
        for _ in range(6):  # separate lungs that touch at the anterior junction
            eroded = ndimage.binary_erosion(eroded, _ball(1, 3))
            ec, en = ndimage.label(eroded)
            if en >= 2:
                esizes = ndimage.sum(eroded, ec, range(1, en + 1))
                eorder = np.argsort(esizes)[::-1] + 1
                if esizes[eorder[1] - 1] > 0.1 * esizes[eorder[0] - 1]:
                    seeds = np.zeros(eroded.shape, np.int32)
                    seeds[ec == eorder[0]] = 1
                    seeds[ec == eorder[1]] = 2
                    _, idx = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
                    nearest = np.zeros(lung.shape, np.int32)
                    nearest[box] = seeds[tuple(idx)]
                    parts = [lung & (nearest == 1), lung & (nearest == 2)]
                    break
    if parts is None:
        labels[lung] = UNKNOWN_SIDE
        return labels, False
    cx = [np.mean(np.nonzero(p)[2]) for p in parts]
    right, left = (parts[0], parts[1]) if cx[0] < cx[1] else (parts[1], parts[0])
    labels[right] = RIGHT
    labels[left] = LEFT
    return labels, True


def threshold_lungs(hu: np.ndarray, spacing: tuple[float, float, float], params: ThresholdParams = ThresholdParams(),
                    patient: str | None = None) -> tuple[np.ndarray, dict]:
    """Classical lung segmentation on a (z, y, x) HU array on an LPS-aligned grid.

    Steps: air-like voxels (HU < ``lung_max_hu``); 3D components touching the
    in-plane border (outside air) dropped; trachea and main bronchi removed by
    leak-controlled region growing; components under ``min_component_ml`` dropped;
    the two largest kept and told apart left/right; per lung, a 2D closing and hole
    filling on each axial slice to take in vessels and lesions.

    Args:
        hu: HU array, axes (z, y, x) with x toward patient left.
        spacing: (x, y, z) voxel size in mm.
        params: Thresholds and sizes.
        patient: Pseudonymous id for messages.

    Returns:
        ``(labels, stats)``: uint8 labels (1 right, 2 left, 3 side unknown) and a dict of figures.

    Raises:
        CovidctError: no lungs found.
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    air = hu < params.lung_max_hu
    comps, n = ndimage.label(air)
    outside = _border_touching(comps)
    inside = air & ~np.isin(comps, list(outside)) if outside else air
    airway = find_airways(hu, inside, spacing, params.airway_max_hu)
    if airway.any():
        inside &= ~ndimage.binary_dilation(airway, _ball(1, 3))
    comps, n = ndimage.label(inside)
    if n == 0:
        raise CovidctError("no lungs found: no air-like region enclosed by the body", patient)
    sizes = ndimage.sum(inside, comps, range(1, n + 1)) * voxel_ml
    keep = [i + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= params.min_component_ml]
    if not keep:
        raise CovidctError(
            f"no lungs found: largest air-filled region inside the body is {max(sizes):.0f} mL, below the "
            f"{params.min_component_ml:.0f} mL minimum (is this a chest CT?)", patient)
    lung = np.isin(comps, keep)
    labels, lr_known = _split_left_right(lung, spacing)
    radius = max(1, int(round(params.closing_mm / spacing[0])))
    disk = _ball(radius)[None]  # in-plane structuring element: a 2D operation on every slice at once
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    filled = np.zeros_like(labels)
    for value in (RIGHT, LEFT, UNKNOWN_SIDE):
        side = labels == value
        if not side.any():
            continue
        box = _padded_bbox(side, radius + 1)
        region = ndimage.binary_closing(side[box], disk)
        region = ndimage.binary_fill_holes(region, plane)
        target = filled[box]
        target[region & (target == 0) & ~airway[box]] = value
    total_ml = float((filled > 0).sum() * voxel_ml)
    if total_ml < params.min_lung_ml:
        raise CovidctError(
            f"no lungs found: air-filled region inside the body is {total_ml:.0f} mL, below the "
            f"{params.min_lung_ml:.0f} mL minimum (is this a chest CT?)", patient)
    stats = {
        **volume_stats(filled, spacing),
        "airway_volume_ml": round(float(airway.sum() * voxel_ml), 1),
        "left_right_known": bool(lr_known),
        "n_components_kept": len(keep),
    }
    return filled, stats


def hub_weights_path() -> Path:
    """Where ``torch.hub`` keeps the R231 weights (``$TORCH_HOME/hub/checkpoints``)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints" / R231_FILE


def resolve_weights(weights: str | Path | None, patient: str | None = None) -> Path:
    """The R231 weights file to use: the configured one, else the torch hub cache.

    Raises:
        MissingWeightsError: neither is present (no download is attempted).
    """
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise MissingWeightsError(
                "lung_mask.weights names a file that does not exist", patient, path)
        return path
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    raise MissingWeightsError(
        f"lungmask R231 weights not found and no download is attempted. Either set config "
        f"lung_mask.weights to a local copy of {R231_FILE} (from {R231_URL}), or put that file at {cached} "
        f"(the torch hub cache), or use lung_mask.backend: threshold", patient)


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lungmask_lungs(image, weights: Path, force_cpu: bool = False, batch_size: int = 20,
                   patient: str | None = None) -> tuple[np.ndarray, dict]:
    """Run lungmask R231 on a SimpleITK HU image.

    Args:
        image: HU image (any orientation; lungmask reorients internally).
        weights: R231 state dict file.
        force_cpu: Do not use CUDA even if present.
        batch_size: Slices per forward pass.
        patient: Pseudonymous id for messages.

    Returns:
        ``(labels, stats)``, labels (z, y, x) uint8 1 right / 2 left on the image grid.
    """
    import torch
    from lungmask import LMInferer

    try:
        inferer = LMInferer(modelname="R231", modelpath=str(weights), force_cpu=force_cpu,
                            batch_size=batch_size, tqdm_disable=True)
    except Exception as exc:
        raise CovidctError(f"cannot load R231 weights ({type(exc).__name__}: {exc})", patient, weights) from None
    labels = inferer.apply(image).astype(np.uint8)
    stats = {"device": str(inferer.device), "cuda_available": torch.cuda.is_available()}
    return labels, stats


def versions() -> dict[str, str]:
    """Versions of the packages that shape a mask."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("covidct", "numpy", "scipy", "SimpleITK", "lungmask", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
