"""Infection segmentation in the pipeline: training data, training, volume inference, severity.

Slices are prepared the same way for training and for inference:

1. HU slices (3D NIfTI sources and patient volumes) are clipped to the lung window
   ``hu_window`` (default -1250..250 HU, level -500, width 1500) and scaled to [0, 1];
   2D image sources (``Imgs/*.jpg``) are taken as already windowed grey levels.
2. The slice is padded to a square (with the window minimum, i.e. air) and resized to the
   model's ``size`` x ``size`` (bilinear; masks nearest).
3. Each slice is standardized on its own: subtract its mean, divide by its std (the study's
   input normalization), so only the window's clipping matters, not its scale.

Predictions are resized back to the padded square, cropped, thresholded at 0.5 and kept only
inside the lung mask. Severity is infected lung volume / lung volume x 100.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.segmentation import THRESHOLD, load_image_folder, standardize, train_unet

log = logging.getLogger(__name__)

HU_WINDOW = (-1250.0, 250.0)
NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


@dataclass
class SliceGroup:
    """Training pairs from one source unit (one 2D image, or one 3D volume): never split apart."""

    name: str
    x: np.ndarray  # (N, size, size, 1) float32, standardized
    y: np.ndarray  # (N, size, size, 1) uint8


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
    out[top:top + h, left:left + w] = image
    return out, (top, left)


def prepare_slice(image: np.ndarray, size: int, window: tuple[float, float] | None = HU_WINDOW) -> np.ndarray:
    """One slice as the U-Net sees it: windowed to [0, 1] (HU input), padded square, resized,
    standardized. ``window=None`` for grey-level images already in [0, 255]."""
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
    """A binary mask padded and resized like ``prepare_slice`` (nearest), uint8."""
    square, _ = _pad_square((np.asarray(mask) > 0).astype(np.float32), 0.0)
    return (_resize(square, (size, size), nearest=True) > 0.5).astype(np.uint8)


def restore_slice(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo ``prepare_slice``'s padding and resizing on a (size, size) probability map."""
    side = max(shape)
    big = _resize(prob, (side, side))
    top, left = (side - shape[0]) // 2, (side - shape[1]) // 2
    return big[top:top + shape[0], left:left + shape[1]]


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


def volume_groups(volumes: str | Path, masks: str | Path, size: int, window: tuple[float, float] = HU_WINDOW,
                  max_slices: int = 64, negative_ratio: float = 0.5) -> list[SliceGroup]:
    """Axial slice pairs from 3D HU volumes and infection masks matched by file name.

    Per volume: every slice with infection (evenly thinned to at most ``max_slices``) plus
    ``negative_ratio`` times as many infection-free slices that hold tissue, evenly spread.
    One volume is one group, so its slices never straddle the train/val split.

    Raises:
        CovidctError: missing folder, no volumes, a volume without a mask, unreadable
            files, or a mask on another grid than its volume.
    """
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
            raise CovidctError(f"mask grid {mask.shape[::-1]} / {mimg.GetSpacing()} differs from the volume's "
                               f"{hu.shape[::-1]} / {img.GetSpacing()}", path=msks[name])
        has_les = mask.reshape(len(mask), -1).max(axis=1) > 0
        tissue = hu.reshape(len(hu), -1).max(axis=1) > window[0] + 200
        pos = np.nonzero(has_les)[0]
        neg = np.nonzero(~has_les & tissue)[0]
        pos = pos[np.unique(np.linspace(0, len(pos) - 1, min(len(pos), max_slices)).round().astype(int))] \
            if len(pos) else pos
        n_neg = min(len(neg), int(round(negative_ratio * max(len(pos), 1))))
        neg = neg[np.unique(np.linspace(0, len(neg) - 1, n_neg).round().astype(int))] if n_neg else neg[:0]
        zs = np.sort(np.concatenate([pos, neg]))
        if zs.size == 0:
            continue
        x = np.stack([prepare_slice(hu[z], size, window) for z in zs])[..., None]
        y = np.stack([prepare_mask(mask[z], size) for z in zs])[..., None]
        groups.append(SliceGroup(f"{volumes.name}/{name}", x, y))
    return groups


def image_groups(images: str | Path, masks: str | Path, size: int) -> list[SliceGroup]:
    """2D image/mask pairs (``Imgs/*.jpg`` + ``GT/*.png``); each image is its own group."""
    names, x, y = load_image_folder(images, masks, size)
    return [SliceGroup(f"{Path(images).name}/{n}", x[i:i + 1], y[i:i + 1]) for i, n in enumerate(names)]


def load_sources(sources: list[dict], size: int, window: tuple[float, float] = HU_WINDOW,
                 max_slices: int = 64) -> list[SliceGroup]:
    """All groups of the configured sources: ``{images, masks}`` (2D) or ``{volumes, masks}`` (3D)."""
    groups = []
    for i, src in enumerate(sources):
        if "masks" not in src or ("images" in src) == ("volumes" in src):
            raise CovidctError(f"infection.train source {i + 1}: give masks and exactly one of images (2D) or "
                               f"volumes (3D NIfTI), got keys {sorted(src)}")
        if "images" in src:
            found = image_groups(src["images"], src["masks"], size)
        else:
            found = volume_groups(src["volumes"], src["masks"], size, window, max_slices)
        groups += [SliceGroup(f"s{i + 1}:{g.name}", g.x, g.y) for g in found]
    return groups


def split_groups(groups: list[SliceGroup], val_fraction: float, seed: int) -> tuple[list[SliceGroup],
                                                                                     list[SliceGroup]]:
    """Seeded split of whole groups (images or volumes): at least one in each part.

    A group goes to val when a hash of (seed, name) ranks it among the first
    ``round(val_fraction * n)``; the order does not depend on the order of the sources.
    """
    if len(groups) < 2:
        raise CovidctError(f"infection training needs at least 2 images or volumes to split, got {len(groups)}")
    ranked = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g.name}".encode()).hexdigest())
    n_val = min(len(groups) - 1, max(1, int(round(val_fraction * len(groups)))))
    val = {g.name for g in ranked[:n_val]}
    return [g for g in groups if g.name not in val], [g for g in groups if g.name in val]


def _stack(groups: list[SliceGroup]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([g.x for g in groups]), np.concatenate([g.y for g in groups])


def train(sources: list[dict], out_model: str | Path, out_metrics: str | Path, size: int = 256,
          base_filters: int = 32, variants: tuple[str, ...] = ("bce", "bce_iou", "dice"), epochs: int = 40,
          batch_size: int = 4, learning_rate: float = 1e-3, patience: int | None = 15, val_fraction: float = 0.2,
          seed: int = 1337, augment: bool = True, hu_window: tuple[float, float] = HU_WINDOW,
          max_slices_per_volume: int = 64, out_sidecar: str | Path | None = None) -> dict:
    """Train each U-Net variant on the sources; keep the one with the best val Dice.

    Writes the model (``.keras``), a sidecar ``.json`` beside it (size, window, variant,
    threshold: what inference needs) and a metrics JSON: per variant the best epoch's val
    Dice/IoU/pixel accuracy/sensitivity/specificity, the last epoch's val Dice, epochs run
    and seconds per epoch, plus the split (groups and slices per part).
    """
    from covidct.io import atomic_path, write_json
    from covidct.models.train import _setup

    gpu = _setup(seed)
    groups = load_sources(sources, size, tuple(hu_window), max_slices_per_volume)
    train_g, val_g = split_groups(groups, val_fraction, seed)
    x_tr, y_tr = _stack(train_g)
    x_va, y_va = _stack(val_g)
    log.info("infection U-Net: %d train groups (%d slices), %d val groups (%d slices), %dx%d", len(train_g),
             len(x_tr), len(val_g), len(x_va), size, size)
    results, best_model, best_variant = {}, None, None
    for variant in variants:
        t0 = time.perf_counter()
        model, history, best = train_unet(x_tr, y_tr, x_va, y_va, variant, epochs, batch_size, base_filters,
                                          learning_rate, patience, augment, seed, log=log.info)
        seconds = time.perf_counter() - t0
        results[variant] = {"best_epoch": best["epoch"], **{k: v for k, v in best.items() if k.startswith("val_")},
                            "last_epoch_val_dice": history[-1]["val_dice"], "epochs_run": len(history),
                            "train_seconds": round(seconds, 1), "seconds_per_epoch": round(seconds / len(history), 2),
                            "history": history}
        log.info("%s: best val Dice %.4f at epoch %d, %.1f s", variant, best["val_dice"], best["epoch"], seconds)
        if best_variant is None or best["val_dice"] > results[best_variant]["val_dice"]:
            best_model, best_variant = model, variant
    with atomic_path(out_model, suffix=".keras") as tmp:
        best_model.save(tmp)
    sidecar = {"size": size, "hu_window": list(hu_window), "threshold": THRESHOLD, "variant": best_variant,
               "base_filters": base_filters}
    write_json(out_sidecar if out_sidecar is not None else Path(out_model).with_suffix(".json"), sidecar)
    empty = float(np.mean([1.0 if not y.any() else 0.0 for y in y_va]))
    metrics = {"chosen_variant": best_variant, "chosen_by": "best validation Dice (threshold 0.5)",
               "val_dice": results[best_variant]["val_dice"],
               "val_dice_of_empty_prediction": empty, "gpu": gpu, **sidecar,
               "split": {"train_groups": len(train_g), "train_slices": int(len(x_tr)), "val_groups": len(val_g),
                         "val_slices": int(len(x_va)), "val_names": [g.name for g in val_g]},
               "variants": results}
    write_json(out_metrics, metrics)
    return metrics


def load_unet(path: str | Path, sidecar: str | Path | None = None):
    """The saved U-Net and its sidecar (size, hu_window, threshold); the sidecar is ``sidecar``, else
    the JSON beside the model."""
    from covidct.io import read_json
    from covidct.segmentation import load_model

    return load_model(path), read_json(sidecar if sidecar is not None else Path(path).with_suffix(".json"))


def segment_volume(model, sidecar: dict, hu: np.ndarray, lung: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Infection mask (uint8, z/y/x) of an HU volume, predicted slice by slice, inside ``lung``."""
    size, window, threshold = int(sidecar["size"]), tuple(sidecar["hu_window"]), float(sidecar["threshold"])
    out = np.zeros(hu.shape, np.uint8)
    zs = np.nonzero(lung.reshape(len(lung), -1).any(axis=1))[0]
    for start in range(0, len(zs), batch_size):
        chunk = zs[start:start + batch_size]
        x = np.stack([prepare_slice(hu[z], size, window) for z in chunk])[..., None]
        prob = np.asarray(model(x, training=False))[..., 0]
        for z, p in zip(chunk, prob):
            out[z] = (restore_slice(p, hu.shape[1:]) >= threshold) & (lung[z] > 0)
    return out


def severity(infection: np.ndarray, lung: np.ndarray) -> float:
    """Infected lung volume / lung volume x 100 (same grid, so a voxel count ratio)."""
    n_lung = int(np.count_nonzero(lung))
    return 100.0 * int(np.count_nonzero(infection & (lung > 0))) / n_lung if n_lung else 0.0
