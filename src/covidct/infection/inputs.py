"""The infection U-Net's input space: every slice, from any source, reaches the network the same way.

A 2D export of a lung-windowed slice (COVID-SemiSeg's tight crops, a full-field-of-view 8-bit image) and
an axial slice of a patient's HU volume show the same lung at different scales, fields of view, windows
and orientations. ``Frame`` removes those differences, with one code path for training and inference:

1. **Lungs**: the patient's lung mask (volumes), or the 2D lung finder (``covidct.infection.lungs2d``)
   on an image.
2. **Crop**: a square box around the lungs (the lung mask's bounding box over the whole volume, or the
   image's lung box, at least the chest's expected cavity), widened by ``MARGIN`` per side and resized
   to ``size`` x ``size``: the lungs fill the input's width whatever the field of view and pixel size
   (a relative scale; 2D exports carry no pixel spacing).
3. **Orientation**: a 2D image whose lungs lie one above the other (turned by 90 degrees) is turned
   back, so the lungs lie left and right as on an axial slice; left-right and up-down flips are
   augmentations.
4. **Intensity calibration** inside the lungs: two anchors, ``low`` (the ``LOW_PERCENTILE`` of the
   lungs: aerated parenchyma, about -900 HU) and ``high`` (the median of the soft tissue in the box
   around the lungs, about +40 HU), mapped to 0 and 1. A HU volume and an 8-bit export of any lung
   window land on one scale: aerated lung near 0, ground-glass near 0.4-0.6, consolidation near 1.
   Unlike a per-slice mean/std, the anchors do not move with the amount of disease, so a healthy
   lung is not stretched until its vessels look like lesions. Values are clipped to ``CLIP``.

For a volume the box and anchors come from the whole volume (every slice of a patient on one scale);
for a 2D image from the image itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from covidct.infection.lungs2d import find_lungs

#: Margin around the lungs' box, as a share of its side.
MARGIN = 0.06
#: The low anchor: this percentile of the lung's values (aerated parenchyma).
LOW_PERCENTILE = 5.0
#: Calibrated values are clipped to this range (air outside the body below 0, bone above 1).
CLIP = (-0.25, 1.5)
#: Where a calibrated value counts as tissue when the high anchor is estimated: halfway between the
#: lung's low anchor and the box's 95th percentile.
TISSUE_SPLIT = 0.5
#: What a model's sidecar records of the input space it was trained on; inference refuses another.
INPUT_SPACE = {
    "name": "lung-framed, anchor-calibrated slices",
    "version": 2,
    "margin": MARGIN,
    "low_percentile": LOW_PERCENTILE,
    "clip": list(CLIP),
}
#: Anchors of a HU volume when the lungs or tissue are too few to estimate them (aerated lung, soft tissue).
DEFAULT_ANCHORS_HU = (-900.0, 40.0)


@dataclass(frozen=True)
class Frame:
    """How a slice (or every slice of a volume) maps into the network's input.

    Attributes:
        shape: (H, W) of the original slice.
        box: (row0, row1, col0, col1) of the square crop in the slice's pixels (may reach outside it).
        turn: Quarter turns (``np.rot90``) applied after cropping: 0, or 1 for a slice turned by 90 degrees.
        low: Value mapped to 0 (aerated lung).
        high: Value mapped to 1 (soft tissue).
        pad: Value outside the slice (air).
    """

    shape: tuple[int, int]
    box: tuple[int, int, int, int]
    turn: int
    low: float
    high: float
    pad: float

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def square_box(box: tuple[int, int, int, int], margin: float = MARGIN) -> tuple[int, int, int, int]:
    """A square box centred on ``box`` (row0, row1, col0, col1), its side the longer one plus ``margin`` per side.

    >>> square_box((10, 30, 0, 40), margin=0.0)
    (0, 40, 0, 40)
    """
    r0, r1, c0, c1 = box
    side = max(r1 - r0, c1 - c0)
    side = max(1, int(round(side * (1 + 2 * margin))))
    rc, cc = (r0 + r1) / 2, (c0 + c1) / 2
    top, left = int(round(rc - side / 2)), int(round(cc - side / 2))
    return top, top + side, left, left + side


def anchors(values: np.ndarray, lung: np.ndarray, box_values: np.ndarray, box_lung: np.ndarray) -> tuple[float, float]:
    """(low, high): the lung's ``LOW_PERCENTILE`` and the median tissue value around it.

    Args:
        values: The values of the lung's pixels are taken from here, with ``lung`` (any shape).
        lung: The lung mask on ``values``.
        box_values: The pixels of the box around the lungs.
        box_lung: The lung mask on ``box_values``.

    Tissue is what lies in the box outside the lungs and above the point ``TISSUE_SPLIT`` of the way from
    ``low`` to the box's 95th percentile (outside air and the lungs below it; fat, muscle, vessels, bone
    above: the median of these is soft tissue).
    """
    lung_values = values[lung]
    if lung_values.size < 20:
        raise ValueError("too few lung pixels to calibrate")
    low = float(np.percentile(lung_values, LOW_PERCENTILE))
    around = box_values[~box_lung]
    top = float(np.percentile(box_values, 95))
    tissue = around[around > low + TISSUE_SPLIT * (top - low)]
    if tissue.size < 20 or top <= low:
        raise ValueError("too little tissue around the lungs to calibrate")
    high = float(np.median(tissue))
    if high <= low:
        raise ValueError("tissue is not brighter than the lungs")
    return low, high


def _paste(array: np.ndarray, box: tuple[int, int, int, int], pad: float) -> np.ndarray:
    """The (..., rows, cols) window ``box`` of ``array``; outside the array: ``pad``."""
    r0, r1, c0, c1 = box
    h, w = array.shape[-2:]
    out = np.full(array.shape[:-2] + (r1 - r0, c1 - c0), pad, dtype=np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if sr0 < sr1 and sc0 < sc1:
        out[..., sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = array[..., sr0:sr1, sc0:sc1]
    return out


def resize(image: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize a 2D array to ``shape``: linear (``order`` 1, area-averaged first when shrinking by more
    than 2x) or nearest (``order`` 0, labels)."""
    image = np.asarray(image, np.float32)
    if image.shape == tuple(shape):
        return image
    if order == 1:
        shrink = min(image.shape[0] / shape[0], image.shape[1] / shape[1])
        if shrink > 2:
            image = ndimage.uniform_filter(image, size=int(shrink), mode="nearest")
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    out = ndimage.zoom(image, factors, order=order, grid_mode=True, mode="nearest")
    if out.shape != tuple(shape):  # zoom may round a side one pixel off
        fixed = np.empty(shape, np.float32)
        fixed[...] = out[: shape[0], : shape[1]][
            np.minimum(np.arange(shape[0]), out.shape[0] - 1)[:, None],
            np.minimum(np.arange(shape[1]), out.shape[1] - 1)[None, :],
        ]
        out = fixed
    return out


def frame_image(image: np.ndarray) -> tuple[Frame, np.ndarray]:
    """The frame of a 2D grey-level image (lungs found on it) and its lung region.

    Raises:
        ValueError: no lungs found on the image.
    """
    image = np.asarray(image, np.float32)
    lungs = find_lungs(image)
    if lungs.n_lungs == 0:
        raise ValueError("no lungs found on the image")
    box = square_box(lungs.box())
    b = _paste(image, box, float(image.min()))
    bl = _paste(lungs.region.astype(np.float32), box, 0.0) > 0.5
    low, high = anchors(image, lungs.region, b, bl)
    turn = 1 if lungs.side_by_side == "columns" else 0
    return Frame(image.shape, box, turn, low, high, float(image.min())), lungs.region


def frame_volume(volume: np.ndarray, lung: np.ndarray, pad: float = -1000.0) -> Frame:
    """The frame of every axial slice of a (z, y, x) volume: the box of its lung mask over all slices,
    anchors from all of its lung slices. ``pad`` is the value outside the image (HU: air)."""
    lung = np.asarray(lung) > 0
    if not lung.any():
        raise ValueError("the lung mask is empty")
    rows = np.nonzero(lung.any(axis=(0, 2)))[0]
    cols = np.nonzero(lung.any(axis=(0, 1)))[0]
    box = square_box((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
    zs = np.nonzero(lung.any(axis=(1, 2)))[0]
    sub = volume[zs]
    b = _paste(sub, box, pad)
    bl = _paste(lung[zs].astype(np.float32), box, 0.0) > 0.5
    try:
        low, high = anchors(sub, lung[zs], b, bl)
    except ValueError:
        low, high = DEFAULT_ANCHORS_HU
    return Frame(tuple(volume.shape[1:]), box, 0, low, high, pad)


def calibrate(values: np.ndarray, frame: Frame) -> np.ndarray:
    """Values mapped by the frame's anchors (low -> 0, high -> 1), clipped to ``CLIP``.

    >>> f = Frame((4, 4), (0, 4, 0, 4), 0, -900.0, 40.0, -1000.0)
    >>> calibrate(np.array([-900.0, -430.0, 40.0, 3000.0]), f).round(2).tolist()
    [0.0, 0.5, 1.0, 1.5]
    """
    out = (np.asarray(values, np.float32) - np.float32(frame.low)) / np.float32(frame.high - frame.low)
    return np.clip(out, *CLIP).astype(np.float32)


def to_input(image: np.ndarray, frame: Frame, size: int) -> np.ndarray:
    """One slice in the network's input space: cropped, turned, resized to ``size`` x ``size``, calibrated."""
    crop = _paste(np.asarray(image, np.float32), frame.box, frame.pad)
    crop = np.rot90(crop, frame.turn) if frame.turn else crop
    return calibrate(resize(crop, (size, size), order=1), frame)


def mask_to_input(mask: np.ndarray, frame: Frame, size: int) -> np.ndarray:
    """A label map cropped, turned and resized (nearest) like ``to_input``; uint8 labels kept."""
    crop = _paste(np.asarray(mask, np.float32), frame.box, 0.0)
    crop = np.rot90(crop, frame.turn) if frame.turn else crop
    return np.rint(resize(crop, (size, size), order=0)).astype(np.uint8)


def from_input(prob: np.ndarray, frame: Frame) -> np.ndarray:
    """A (size, size) map of the input space back on the slice's grid (linear; 0 outside the box)."""
    r0, r1, c0, c1 = frame.box
    big = resize(np.asarray(prob, np.float32), (r1 - r0, c1 - c0), order=1)
    big = np.rot90(big, -frame.turn) if frame.turn else big
    h, w = frame.shape
    out = np.zeros((h, w), np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if sr0 < sr1 and sc0 < sc1:
        out[sr0:sr1, sc0:sc1] = big[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0]
    return out
