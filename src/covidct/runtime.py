"""How the deep-learning framework starts, for every model the library trains (the 3D classifier and
scorer in ``covidct.models``, the infection U-Net in ``covidct.infection``): seeds and numeric
precision. Keras and TensorFlow are imported inside (start-up cost)."""

from __future__ import annotations


def setup_keras(seed: int) -> bool:
    """Seeds everything; mixed precision on a GPU. Returns whether a GPU is used."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "float32")
    return gpu
