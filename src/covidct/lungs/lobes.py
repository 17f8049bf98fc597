"""Lung lobes and lung zones: the regions the severity read-out (``covidct.severity.readout``) scores.

**Lobes** come from a lobe model, lungmask's LTRCLobes U-Net (alone, or fused with R231 as
lungmask's ``LTRCLobes_R231``: voxels LTRCLobes leaves out but R231 calls lung go to a neighbouring
lobe), in lungmask's label convention: 1 left upper, 2 left lower, 3 right upper, 4 right middle,
5 right lower lobe. Weights are taken from a configured file or the torch hub cache, exactly like
R231 (``covidct.lungs.lungmask``): nothing is downloaded at run time.

The read-out scores the pipeline's own lung mask, so each of its voxels needs a lobe: a lung voxel
keeps the lobe the model gave it when that lobe lies on the voxel's side (1/2 of the lung label
map), else it takes the nearest lobe of its side (``lobes_in_lung``); how many voxels were so
reassigned is reported.

**Zones** are the geometric fallback when no lobe model is configured: each lung is split into an
upper, a middle and a lower zone of equal height (thirds of that lung's cranio-caudal extent), six
zones in all, the six-zone scheme used in the literature for chest imaging. Zones are not lobes and
are never labelled as lobes: their total is the 0-30 ``zone_score``, not the 0-25 CTSS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from covidct.errors import CovidctError
from covidct.io import sha256_file
from covidct.lungs.labels import LEFT, RIGHT, UNKNOWN_SIDE, versions
from covidct.lungs.lungmask import R231, WeightsFile, resolve_weights
from covidct.volume import Volume, bounding_box

#: lungmask's five-label lobe convention (LTRCLobes, LTRCLobes_R231).
LOBE_LUL, LOBE_LLL, LOBE_RUL, LOBE_RML, LOBE_RLL = 1, 2, 3, 4, 5


#: The six geometric zones (upper, middle, lower third of each lung).
ZONE_RU, ZONE_RM, ZONE_RL, ZONE_LU, ZONE_LM, ZONE_LL = 1, 2, 3, 4, 5, 6


#: The lobe models: LTRCLobes alone, or fused with R231 (lungmask's ``LTRCLobes_R231``).
LOBE_MODELS = ("LTRCLobes", "LTRCLobes_R231")


LTRCLOBES_FILE = "unet_ltrclobes-3a07043d.pth"


LTRCLOBES_URL = "https://github.com/JoHof/lungmask/releases/download/v0.0/unet_ltrclobes-3a07043d.pth"


#: The LTRCLobes weights (``covidct.lungs.lungmask.resolve_weights(weights, patient, LTRCLOBES)``).
LTRCLOBES = WeightsFile(
    "LTRCLobes",
    LTRCLOBES_FILE,
    LTRCLOBES_URL,
    "lung_mask.lobes.weights",
    "set lung_mask.lobes.model to none (six geometric zones)",
)


#: Output classes of the LTRCLobes network (background and five lobes).
LTRCLOBES_CLASSES = 6


#: How far (voxels) around the lung voxels without a lobe the nearest lobe is looked for first.
FILL_MARGIN_VOX = 20


@dataclass(frozen=True)
class Region:
    """One scored region of a lung.

    Attributes:
        code: Its value in the region map.
        name: Short name (``RUL`` for a lobe, ``RUZ`` for a zone).
        label: Name for people ("right upper lobe", "right upper zone").
        side: ``covidct.lungs.labels.RIGHT`` or ``LEFT``.
    """

    code: int
    name: str
    label: str
    side: int


@dataclass(frozen=True)
class RegionScheme:
    """A way to divide the lungs into scored regions: five lobes, or six zones.

    Attributes:
        name: ``lobes`` or ``zones``.
        total: What the sum of the region scores is called: ``ctss`` (lobes, 0-25) or
            ``zone_score`` (zones, 0-30).
        regions: The regions in reading order (right lung upper to lower, then the left).
    """

    name: str
    total: str
    regions: tuple[Region, ...]

    def codes(self, side: int | None = None) -> tuple[int, ...]:
        """The region codes, of one side if given."""
        return tuple(r.code for r in self.regions if side is None or r.side == side)

    def by_code(self, code: int) -> Region:
        """The region with this code."""
        return next(r for r in self.regions if r.code == code)


LOBES = RegionScheme(
    "lobes",
    "ctss",
    (
        Region(LOBE_RUL, "RUL", "right upper lobe", RIGHT),
        Region(LOBE_RML, "RML", "right middle lobe", RIGHT),
        Region(LOBE_RLL, "RLL", "right lower lobe", RIGHT),
        Region(LOBE_LUL, "LUL", "left upper lobe", LEFT),
        Region(LOBE_LLL, "LLL", "left lower lobe", LEFT),
    ),
)


ZONES = RegionScheme(
    "zones",
    "zone_score",
    (
        Region(ZONE_RU, "RUZ", "right upper zone", RIGHT),
        Region(ZONE_RM, "RMZ", "right middle zone", RIGHT),
        Region(ZONE_RL, "RLZ", "right lower zone", RIGHT),
        Region(ZONE_LU, "LUZ", "left upper zone", LEFT),
        Region(ZONE_LM, "LMZ", "left middle zone", LEFT),
        Region(ZONE_LL, "LLZ", "left lower zone", LEFT),
    ),
)


SCHEMES = {LOBES.name: LOBES, ZONES.name: ZONES}


def lung_sides(lung_labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Right (1) / left (2) for every lung voxel of a label map; 0 outside the lung.

    A voxel whose side the lung mask could not tell (label 3) takes the side of the nearer lung
    centroid along x when both sides are known elsewhere, else the side of the lung's own centroid
    along x (low x, toward the patient's right in LPS, is right).

    Returns:
        ``(sides, n_unknown)``: the side map (uint8) and how many voxels had label 3.
    """
    sides = np.where(lung_labels == RIGHT, RIGHT, np.where(lung_labels == LEFT, LEFT, 0)).astype(np.uint8)
    unknown = lung_labels == UNKNOWN_SIDE
    n_unknown = int(np.count_nonzero(unknown))
    if n_unknown:
        x = np.arange(lung_labels.shape[2])

        def centroid_x(mask: np.ndarray) -> float | None:
            counts = mask.sum(axis=(0, 1))
            return float((counts * x).sum() / counts.sum()) if counts.sum() else None

        right, left = centroid_x(sides == RIGHT), centroid_x(sides == LEFT)
        middle = (right + left) / 2 if right is not None and left is not None else centroid_x(lung_labels > 0)
        sides[unknown] = np.where(np.nonzero(unknown)[2] < middle, RIGHT, LEFT)
    return sides, n_unknown


def geometric_zones(lung_labels: np.ndarray) -> np.ndarray:
    """The six-zone map of a lung label map on an LPS-aligned grid (z index 0 the most inferior).

    Each lung (side) is split along z into thirds of its own extent: a voxel whose slice centre lies
    in the upper third of the lung's slices is upper zone, and so on (the lung spans ``n`` slices;
    slice ``k`` above its lowest sits at ``(k + 0.5) / n`` of its height).

    Returns:
        uint8 zone codes (ZONE_RU .. ZONE_LL), 0 outside the lung.
    """
    sides, _ = lung_sides(lung_labels)
    zones = np.zeros(lung_labels.shape, np.uint8)
    for side, first in ((RIGHT, ZONE_RU), (LEFT, ZONE_LU)):
        here = sides == side
        slices = np.nonzero(here.any(axis=(1, 2)))[0]
        if slices.size == 0:
            continue
        lo, n = int(slices[0]), int(slices[-1] - slices[0] + 1)
        height = (np.arange(lung_labels.shape[0]) - lo + 0.5) / n  # of each slice centre, 0..1 in the lung
        third = np.clip(np.floor(height * 3), 0, 2).astype(np.uint8)  # 0 lower, 1 middle, 2 upper
        code = (first + 2 - third).astype(np.uint8)  # upper = first, middle = first + 1, lower = first + 2
        zones[here] = np.broadcast_to(code[:, None, None], zones.shape)[here]
    return zones


def lobes_in_lung(lung_labels: np.ndarray, lobe_map: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, dict]:
    """The lobe of every voxel of the lung mask, from a lobe model's map on the same grid.

    A lung voxel keeps its lobe when that lobe belongs to the voxel's side; a voxel without one (the
    lobe model left it out, as LTRCLobes does with dense lesions, or put it in a lobe of the other
    side) takes the nearest lobe voxel of its side (Euclidean, in mm; looked for within
    FILL_MARGIN_VOX voxels of such voxels first, then anywhere). Lobe voxels outside the lung mask
    only serve as such neighbours.

    Args:
        lung_labels: Lung label map (1 right, 2 left, 3 side unknown).
        lobe_map: Lobe labels (lungmask convention, LOBE_LUL .. LOBE_RLL).
        spacing: Voxel size (x, y, z) in mm.

    Returns:
        ``(lobes, stats)``: uint8 lobe codes on the lung voxels (0 elsewhere, and on a side where the
        model found no lobe at all), and stats: ``reassigned_voxels`` (lung voxels that took a
        neighbour's lobe), ``reassigned_percent`` (of the lung), ``missing`` (names of the lobes
        with no voxel in the lung mask).
    """
    if lung_labels.shape != lobe_map.shape:
        raise ValueError(f"lobe map shape {lobe_map.shape} differs from the lung label map's {lung_labels.shape}")
    sides, _ = lung_sides(lung_labels)
    lobes = np.zeros(lung_labels.shape, np.uint8)
    reassigned = 0
    sampling = tuple(float(s) for s in spacing)[::-1]  # (z, y, x)
    for side in (RIGHT, LEFT):
        codes = LOBES.codes(side)
        here = sides == side
        if not here.any():
            continue
        of_side = np.isin(lobe_map, codes)
        keep = here & of_side
        lobes[keep] = lobe_map[keep]
        todo = here & ~of_side
        if not todo.any() or not of_side.any():
            continue
        box = bounding_box(todo, FILL_MARGIN_VOX)
        if not of_side[box].any():
            box = bounding_box(todo | of_side, 0)
        seeds = of_side[box]
        _, index = ndimage.distance_transform_edt(~seeds, sampling=sampling, return_indices=True)
        nearest = lobe_map[box][tuple(index)]
        sub = todo[box]
        lobes[box][sub] = nearest[sub]
        reassigned += int(np.count_nonzero(sub))
    n_lung = int(np.count_nonzero(lung_labels))
    present = set(np.unique(lobes).tolist())
    return lobes, {
        "reassigned_voxels": reassigned,
        "reassigned_percent": round(100.0 * reassigned / n_lung, 2) if n_lung else 0.0,
        "missing": [r.name for r in LOBES.regions if r.code not in present],
    }


def lungmask_lobes(
    image,
    weights: Path,
    fill_weights: Path | None = None,
    force_cpu: bool = False,
    batch_size: int = 20,
    patient: str | None = None,
) -> tuple[np.ndarray, dict]:
    """Run lungmask's LTRCLobes (fused with R231 when ``fill_weights`` is given) on a HU image.

    Args:
        image: SimpleITK HU image (any orientation; lungmask reorients internally).
        weights: LTRCLobes state dict file (six output classes).
        fill_weights: R231 state dict file for the fusion (``LTRCLobes_R231``), or None.
        force_cpu: Do not use CUDA even if present.
        batch_size: Slices per forward pass.
        patient: Pseudonymous id for messages.

    Returns:
        ``(lobes, stats)``: uint8 lobe labels (lungmask convention) on the image grid, and the device.

    Raises:
        CovidctError: the weights cannot be loaded or are not a five-lobe model.
    """
    import torch
    from lungmask import LMInferer

    try:
        inferer = LMInferer(
            modelname="LTRCLobes",
            modelpath=str(weights),
            fillmodel="R231" if fill_weights else None,
            fillmodel_path=str(fill_weights) if fill_weights else None,
            force_cpu=force_cpu,
            batch_size=batch_size,
            tqdm_disable=True,
        )
    except Exception as exc:
        raise CovidctError(
            f"cannot load the lobe model's weights ({type(exc).__name__}: {exc})", patient, weights
        ) from None
    classes = inferer.model.last.out_channels
    if classes != LTRCLOBES_CLASSES:
        raise CovidctError(
            f"the lobe weights give {classes} classes, not the {LTRCLOBES_CLASSES} of LTRCLobes "
            f"(background and five lobes): is this {LTRCLOBES_FILE}?",
            patient,
            weights,
        )
    lobes = inferer.apply(image).astype(np.uint8)
    return lobes, {"device": str(inferer.device), "cuda_available": torch.cuda.is_available()}


@dataclass(frozen=True)
class LobeSegmentation:
    """The lobes of a volume and how they were found.

    Attributes:
        lobes: uint8 lobe labels (lungmask convention) on the volume's grid.
        provenance: The model, its weights (file names and SHA-256), package versions, the device,
            each lobe's volume (mL) and the seconds it took.
    """

    lobes: np.ndarray
    provenance: dict


def segment_lobes(
    volume: Volume,
    patient: str,
    model: str,
    weights: str | Path | None = None,
    r231_weights: str | Path | None = None,
    force_cpu: bool = False,
    batch_size: int = 20,
) -> LobeSegmentation:
    """The lobes of ``volume`` from a lobe model (LOBE_MODELS): LTRCLobes, or LTRCLobes_R231 (fused with
    R231, whose weights are ``r231_weights`` or the hub cache's).

    Raises:
        CovidctError: an unknown model, or weights missing or not a lobe model's.
    """
    if model not in LOBE_MODELS:
        raise CovidctError(f"unknown lung_mask.lobes.model {model!r}: use one of {', '.join(LOBE_MODELS)}", patient)
    started = time.perf_counter()
    path = resolve_weights(weights or None, patient, LTRCLOBES)
    fill = resolve_weights(r231_weights or None, patient, R231) if model == "LTRCLobes_R231" else None
    provenance: dict = {
        "patient": patient,
        "model": model,
        "weights_file": path.name,
        "weights_sha256": sha256_file(path),
        "r231_weights_file": fill.name if fill else None,
        "r231_weights_sha256": sha256_file(fill) if fill else None,
        "versions": versions(),
    }
    lobes, stats = lungmask_lobes(
        volume.to_image(), path, fill, force_cpu=force_cpu, batch_size=batch_size, patient=patient
    )
    provenance.update(stats)
    provenance["lobe_volumes_ml"] = {
        r.name: round(float(np.count_nonzero(lobes == r.code)) * volume.voxel_ml, 1) for r in LOBES.regions
    }
    provenance["seconds"] = round(time.perf_counter() - started, 2)
    return LobeSegmentation(lobes, provenance)
