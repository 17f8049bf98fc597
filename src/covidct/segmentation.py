"""Infection segmentation on 2D CT slices: metrics, the study's U-Net, data loading, evaluation.

Metrics are plain numpy and hand-checkable. The U-Net follows the second study: input
256x256x1 standardized (subtract mean, divide by std), four contracting blocks of two
3x3 conv + ReLU and 2x2 max pooling (32, 64, 128, 256 filters), a 512-filter bottleneck,
four expanding blocks of 2x2 transposed convolution, concatenation with the skip and
two 3x3 convs (256 down to 32), a 1x1 conv with sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError

THRESHOLD = 0.5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_SIZE = 256


def confusion(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) of two binary masks."""
    t, p = np.asarray(truth) > 0, np.asarray(pred) > 0
    return int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum()), int((~t & ~p).sum())


def mask_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice, IoU, pixel accuracy, sensitivity and specificity of a predicted binary mask.

    Empty truth and empty prediction agree perfectly (Dice = IoU = 1); a ratio whose
    denominator is empty (sensitivity without lesion) is 1 when nothing was missed.

    >>> t = np.array([[1, 1, 0, 0]]); p = np.array([[1, 0, 1, 0]])
    >>> m = mask_metrics(t, p); (m["dice"], m["iou"], m["accuracy"])
    (0.5, 0.3333333333333333, 0.5)
    >>> mask_metrics(np.zeros((2, 2)), np.zeros((2, 2)))["dice"]
    1.0
    """
    tp, fp, fn, tn = confusion(truth, pred)
    n = tp + fp + fn + tn
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "accuracy": (tp + tn) / n if n else 1.0,
        "sensitivity": tp / (tp + fn) if tp + fn else 1.0,
        "specificity": tn / (tn + fp) if tn + fp else 1.0,
    }


def standardize(image: np.ndarray) -> np.ndarray:
    """Subtract the mean and divide by the standard deviation (of this image), float32."""
    image = np.asarray(image, dtype=np.float32)
    std = float(image.std())
    return (image - float(image.mean())) / (std if std > 0 else 1.0)


def build_unet(size: int = DEFAULT_SIZE, base_filters: int = 32, loss: str = "bce", learning_rate: float = 1e-3):
    """The study's 2D U-Net, compiled for one of its three training variants.

    Args:
        size: Input height and width (divisible by 16).
        base_filters: Filters of the first block (32 in the study; 32-64-128-256, bottleneck 512).
        loss: ``bce`` (binary cross-entropy, pixel accuracy), ``bce_iou`` (binary cross-entropy,
            IoU metric) or ``dice`` (soft Dice loss 1 - Dice).
        learning_rate: Adam learning rate.
    """
    import keras
    from keras import layers

    if size % 16:
        raise ValueError(f"U-Net input size must be divisible by 16, got {size}")
    inputs = keras.Input((size, size, 1), name="slice")
    x, skips = inputs, []
    for i in range(4):
        f = base_filters * 2**i
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = layers.MaxPool2D(2)(x)
    x = layers.Conv2D(base_filters * 16, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(base_filters * 16, 3, padding="same", activation="relu")(x)
    for i in reversed(range(4)):
        f = base_filters * 2**i
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skips[i]])
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="infection")(x)
    model = keras.Model(inputs, outputs, name=f"unet_{loss}")
    metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.BinaryIoU(target_class_ids=[1],
                                                                                       name="iou")]
    losses = {"bce": "binary_crossentropy", "bce_iou": "binary_crossentropy", "dice": soft_dice_loss}
    if loss not in losses:
        raise ValueError(f"unknown U-Net loss {loss!r}: use bce, bce_iou or dice")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses[loss], metrics=metrics)
    return model


def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """1 - soft Dice over each image, averaged over the batch."""
    import keras

    ops = keras.ops
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = (1, 2, 3)
    inter = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - ops.mean((2.0 * inter + smooth) / (total + smooth))


def _read_gray(path: Path, size: int, resample: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("L")
            if img.size != (size, size):
                img = img.resize((size, size), resample)
            return np.asarray(img)
    except OSError as exc:
        raise CovidctError(f"cannot read image ({exc})", path=path) from None


def load_image_folder(images: str | Path, masks: str | Path, size: int = DEFAULT_SIZE):
    """Image/mask pairs from ``images/*.jpg`` and ``masks/*.png`` matched by file stem.

    Returns:
        ``(names, x, y)``: stems, standardized images (N, size, size, 1) float32 and
        binary masks (N, size, size, 1) uint8 (mask > 0 is lesion).

    Raises:
        CovidctError: a folder is missing or empty, or an image has no mask.
    """
    from PIL import Image

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
    y = np.stack([(_read_gray(msks[n], size, Image.NEAREST) > 127).astype(np.uint8) for n in names])[..., None]
    return names, x, y


def evaluate_folder(model_path: str | Path, images: str | Path, masks: str | Path, out_json: str | Path,
                    threshold: float = THRESHOLD) -> dict:
    """Per-image and mean Dice, IoU, pixel accuracy, sensitivity, specificity of a saved U-Net.

    Works on any folder pair in the ``Imgs/`` + ``GT/`` layout; images are resized to the
    model's input size, predictions thresholded at ``threshold``.
    """
    import keras

    from covidct.io import write_json

    model = keras.saving.load_model(str(model_path), custom_objects={"soft_dice_loss": soft_dice_loss})
    size = int(model.input_shape[1])
    names, x, y = load_image_folder(images, masks, size)
    prob = np.asarray(model.predict(x, batch_size=4, verbose=0))
    per_image = {}
    for i, name in enumerate(names):
        per_image[name] = mask_metrics(y[i, ..., 0], prob[i, ..., 0] >= threshold)
    keys = ("dice", "iou", "accuracy", "sensitivity", "specificity")
    result = {"n_images": len(names), "threshold": threshold,
              "mean": {k: float(np.mean([m[k] for m in per_image.values()])) for k in keys},
              "per_image": per_image}
    write_json(out_json, result)
    return result


def mean_metrics(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean of ``mask_metrics`` over pairs of masks."""
    ms = [mask_metrics(t, p) for t, p in zip(truths, preds)]
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]} if ms else {}
