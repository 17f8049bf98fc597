"""The 3D CNN of the original study (Keras "3D image classification from CT scans"):
Conv3D 64-64-128-256, each followed by MaxPool3D and BatchNorm, global average
pooling, Dense 512, Dropout 0.3, then a sigmoid (classifier) or a linear output
clipped to 0-100 (severity scorer).

Deviation, on purpose: convolutions use ``padding="same"`` so that small test
shapes (16x32x32) survive four poolings; at 64x128x128 this changes only the border.
Keras/TensorFlow are imported inside functions so importing covidct stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence

from covidct import config

#: Filters of the four Conv3D blocks and units of the dense layer: config ``train.filters``, ``train.dense``.
DEFAULT_FILTERS = tuple(config.default("train.filters"))
DEFAULT_DENSE = config.default("train.dense")
DROPOUT = 0.3
SCORE_MAX = 100.0


def build_backbone(
    shape: Sequence[int], filters: Sequence[int] = DEFAULT_FILTERS, dense: int = DEFAULT_DENSE, name: str = "cnn3d"
):
    """Inputs and the 512-unit feature layer shared by both heads.

    Args:
        shape: (depth, height, width) of the input; a channel axis of 1 is added.
        filters: Filters of the four Conv3D blocks.
        dense: Units of the dense layer.
        name: Model name prefix.

    Returns:
        ``(inputs, features)`` Keras tensors.
    """
    import keras
    from keras import layers

    inputs = keras.Input((*shape, 1), name="ct")
    x = inputs
    for i, f in enumerate(filters):
        x = layers.Conv3D(f, kernel_size=3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPool3D(pool_size=2, name=f"pool{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
    x = layers.GlobalAveragePooling3D(name="gap")(x)
    x = layers.Dense(dense, activation="relu", name="dense")(x)
    x = layers.Dropout(DROPOUT, name="dropout")(x)
    return inputs, x


def build_classifier(
    shape: Sequence[int],
    filters: Sequence[int] = DEFAULT_FILTERS,
    dense: int = DEFAULT_DENSE,
    learning_rate: float = 1e-4,
):
    """COVID-19 classifier: sigmoid output, binary cross-entropy, Adam, AUC metric."""
    import keras

    inputs, x = build_backbone(shape, filters, dense)
    out = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="covid_probability")(x)
    model = keras.Model(inputs, out, name="covid_classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    return model


def score_layer():
    """A layer: percent = 100 x input, clipped to [0, 100] at inference (not in training,
    where the clip would stop the gradient of out-of-range predictions)."""
    import keras

    @keras.saving.register_keras_serializable(package="covidct", name="ScoreOutput")
    class ScoreOutput(keras.layers.Layer):
        def call(self, x, training=None):
            x = x * SCORE_MAX
            return x if training else keras.ops.clip(x, 0.0, SCORE_MAX)

    return ScoreOutput(name="score", dtype="float32")


def build_scorer(
    shape: Sequence[int],
    filters: Sequence[int] = DEFAULT_FILTERS,
    dense: int = DEFAULT_DENSE,
    learning_rate: float = 1e-4,
    loss: str = "huber",
):
    """Severity scorer: linear output clipped to [0, 100], Huber (or MSE) loss, Adam, MAE metric.

    The network predicts score / 100 internally (a well-scaled target) and the
    last layer multiplies by 100 and clips, so the saved model outputs percent.
    """
    import keras

    inputs, x = build_backbone(shape, filters, dense)
    x = keras.layers.Dense(1, dtype="float32", name="score_fraction")(x)
    out = score_layer()(x)
    model = keras.Model(inputs, out, name="severity_scorer")
    loss_fn = keras.losses.Huber(delta=10.0) if loss == "huber" else keras.losses.MeanSquaredError()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss_fn, metrics=["mae"])
    return model


def load_model(path):
    """Load a saved classifier or scorer (registers the custom output layer first)."""
    import keras

    score_layer()
    return keras.saving.load_model(str(path))
