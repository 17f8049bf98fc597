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
#: He initialization for the ReLU convolutions (Keras' default Glorot starts a ReLU U-Net without
#: batch normalization slowly: several flat epochs on small data sets).
INIT = "he_normal"


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
        x = layers.Conv2D(f, 3, padding="same", activation="relu", kernel_initializer=INIT)(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", kernel_initializer=INIT)(x)
        skips.append(x)
        x = layers.MaxPool2D(2)(x)
    x = layers.Conv2D(base_filters * 16, 3, padding="same", activation="relu", kernel_initializer=INIT)(x)
    x = layers.Conv2D(base_filters * 16, 3, padding="same", activation="relu", kernel_initializer=INIT)(x)
    for i in reversed(range(4)):
        f = base_filters * 2**i
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", kernel_initializer=INIT)(x)
        x = layers.Concatenate()([x, skips[i]])
        x = layers.Conv2D(f, 3, padding="same", activation="relu", kernel_initializer=INIT)(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", kernel_initializer=INIT)(x)
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
    """1 - soft Dice over the whole batch (all pixels of all images).

    Pooled over the batch rather than averaged per image: with per-image Dice, lesion-free
    slices reward an all-background output and training can collapse to it.
    """
    import keras

    ops = keras.ops
    y_true = ops.cast(y_true, y_pred.dtype)
    inter = ops.sum(y_true * y_pred)
    total = ops.sum(y_true) + ops.sum(y_pred)
    return 1.0 - (2.0 * inter + smooth) / (total + smooth)


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


def load_model(path: str | Path):
    """A saved U-Net (any of the three variants: the Dice one needs its loss to load)."""
    import keras

    return keras.saving.load_model(str(path), custom_objects={"soft_dice_loss": soft_dice_loss})


def evaluate_folder(model_path: str | Path, images: str | Path, masks: str | Path, out_json: str | Path,
                    threshold: float = THRESHOLD) -> dict:
    """Per-image and mean Dice, IoU, pixel accuracy, sensitivity, specificity of a saved U-Net.

    Works on any folder pair in the ``Imgs/`` + ``GT/`` layout; images are resized to the
    model's input size, predictions thresholded at ``threshold``.
    """
    from covidct.io import write_json

    model = load_model(model_path)
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


def augment_pairs(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random per-image augmentation of (N, H, W, 1) image/mask pairs.

    Each pair gets a random 90-degree rotation and flip, a random zoom (0.85-1.15) with a
    shift of up to 8% and a rotation of up to 15 degrees (linear for the image, nearest for
    the mask, outside filled with the image minimum), and a random contrast (x0.9-1.1) and
    brightness (+-0.1 std) change. Masks stay binary.
    """
    from scipy import ndimage

    xa, ya = np.empty_like(x, dtype=np.float32), np.empty_like(y)
    n, h, w = x.shape[:3]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    for i in range(n):
        img, msk = x[i, ..., 0], y[i, ..., 0]
        k = int(rng.integers(0, 4))
        img, msk = np.rot90(img, k), np.rot90(msk, k)
        if rng.random() < 0.5:
            img, msk = img[:, ::-1], msk[:, ::-1]
        zoom = rng.uniform(0.85, 1.15)
        angle = np.deg2rad(rng.uniform(-15, 15))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
        shift = rng.uniform(-0.08, 0.08, 2) * np.array([h, w])
        offset = centre - rot @ centre - shift
        img = ndimage.affine_transform(np.ascontiguousarray(img, np.float32), rot, offset, order=1,
                                       mode="constant", cval=float(img.min()))
        msk = ndimage.affine_transform(np.ascontiguousarray(msk), rot, offset, order=0, mode="constant", cval=0)
        xa[i, ..., 0] = img * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1)
        ya[i, ..., 0] = msk
    return xa, ya


def train_unet(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, loss: str,
               epochs: int, batch_size: int = 4, base_filters: int = 32, learning_rate: float = 1e-3,
               patience: int | None = None, augment: bool = True, seed: int = 0, log=None):
    """Train one U-Net variant; keep the weights of the epoch with the best val Dice.

    Every epoch sees each training pair once, freshly augmented (``augment_pairs``); after
    each epoch the val images are predicted and the mean per-image metrics (threshold 0.5)
    computed. Training stops after ``patience`` epochs without a better val Dice.

    Returns:
        ``(model, history, best)``: the model with the best epoch's weights, one dict of
        metrics per epoch (epoch, loss, seconds, val dice/iou/accuracy/sensitivity/
        specificity) and the best epoch's row.
    """
    import time

    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_unet(int(x_train.shape[1]), base_filters, loss, learning_rate)
    y_train = y_train.astype(np.float32)
    history, best, best_weights = [], None, None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        xa, ya = augment_pairs(x_train, y_train, rng) if augment else (x_train, y_train)
        fit = model.fit(xa, ya, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        seconds = time.perf_counter() - t0
        prob = np.asarray(model.predict(x_val, batch_size=batch_size, verbose=0))
        row = {"epoch": epoch, "loss": float(fit.history["loss"][-1]), "seconds": round(seconds, 3),
               **{f"val_{k}": v for k, v in mean_metrics(list(y_val[..., 0]), list(prob[..., 0] >= THRESHOLD)).items()}}
        history.append(row)
        if log:
            log(f"{loss} epoch {epoch}: loss {row['loss']:.4f}, val Dice {row['val_dice']:.4f} ({seconds:.1f} s)")
        if best is None or row["val_dice"] > best["val_dice"]:
            best, best_weights = row, model.get_weights()
        elif patience is not None and epoch - best["epoch"] >= patience:
            break
    model.set_weights(best_weights)
    return model, history, best


def mean_metrics(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean of ``mask_metrics`` over pairs of masks."""
    ms = [mask_metrics(t, p) for t, p in zip(truths, preds)]
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]} if ms else {}
