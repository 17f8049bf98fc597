"""Training and evaluation data of the infection U-Net: sources, slices in the input space, folds.

Every slice reaches the network through ``covidct.infection.inputs`` (cropped to the lungs, turned to
the axial convention, calibrated inside the lungs), the same function inference uses:

- **2D images** (``{images: DIR, masks: DIR}``, e.g. COVID-SemiSeg's ``Imgs/*.jpg`` + ``GT/*.png``):
  lungs found on each image by the 2D lung finder (``covidct.infection.lungs2d``).
- **3D volumes** (``{volumes: DIR, masks: DIR}``, NIfTI HU volumes and infection masks matched by file
  name, e.g. COVID-19-CT-Seg): resampled to the workflow's isotropic grid (``spacing_mm``, the grid
  patients are segmented on), lungs from ``lungs: DIR`` (masks of the same names) or the threshold
  lung backend; axial slices framed by the volume's lungs.
- **Lesion-free volumes** (``{volumes: DIR, lesion_free: true}``): real lungs without infection (e.g.
  the resampled volumes and lung masks of a cohort's COVID-negative patients), as negatives; slices
  that touch ``exclude: DIR`` masks (e.g. a tumour's GTV) are left out.
- **Exports** (``exports: true`` on a volume source): each chosen slice also once as a simulated 8-bit
  export (``export_slice``: a random lung window, the slice's lungs cropped, shrunk, 8-bit, JPEG) read
  through the 2D image path. 2D sources such as COVID-SemiSeg are such exports; without this, a
  training set whose lesions come only from exports and whose clean lungs come only from HU volumes
  lets the network tell lesion from no lesion by the source's look. Both views of a slice stay in
  the volume's unit.

Masks are label maps: ``labels: binary`` sources (the default) mark infection (> 0); ``labels: types``
sources hold 0 background, 1 ground-glass, 2 consolidation (COVID-SemiSeg's multi-class set); a
lesion-free source fits either.

A *source unit* is one 2D image or one 3D volume: it is never split between training and held-out data
(``assign_folds``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

from covidct.errors import CovidctError
from covidct.infection.inputs import Frame, frame_image, frame_volume, mask_to_input, to_input
from covidct.lungs.threshold import segment_threshold
from covidct.volume import resample, resample_like

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_KINDS = ("binary", "types")
SOURCE_KEYS = {"images", "volumes", "masks", "labels", "lungs", "lesion_free", "exclude", "exports"}
#: The simulated exports (``export_slice``): lung window level and width (HU), margin around the slice's
#: lungs (share of the box's side), longest side of the exported image (px), JPEG quality. COVID-SemiSeg's
#: images are 212-449 px lung crops at JPEG quality 75; their clean lung's 5th percentile lies at grey
#: 11-48 and their soft tissue at 196-231 (10th-90th percentile of the 50 images), a window of level
#: about -400 HU and width about 1,300 HU.
EXPORT_LEVEL_HU = (-600.0, -250.0)
EXPORT_WIDTH_HU = (1000.0, 1700.0)
EXPORT_MARGIN = (0.0, 0.1)
EXPORT_SIDE_PX = (200, 460)
EXPORT_QUALITY = (60, 95)
#: Isotropic grid (mm) 3D sources are resampled to: the workflow's default ``resample.spacing_mm``.
DEFAULT_SPACING_MM = 1.5


@dataclass
class SliceGroup:
    """Training pairs from one source unit (one 2D image, or one 3D volume): never split apart."""

    name: str
    x: np.ndarray  # (N, size, size, 1) float32 in the input space
    y: np.ndarray  # (N, size, size, 1) uint8 labels (0/1, or 0/1/2 for lesion types)
    lesion_free: bool = False
    lung: np.ndarray | None = None  # (N, size, size, 1) uint8 lung masks in the input space, when known


def label_map(mask: np.ndarray, kind: str, path: Path, png: bool = False) -> np.ndarray:
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


def read_gray(path: Path, labels: bool = False) -> np.ndarray:
    """An image as one channel at its own size. With ``labels`` (a mask) palette and grey values are kept
    as stored (a palette PNG's indices are its labels); colour images are converted to grey."""
    try:
        with Image.open(path) as img:
            if not (labels and img.mode in ("P", "L", "I", "I;16")):
                img = img.convert("L")
            return np.asarray(img)
    except OSError as exc:
        raise CovidctError(f"cannot read image ({exc})", path=path) from None


def image_pairs(images: str | Path, masks: str | Path | None) -> list[tuple[str, Path, Path | None]]:
    """(stem, image, mask) of ``images/*.jpg|png`` matched to ``masks/`` by file stem, in natural order.

    Raises:
        CovidctError: a folder is missing or empty, an image has no mask.
    """
    images = Path(images)
    folders = [images] + ([Path(masks)] if masks is not None else [])
    for folder in folders:
        if not folder.is_dir():
            raise CovidctError("folder not found", path=folder)
    imgs = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not imgs:
        raise CovidctError("no images (.jpg/.png) in the folder", path=images)
    msks = {}
    if masks is not None:
        msks = {p.stem: p for p in sorted(Path(masks).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        missing = sorted(set(imgs) - set(msks))
        if missing:
            raise CovidctError(f"{len(missing)} image(s) without a mask, e.g. {missing[0]}", path=masks)
    names = sorted(imgs, key=lambda s: (len(s), s))
    return [(n, imgs[n], msks.get(n)) for n in names]


def frame_of_image(image: np.ndarray, path: Path) -> tuple[Frame, np.ndarray]:
    """``inputs.frame_image`` with a clear error naming the image."""
    try:
        return frame_image(image)
    except ValueError as exc:
        raise CovidctError(f"{exc}: cannot frame the slice for the infection U-Net", path=path) from None


def load_image_folder(
    images: str | Path, masks: str | Path, size: int, labels: str = "binary", with_lungs: bool = False
):
    """Image/mask pairs in the input space.

    Returns:
        ``(names, x, y)``: stems, inputs (N, size, size, 1) float32 and label maps (N, size, size, 1) uint8
        (``binary``: mask > 127 is infection; ``types``: 0/1/2 kept); with ``with_lungs`` also the lung
        regions the 2D lung finder gave (N, size, size, 1) uint8.

    Raises:
        CovidctError: a folder is missing or empty, an image has no mask or no lungs, a lesion-type mask
            holds other values.
    """
    _check_kind(labels)
    names, xs, ys, lungs = [], [], [], []
    for name, img_path, mask_path in image_pairs(images, masks):
        image = read_gray(img_path).astype(np.float32)
        mask = label_map(read_gray(mask_path, labels=True), labels, mask_path, png=True)
        if mask.shape != image.shape:
            raise CovidctError(
                f"mask size {mask.shape[::-1]} differs from its image's {image.shape[::-1]}", path=mask_path
            )
        frame, region = frame_of_image(image, img_path)
        names.append(name)
        xs.append(to_input(image, frame, size))
        ys.append(mask_to_input(mask, frame, size))
        lungs.append(mask_to_input(region.astype(np.uint8), frame, size))
    out = (names, np.stack(xs)[..., None], np.stack(ys)[..., None])
    return (*out, np.stack(lungs)[..., None]) if with_lungs else out


def export_slice(
    hu: np.ndarray, lung: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """One axial HU slice as a 2D source would have exported it: grey levels of a random lung window,
    cropped to the slice's lungs with a random margin, shrunk to a random side, 8-bit, JPEG-compressed.

    Returns:
        ``(image, mask)`` (uint8 grey levels, the labels on the same pixels), or None where the slice
        holds no lung.
    """
    import io

    rows, cols = np.nonzero(lung)
    if rows.size == 0:
        return None
    level, width = rng.uniform(*EXPORT_LEVEL_HU), rng.uniform(*EXPORT_WIDTH_HU)
    grey = np.clip((hu - (level - width / 2)) / width, 0.0, 1.0) * 255.0
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    m = rng.uniform(*EXPORT_MARGIN)
    dr, dc = int(round(m * (r1 - r0))), int(round(m * (c1 - c0)))
    r0, r1 = max(0, r0 - dr), min(hu.shape[0], r1 + dr)
    c0, c1 = max(0, c0 - dc), min(hu.shape[1], c1 + dc)
    grey, mask = grey[r0:r1, c0:c1], mask[r0:r1, c0:c1]
    side = rng.uniform(*EXPORT_SIDE_PX)
    scale = min(1.0, side / max(grey.shape))
    shape = (max(8, round(grey.shape[0] * scale)), max(8, round(grey.shape[1] * scale)))
    img = Image.fromarray(np.rint(grey).astype(np.uint8)).resize(shape[::-1], Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=int(rng.integers(EXPORT_QUALITY[0], EXPORT_QUALITY[1] + 1)))
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        image = np.asarray(jpeg.convert("L"))
    labels = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(shape[::-1], Image.Resampling.NEAREST))
    return image, labels


def export_views(
    hu: np.ndarray, lung: np.ndarray, mask: np.ndarray, zs: np.ndarray, size: int, seed: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices ``zs`` of a volume as simulated exports (``export_slice``) in the input space, read like a 2D
    source (lungs found on the image): ``(x, y, lung)`` (N, size, size, 1). Slices on which the 2D lung
    finder finds no lungs are left out, as a 2D source's would be refused. ``seed`` makes them repeatable."""
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))
    xs, ys, ls = [], [], []
    for z in zs:
        exported = export_slice(hu[z], lung[z], mask[z], rng)
        if exported is None:
            continue
        image, labels = exported
        try:
            frame, region = frame_image(image.astype(np.float32))
        except ValueError:
            continue
        xs.append(to_input(image, frame, size))
        ys.append(mask_to_input(labels, frame, size))
        ls.append(mask_to_input(region.astype(np.uint8), frame, size))
    if not xs:
        empty = np.zeros((0, size, size, 1))
        return empty.astype(np.float32), empty.astype(np.uint8), empty.astype(np.uint8)
    return np.stack(xs)[..., None], np.stack(ys)[..., None], np.stack(ls)[..., None]


def _volume_files(folder: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.iterdir()):
        for suffix in NIFTI_SUFFIXES:
            if p.name.lower().endswith(suffix):
                files[p.name[: -len(suffix)]] = p
    return files


def _read(path: Path):
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CovidctError(f"cannot read volume ({str(exc).strip().splitlines()[-1]})", path=path) from None
    if img.GetDimension() != 3:
        raise CovidctError(f"expected a 3D volume, got {img.GetDimension()}D", path=path)
    return img


def _on_grid(img, reference, path: Path, what: str):
    """``img`` (a label map) resampled onto ``reference``'s grid, refusing one that covers another place."""
    out = sitk.GetArrayFromImage(resample_like(img, reference, "nearest", 0))
    if sitk.GetArrayViewFromImage(img).any() and not out.any():
        raise CovidctError(
            f"the {what} does not overlap its volume (another patient or frame of reference?)", path=path
        )
    return out


def load_volume(vpath: Path, mask_path: Path | None, lungs_path: Path | None, spacing_mm: float):
    """A 3D source volume on the isotropic workflow grid: (image, hu, lung, mask or None), arrays (z, y, x).

    The lungs are ``lungs_path`` when given, else the threshold lung backend's mask."""
    image = resample(_read(vpath), spacing_mm)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    mask = _on_grid(_read(mask_path), image, mask_path, "mask") if mask_path is not None else None
    if lungs_path is not None:
        lung = _on_grid(_read(lungs_path), image, lungs_path, "lung mask") > 0
    else:
        try:
            lung = segment_threshold(hu, image.GetSpacing()).labels > 0
        except CovidctError as exc:
            raise CovidctError(
                f"no lungs found by the threshold backend ({exc.message}); give lungs: DIR", path=vpath
            ) from None
    if not lung.any():
        raise CovidctError("the lung mask is empty", path=lungs_path or vpath)
    return image, hu, lung, mask


def _spread(indices: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of ``indices``, evenly spread."""
    if len(indices) <= n:
        return indices
    return indices[np.unique(np.linspace(0, len(indices) - 1, n).round().astype(int))] if n else indices[:0]


def volume_groups(
    volumes: str | Path,
    masks: str | Path | None,
    size: int,
    max_slices: int = 64,
    negative_ratio: float = 0.5,
    labels: str = "binary",
    lungs: str | Path | None = None,
    exclude: str | Path | None = None,
    spacing_mm: float = DEFAULT_SPACING_MM,
    exports: bool = False,
) -> list[SliceGroup]:
    """Axial slice pairs of 3D HU volumes in the input space, one group per volume.

    Per volume (on the isotropic grid, slices holding lung only): every slice with infection (evenly
    thinned to at most ``max_slices``) plus ``negative_ratio`` times as many infection-free slices,
    evenly spread (a volume without infection: ``negative_ratio`` x ``max_slices`` of them; a volume of a
    lesion-free source (``masks`` None): ``max_slices``). Slices touching an ``exclude`` mask are left out.
    With ``exports`` each chosen slice is also in the group as a simulated 8-bit export (``export_views``).

    Raises:
        CovidctError: missing folder, no volumes, a volume without a mask (or lung mask, when ``lungs``
            is given), unreadable files, a mask that does not overlap its volume, lesion types out of range.
    """
    _check_kind(labels)
    folders = {"volumes": volumes, "masks": masks, "lungs": lungs, "exclude": exclude}
    found = {}
    for key, folder in folders.items():
        if folder is None:
            continue
        if not Path(folder).is_dir():
            raise CovidctError("folder not found", path=folder)
        found[key] = _volume_files(Path(folder))
    vols = found["volumes"]
    if not vols:
        raise CovidctError(f"no volumes ({', '.join(NIFTI_SUFFIXES)}) in the folder", path=volumes)
    groups = []
    for name, vpath in vols.items():
        for key, what in (("masks", "mask"), ("lungs", "lung mask")):
            if key in found and name not in found[key]:
                raise CovidctError(f"volume {name} has no {what} of the same name", path=folders[key])
        mask_path = found["masks"][name] if "masks" in found else None
        grid, hu, lung, mask = load_volume(vpath, mask_path, found.get("lungs", {}).get(name), spacing_mm)
        if mask is None:
            mask = np.zeros(hu.shape, np.uint8)
        else:
            mask = label_map(mask, labels, mask_path)
        keep = lung.reshape(len(lung), -1).any(axis=1)
        if "exclude" in found and name in found["exclude"]:
            away = _on_grid(_read(found["exclude"][name]), grid, found["exclude"][name], "exclude mask") > 0
            keep &= ~away.reshape(len(away), -1).any(axis=1)
        has_les = mask.reshape(len(mask), -1).max(axis=1) > 0
        pos = _spread(np.nonzero(has_les & keep)[0], max_slices)
        neg = np.nonzero(~has_les & keep)[0]
        # a volume of a lesion-free source gives ``max_slices`` clean slices; a volume of a source with
        # masks ``negative_ratio`` times its infected ones (as many as ``max_slices`` infected ones without any)
        n_neg = max_slices if masks is None else round(negative_ratio * (len(pos) if len(pos) else max_slices))
        neg = _spread(neg, int(n_neg))
        zs = np.sort(np.concatenate([pos, neg]))
        if zs.size == 0:
            continue
        frame = frame_volume(hu, lung)
        x = np.stack([to_input(hu[z], frame, size) for z in zs])[..., None]
        y = np.stack([mask_to_input(mask[z], frame, size) for z in zs])[..., None]
        lz = np.stack([mask_to_input(lung[z].astype(np.uint8), frame, size) for z in zs])[..., None]
        if exports:
            ex, ey, el = export_views(hu, lung, mask, zs, size, seed=f"{Path(volumes).name}/{name}")
            x, y, lz = np.concatenate([x, ex]), np.concatenate([y, ey]), np.concatenate([lz, el])
        groups.append(SliceGroup(f"{Path(volumes).name}/{name}", x, y, lesion_free=masks is None, lung=lz))
    return groups


def image_groups(images: str | Path, masks: str | Path, size: int, labels: str = "binary") -> list[SliceGroup]:
    """2D image/mask pairs (``Imgs/*.jpg`` + ``GT/*.png``); each image is its own group."""
    names, x, y, lung = load_image_folder(images, masks, size, labels, with_lungs=True)
    return [
        SliceGroup(f"{Path(images).name}/{n}", x[i : i + 1], y[i : i + 1], lung=lung[i : i + 1])
        for i, n in enumerate(names)
    ]


def source_labels(sources: list[dict]) -> str:
    """The label kind all sources with masks share (``binary`` or ``types``); mixing them is refused.
    Lesion-free sources fit either."""
    kinds = {src.get("labels", "binary") for src in sources if not src.get("lesion_free")}
    for kind in kinds:
        _check_kind(kind)
    if len(kinds) > 1:
        raise CovidctError(
            "infection.train mixes binary and lesion-type (labels: types) sources: one network learns one "
            "kind of mask; give all sources the same labels"
        )
    return kinds.pop() if kinds else "binary"


def check_source(i: int, src: dict) -> None:
    """A training source's keys, or a clear error naming it (1-based ``i``)."""
    extra = set(src) - SOURCE_KEYS
    where = f"infection.train source {i}"
    if extra:
        raise CovidctError(f"{where}: unknown key(s) {sorted(extra)}; use {sorted(SOURCE_KEYS)}")
    if src.get("lesion_free"):
        if "volumes" not in src or "images" in src or "masks" in src:
            raise CovidctError(
                f"{where}: a lesion_free source gives volumes (and optionally lungs, exclude, exports), no masks"
            )
        return
    if "masks" not in src or ("images" in src) == ("volumes" in src):
        raise CovidctError(
            f"{where}: give masks, exactly one of images (2D) or volumes (3D NIfTI) and optionally labels "
            f"(binary or types), got keys {sorted(src)}"
        )
    if "images" in src and ({"lungs", "exclude", "exports"} & set(src)):
        raise CovidctError(
            f"{where}: lungs, exclude and exports apply to volumes; 2D images get their lungs found on them"
        )


def load_sources(
    sources: list[dict], size: int, max_slices: int = 64, spacing_mm: float = DEFAULT_SPACING_MM
) -> list[SliceGroup]:
    """All groups of the configured sources (see the module's docstring for the kinds of source)."""
    labels = source_labels(sources)
    groups = []
    for i, src in enumerate(sources):
        check_source(i + 1, src)
        if "images" in src:
            found = image_groups(src["images"], src["masks"], size, src.get("labels", "binary"))
        else:
            found = volume_groups(
                src["volumes"],
                None if src.get("lesion_free") else src["masks"],
                size,
                max_slices,
                labels=src.get("labels", labels),
                lungs=src.get("lungs"),
                exclude=src.get("exclude"),
                spacing_mm=spacing_mm,
                exports=bool(src.get("exports", False)),
            )
        groups += [SliceGroup(f"s{i + 1}:{g.name}", g.x, g.y, g.lesion_free, g.lung) for g in found]
        log.info("source %d: %d units, %d slices%s", i + 1, len(found), sum(len(g.x) for g in found),
                 " (lesion-free)" if src.get("lesion_free") else "")  # fmt: skip
    return groups


def describe_sources(sources: list[dict], groups: list[SliceGroup]) -> list[dict]:
    """The model card's entries of the sources: each folder's name, synthetic or real, its counts."""
    from covidct.modelcard import is_synthetic_folder, source_entry

    out = []
    for i, src in enumerate(sources):
        mine = [g for g in groups if g.name.startswith(f"s{i + 1}:")]
        folder = Path(src.get("images") or src["volumes"])
        kind = "synthetic" if is_synthetic_folder(folder) else "real"
        unit = "images" if "images" in src else "volumes"
        counts = {unit: len(mine), "slices": sum(len(g.x) for g in mine)}
        if unit == "volumes":
            counts["subjects"] = len(mine)
        counts["labels"] = "lesion-free" if src.get("lesion_free") else src.get("labels", "binary")
        out.append(source_entry(f"{folder.parent.name}/{folder.name}", kind, **counts))
    return out


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


def stack_lungs(groups: list[SliceGroup]) -> np.ndarray | None:
    """The lung masks of several groups, stacked like ``stack``; None when a group has none."""
    if any(g.lung is None for g in groups):
        return None
    return np.concatenate([g.lung for g in groups])
