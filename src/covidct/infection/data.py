"""Training and evaluation data of the infection U-Net: slice preparation, sources, folds.

Slices are prepared the same way for training and for inference:

1. HU slices (3D NIfTI sources and patient volumes) are clipped to the lung window
   ``hu_window`` (default -1250..250 HU, level -500, width 1500) and scaled to [0, 1];
   2D image sources (``Imgs/*.jpg``) are taken as already windowed grey levels.
2. An HU slice is padded to a square (with the window minimum, i.e. air) and resized to the
   model's ``size`` x ``size`` (bilinear; masks nearest); a 2D image is resized directly.
3. Each slice is standardized on its own: subtract its mean, divide by its std (the study's
   input normalization), so only the window's clipping matters, not its scale.

Masks are label maps: ``labels: binary`` sources (the default) mark infection (> 0); ``labels: types``
sources hold 0 background, 1 ground-glass, 2 consolidation (COVID-SemiSeg's multi-class set).

A *source unit* is one 2D image or one 3D volume: it is never split between training and
held-out data (``assign_folds``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.hounsfield import INFECTION_WINDOW_HU
from covidct.infection.unet import DEFAULT_SIZE, standardize

NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_KINDS = ("binary", "types")


@dataclass
class SliceGroup:
    """Training pairs from one source unit (one 2D image, or one 3D volume): never split apart."""

    name: str
    x: np.ndarray  # (N, size, size, 1) float32, standardized
    y: np.ndarray  # (N, size, size, 1) uint8 labels (0/1, or 0/1/2 for lesion types)


def _resize(image: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    from PIL import Image

    if image.shape == shape:
        return image.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.NEAREST if nearest else Image.BILINEAR))


def _pad_square(image: np.ndarray, fill: float) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = image.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.full((side, side), fill, np.float32)
    out[top : top + h, left : left + w] = image
    return out, (top, left)


def prepare_slice(image: np.ndarray, size: int, window: tuple[float, float] | None = INFECTION_WINDOW_HU) -> np.ndarray:
    """One HU slice as the U-Net sees it: windowed to [0, 1], padded square, resized, standardized.
    ``window=None`` for grey-level slices already windowed (padded with their minimum)."""
    image = np.asarray(image, dtype=np.float32)
    if window is not None:
        lo, hi = window
        image = (np.clip(image, lo, hi) - lo) / (hi - lo)
        fill = 0.0
    else:
        fill = float(image.min()) if image.size else 0.0
    square, _ = _pad_square(image, fill)
    return standardize(_resize(square, (size, size)))


def prepare_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A label map padded and resized like ``prepare_slice`` (nearest), uint8 labels kept."""
    square, _ = _pad_square(np.asarray(mask).astype(np.float32), 0.0)
    return np.rint(_resize(square, (size, size), nearest=True)).astype(np.uint8)


def restore_slice(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo ``prepare_slice``'s padding and resizing on a (size, size) map."""
    side = max(shape)
    big = _resize(prob, (side, side))
    top, left = (side - shape[0]) // 2, (side - shape[1]) // 2
    return big[top : top + shape[0], left : left + shape[1]]


def _labels(mask: np.ndarray, kind: str, path: Path, png: bool = False) -> np.ndarray:
    """A mask as labels: binary > 0 (> 127 for 8-bit images) -> 1; lesion types kept as 0/1/2."""
    if kind == "binary":
        # 8-bit masks drawn 0/255 (anti-aliased edges split at 127); label masks 0/1
        return (mask > (127 if png and mask.max() > 1 else 0)).astype(np.uint8)
    values = np.unique(mask)
    if values.size and (values.min() < 0 or values.max() > 2):
        raise CovidctError(
            f"a lesion-type mask holds 0 background, 1 ground-glass, 2 consolidation; found values "
            f"{values[:6].tolist()}",
            path=path,
        )
    return mask.astype(np.uint8)


def _check_kind(labels: str) -> None:
    if labels not in LABEL_KINDS:
        raise CovidctError(f"unknown mask labels {labels!r}: use one of {', '.join(LABEL_KINDS)}")


def _read_gray(path: Path, size: int, resample: int, labels: bool = False) -> np.ndarray:
    """An image as one channel at size x size. With ``labels`` (a mask) palette and grey values are kept as
    stored (a palette PNG's indices are its labels); colour images are converted to grey."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if not (labels and img.mode in ("P", "L", "I", "I;16")):
                img = img.convert("L")
            if img.size != (size, size):
                img = img.resize((size, size), resample)
            return np.asarray(img)
    except OSError as exc:
        raise CovidctError(f"cannot read image ({exc})", path=path) from None


def load_image_folder(images: str | Path, masks: str | Path, size: int = DEFAULT_SIZE, labels: str = "binary"):
    """Image/mask pairs from ``images/*.jpg`` and ``masks/*.png`` matched by file stem.

    Returns:
        ``(names, x, y)``: stems, standardized images (N, size, size, 1) float32 and label maps
        (N, size, size, 1) uint8 (``binary``: mask > 127 is infection; ``types``: 0/1/2 kept).

    Raises:
        CovidctError: a folder is missing or empty, an image has no mask, a lesion-type mask holds
            other values.
    """
    from PIL import Image

    _check_kind(labels)
    images, masks = Path(images), Path(masks)
    for folder in (images, masks):
        if not folder.is_dir():
            raise CovidctError("folder not found", path=folder)
    imgs = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    msks = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not imgs:
        raise CovidctError("no images (.jpg/.png) in the folder", path=images)
    missing = sorted(set(imgs) - set(msks))
    if missing:
        raise CovidctError(f"{len(missing)} image(s) without a mask, e.g. {missing[0]}", path=masks)
    names = sorted(imgs, key=lambda s: (len(s), s))
    x = np.stack([standardize(_read_gray(imgs[n], size, Image.BILINEAR)) for n in names])[..., None]
    y = np.stack(
        [_labels(_read_gray(msks[n], size, Image.NEAREST, labels=True), labels, msks[n], png=True) for n in names]
    )
    return names, x, y[..., None]


def _volume_files(folder: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.iterdir()):
        for suffix in NIFTI_SUFFIXES:
            if p.name.lower().endswith(suffix):
                files[p.name[: -len(suffix)]] = p
    return files


def _read_lps(path: Path) -> tuple[np.ndarray, object]:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CovidctError(f"cannot read volume ({str(exc).strip().splitlines()[-1]})", path=path) from None
    if img.GetDimension() != 3:
        raise CovidctError(f"expected a 3D volume, got {img.GetDimension()}D", path=path)
    img = sitk.DICOMOrient(img, "LPS")
    return sitk.GetArrayFromImage(img), img


def volume_groups(
    volumes: str | Path,
    masks: str | Path,
    size: int,
    window: tuple[float, float] = INFECTION_WINDOW_HU,
    max_slices: int = 64,
    negative_ratio: float = 0.5,
    labels: str = "binary",
) -> list[SliceGroup]:
    """Axial slice pairs from 3D HU volumes and infection masks matched by file name.

    Per volume: every slice with infection (evenly thinned to at most ``max_slices``) plus
    ``negative_ratio`` times as many infection-free slices that hold tissue, evenly spread (a volume
    without infection: ``negative_ratio`` x ``max_slices`` of them).
    One volume is one group, so its slices never straddle a split.

    Raises:
        CovidctError: missing folder, no volumes, a volume without a mask, unreadable
            files, a mask on another grid than its volume, lesion types out of range.
    """
    _check_kind(labels)
    volumes, masks = Path(volumes), Path(masks)
    for folder in (volumes, masks):
        if not folder.is_dir():
            raise CovidctError("folder not found", path=folder)
    vols, msks = _volume_files(volumes), _volume_files(masks)
    if not vols:
        raise CovidctError(f"no volumes ({', '.join(NIFTI_SUFFIXES)}) in the folder", path=volumes)
    groups = []
    for name, vpath in vols.items():
        if name not in msks:
            raise CovidctError(f"volume {name} has no mask of the same name", path=masks)
        hu, img = _read_lps(vpath)
        mask, mimg = _read_lps(msks[name])
        if hu.shape != mask.shape or not np.allclose(img.GetSpacing(), mimg.GetSpacing(), atol=1e-3):
            raise CovidctError(
                f"mask grid {mask.shape[::-1]} / {mimg.GetSpacing()} differs from the volume's "
                f"{hu.shape[::-1]} / {img.GetSpacing()}",
                path=msks[name],
            )
        mask = _labels(mask, labels, msks[name])
        has_les = mask.reshape(len(mask), -1).max(axis=1) > 0
        tissue = hu.reshape(len(hu), -1).max(axis=1) > window[0] + 200
        pos = np.nonzero(has_les)[0]
        neg = np.nonzero(~has_les & tissue)[0]
        if len(pos):
            pos = pos[np.unique(np.linspace(0, len(pos) - 1, min(len(pos), max_slices)).round().astype(int))]
        # a volume without lesions gives as many clean slices as a volume with ``max_slices`` infected ones
        n_neg = min(len(neg), int(round(negative_ratio * (len(pos) if len(pos) else max_slices))))
        neg = neg[np.unique(np.linspace(0, len(neg) - 1, n_neg).round().astype(int))] if n_neg else neg[:0]
        zs = np.sort(np.concatenate([pos, neg]))
        if zs.size == 0:
            continue
        x = np.stack([prepare_slice(hu[z], size, window) for z in zs])[..., None]
        y = np.stack([prepare_mask(mask[z], size) for z in zs])[..., None]
        groups.append(SliceGroup(f"{volumes.name}/{name}", x, y))
    return groups


def image_groups(images: str | Path, masks: str | Path, size: int, labels: str = "binary") -> list[SliceGroup]:
    """2D image/mask pairs (``Imgs/*.jpg`` + ``GT/*.png``); each image is its own group."""
    names, x, y = load_image_folder(images, masks, size, labels)
    return [SliceGroup(f"{Path(images).name}/{n}", x[i : i + 1], y[i : i + 1]) for i, n in enumerate(names)]


def source_labels(sources: list[dict]) -> str:
    """The label kind all sources share (``binary`` or ``types``); mixing them is refused."""
    kinds = {src.get("labels", "binary") for src in sources}
    for kind in kinds:
        _check_kind(kind)
    if len(kinds) > 1:
        raise CovidctError(
            "infection.train mixes binary and lesion-type (labels: types) sources: one network learns one "
            "kind of mask; give all sources the same labels"
        )
    return kinds.pop() if kinds else "binary"


def load_sources(
    sources: list[dict], size: int, window: tuple[float, float] = INFECTION_WINDOW_HU, max_slices: int = 64
) -> list[SliceGroup]:
    """All groups of the configured sources: ``{images, masks}`` (2D) or ``{volumes, masks}`` (3D), each
    with an optional ``labels: binary | types``."""
    source_labels(sources)
    groups = []
    for i, src in enumerate(sources):
        extra = set(src) - {"images", "volumes", "masks", "labels"}
        if "masks" not in src or ("images" in src) == ("volumes" in src) or extra:
            raise CovidctError(
                f"infection.train source {i + 1}: give masks, exactly one of images (2D) or volumes (3D NIfTI) "
                f"and optionally labels (binary or types), got keys {sorted(src)}"
            )
        labels = src.get("labels", "binary")
        if "images" in src:
            found = image_groups(src["images"], src["masks"], size, labels)
        else:
            found = volume_groups(src["volumes"], src["masks"], size, window, max_slices, labels=labels)
        groups += [SliceGroup(f"s{i + 1}:{g.name}", g.x, g.y) for g in found]
    return groups


def assign_folds(names: list[str], folds: int, seed: int) -> dict[str, int]:
    """Seeded assignment of source units to ``folds`` folds (sizes differ by at most one).

    Units are ranked by a hash of (seed, name) and dealt out in turn, so the folds do not depend on
    the order of the sources.

    >>> f = assign_folds([f"u{i}" for i in range(7)], 3, seed=1)
    >>> sorted(list(f.values()).count(k) for k in range(3))
    [2, 2, 3]
    """
    if folds < 2:
        raise CovidctError(f"cross-validation needs at least 2 folds, got {folds}")
    if len(names) < folds:
        raise CovidctError(f"{folds}-fold cross-validation needs at least {folds} images or volumes, got {len(names)}")
    ranked = sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
    return {name: i % folds for i, name in enumerate(ranked)}


def stack(groups: list[SliceGroup]) -> tuple[np.ndarray, np.ndarray]:
    """The slices of several groups as one (x, y) pair."""
    return np.concatenate([g.x for g in groups]), np.concatenate([g.y for g in groups])
