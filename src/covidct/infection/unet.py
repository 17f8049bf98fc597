"""The infection U-Net: architecture, losses, mask metrics.

The network follows the second study (input ``size`` x ``size`` x 1 slices, here in the input space of
``covidct.infection.inputs``: cropped to the lungs and calibrated inside them; four
contracting blocks of two 3x3 convolutions and 2x2 max pooling, 32-64-128-256 filters, a 512-filter
bottleneck, four expanding blocks of a 2x2 transposed convolution, the skip and two 3x3
convolutions, a 1x1 output convolution), with one change that makes small-data training stable:
every 3x3 convolution is followed by a normalization layer before its ReLU: BatchNorm by default,
GroupNorm or none as options. GroupNorm normalizes each slice on its own, and on slices with no lesion
at all that amplifies the most lesion-like healthy tissue: on held-out healthy synthetic phantoms a
GroupNorm U-Net marked 6.7-7.7 % of the lung, a BatchNorm one (population statistics at inference) 0.8 %.

Two heads:

- ``classes=1``: one sigmoid channel, the probability of infection (binary masks).
- ``classes=3``: softmax over background / ground-glass / consolidation (lesion-type masks, as
  COVID-SemiSeg's multi-class set); the infection probability is 1 - p(background).

Losses (the ``variant`` of a run): ``dice_ce`` (cross-entropy + soft Dice, nnU-Net's default, the
default here), and the study's three: ``bce`` (cross-entropy), ``bce_iou`` (the same loss, the study
monitored IoU instead of accuracy: trained identically, kept for comparison) and ``dice`` (soft Dice).
Soft Dice is pooled over the batch (per foreground class, then averaged), so lesion-free slices do not
reward an empty output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD = 0.5
DEFAULT_SIZE = 256
VARIANTS = ("dice_ce", "bce", "bce_iou", "dice")
NORMS = ("batch", "group", "none")
#: He initialization for the ReLU convolutions.
INIT = "he_normal"
CLASS_NAMES = {1: ("background", "infection"), 3: ("background", "ground_glass", "consolidation")}


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


def mean_metrics(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean of ``mask_metrics`` over pairs of masks (the per-image mean, as the published tables)."""
    ms = [mask_metrics(t, p) for t, p in zip(truths, preds)]
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]} if ms else {}


def pooled_dice(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> float:
    """Dice of all pixels of all pairs together (1.0 when both are empty everywhere).

    >>> pooled_dice([np.array([1, 0])], [np.array([1, 1])])
    0.6666666666666666
    """
    tp = fp = fn = 0
    for t, p in zip(truths, preds):
        a, b, c, _ = confusion(t, p)
        tp, fp, fn = tp + a, fp + b, fn + c
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def _register():
    """The custom losses, registered so a saved model loads without ``custom_objects``."""
    import keras

    ops = keras.ops

    @keras.saving.register_keras_serializable(package="covidct")
    def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
        """1 - soft Dice pooled over the batch, per foreground channel, averaged (channel 0 of a
        sigmoid head; channels 1.. of a softmax head)."""
        y_true = ops.cast(y_true, y_pred.dtype)
        if y_pred.shape[-1] > 1:
            y_true, y_pred = y_true[..., 1:], y_pred[..., 1:]
        inter = ops.sum(y_true * y_pred, axis=(0, 1, 2))
        total = ops.sum(y_true, axis=(0, 1, 2)) + ops.sum(y_pred, axis=(0, 1, 2))
        return 1.0 - ops.mean((2.0 * inter + smooth) / (total + smooth))

    @keras.saving.register_keras_serializable(package="covidct")
    def cross_entropy_loss(y_true, y_pred):
        """Binary cross-entropy (sigmoid head) or categorical cross-entropy (softmax head, one-hot)."""
        y_true = ops.cast(y_true, y_pred.dtype)
        if y_pred.shape[-1] > 1:
            return ops.mean(keras.losses.categorical_crossentropy(y_true, y_pred))
        return ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))

    @keras.saving.register_keras_serializable(package="covidct")
    def dice_ce_loss(y_true, y_pred):
        """Cross-entropy + soft Dice (nnU-Net's compound loss)."""
        return cross_entropy_loss(y_true, y_pred) + soft_dice_loss(y_true, y_pred)

    return {"dice_ce": dice_ce_loss, "bce": cross_entropy_loss, "bce_iou": cross_entropy_loss, "dice": soft_dice_loss}


_LOSSES: dict = {}


def losses() -> dict:
    """Loss function of each variant (registered with Keras on first use)."""
    if not _LOSSES:
        _LOSSES.update(_register())
    return _LOSSES


def _norm_layer(norm: str, filters: int):
    from keras import layers

    if norm == "group":
        return layers.GroupNormalization(groups=min(8, filters))
    if norm == "batch":
        # momentum 0.9 (PyTorch's 0.1): Keras' 0.99 leaves the inference statistics hundreds of steps
        # behind on small training sets (tens of steps per epoch), and the held-out Dice stays flat for epochs
        return layers.BatchNormalization(momentum=0.9)
    return None


def build_unet(
    size: int = DEFAULT_SIZE,
    base_filters: int = 32,
    loss: str = "dice_ce",
    learning_rate: float = 1e-3,
    classes: int = 1,
    norm: str = "batch",
):
    """The 2D U-Net, compiled for one training variant.

    Args:
        size: Input height and width (divisible by 16).
        base_filters: Filters of the first block (32 in the study; 32-64-128-256, bottleneck 512).
        loss: One of ``VARIANTS``.
        learning_rate: Adam's initial learning rate (training sets it per epoch: warm-up, cosine).
        classes: 1 (sigmoid infection) or 3 (softmax background / ground-glass / consolidation).
        norm: ``batch`` (BatchNorm), ``group`` (GroupNorm, up to 8 groups) or ``none`` after each 3x3 convolution.
    """
    import keras
    from keras import layers

    if size % 16:
        raise ValueError(f"U-Net input size must be divisible by 16, got {size}")
    if loss not in VARIANTS:
        raise ValueError(f"unknown U-Net loss {loss!r}: use one of {', '.join(VARIANTS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown normalization {norm!r}: use one of {', '.join(NORMS)}")
    if classes not in CLASS_NAMES:
        raise ValueError(f"the U-Net has 1 (infection) or 3 (lesion types) output classes, got {classes}")

    def conv(x, f):
        layer = _norm_layer(norm, f)
        x = layers.Conv2D(f, 3, padding="same", use_bias=layer is None, kernel_initializer=INIT)(x)
        if layer is not None:
            x = layer(x)
        return layers.Activation("relu")(x)

    inputs = keras.Input((size, size, 1), name="slice")
    x, skips = inputs, []
    for i in range(4):
        x = conv(conv(x, base_filters * 2**i), base_filters * 2**i)
        skips.append(x)
        x = layers.MaxPool2D(2)(x)
    x = conv(conv(x, base_filters * 16), base_filters * 16)
    for i in reversed(range(4)):
        f = base_filters * 2**i
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", kernel_initializer=INIT)(x)
        x = layers.Concatenate()([x, skips[i]])
        x = conv(conv(x, f), f)
    activation = "sigmoid" if classes == 1 else "softmax"
    outputs = layers.Conv2D(classes, 1, activation=activation, dtype="float32", name="infection")(x)
    model = keras.Model(inputs, outputs, name=f"unet_{loss}")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses()[loss])
    return model


def load_model(path):
    """A saved U-Net (its custom losses are registered first)."""
    import keras

    losses()
    return keras.saving.load_model(str(path))


def infection_probability(prob: np.ndarray) -> np.ndarray:
    """(..., classes) network output -> infection probability (...): the sigmoid channel, or
    1 - p(background) of a softmax head."""
    prob = np.asarray(prob)
    return prob[..., 0] if prob.shape[-1] == 1 else 1.0 - prob[..., 0]


def lesion_types(prob: np.ndarray) -> np.ndarray | None:
    """(..., 3) softmax output -> lesion type (1 ground-glass, 2 consolidation: the likelier of the two),
    uint8; None for a binary head."""
    prob = np.asarray(prob)
    if prob.shape[-1] == 1:
        return None
    return (1 + (prob[..., 2] > prob[..., 1])).astype(np.uint8)
