"""How the deep-learning framework starts, for every model the library trains (the 3D classifier and
scorer in ``covidct.models``, the infection U-Net in ``covidct.infection``): seeds and numeric
precision; and what a training says while it runs (``Progress``: one line per epoch with an ETA, a
warning up front when a CPU-only training will be long). Keras and TensorFlow are imported inside
(start-up cost)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: A CPU-only training estimated to take longer than this (seconds) is warned about after its first epoch.
LONG_CPU_SECONDS = 30 * 60


def keras_gpus() -> tuple[str, int]:
    """The framework Keras runs on, TensorFlow (the default), or torch or JAX where ``KERAS_BACKEND`` names
    them (Keras 3 runs the same models on each), and the GPUs that framework sees."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return backend, torch.cuda.device_count()
    if backend == "jax":
        import jax

        return backend, sum(d.platform == "gpu" for d in jax.devices())
    import tensorflow as tf

    return backend, len(tf.config.list_physical_devices("GPU"))


def gpu_visible() -> bool:
    """Whether the framework Keras runs on sees a GPU (``keras_gpus``)."""
    return keras_gpus()[1] > 0


def setup_keras(seed: int) -> bool:
    """Seeds everything; mixed precision on a GPU. Returns whether a GPU is used."""
    import keras

    keras.utils.set_random_seed(seed)
    gpu = gpu_visible()
    keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "float32")
    return gpu


def duration(seconds: float) -> str:
    """A duration in words a person reads at a glance.

    >>> duration(42.4), duration(250), duration(3 * 3600 + 5 * 60)
    ('42 s', '4 min 10 s', '3 h 05 min')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """The progress of one training, said in the rule's log: one line per epoch with the loss, the
    held-out or validation metric and an ETA (epochs left of those planned x mean epoch time so far). On a
    CPU only, a WARNING when the whole training is estimated to take longer than LONG_CPU_SECONDS, with the
    cheaper settings that would shorten it: before the first epoch from the settings (``forecast``), else
    after the first epoch from its time; said once.

    Args:
        name: The training (``classifier``, ``infection U-Net``...).
        planned_epochs: Every epoch it plans (all folds, variants and the final run); early stopping may end
            it sooner, a degenerate run retried makes it longer.
        gpu: Whether a GPU trains it.
        cheaper: The settings that make it cheaper, in the config's words.
    """

    def __init__(self, name: str, planned_epochs: int, gpu: bool, cheaper: str) -> None:
        self.name, self.planned, self.gpu, self.cheaper = name, max(int(planned_epochs), 1), gpu, cheaper
        self.seconds: list[float] = []
        self.warned = False

    def _warn_if_long(self, estimate: float, basis: str) -> None:
        if not self.gpu and not self.warned and estimate > LONG_CPU_SECONDS:
            self.warned = True
            log.warning(
                "%s: no GPU is visible and this training is estimated at %s on the CPU (%s); cheaper settings: %s",
                *(self.name, duration(estimate), basis, self.cheaper),
            )

    def forecast(self, epoch_seconds: float, basis: str) -> None:
        """Say the cost up front, before the first epoch, from the settings: ``epoch_seconds`` per epoch on
        the CPU (``basis``: how it was reckoned); a WARNING when a CPU-only training would be long."""
        estimate = self.planned * epoch_seconds
        if not self.gpu:
            log.info(
                "%s: %d epochs planned, about %s on the CPU (%s)", self.name, self.planned, duration(estimate), basis
            )
        self._warn_if_long(estimate, basis)

    def estimate(self) -> float:
        """The whole training's estimated seconds: planned epochs x mean epoch time so far."""
        return self.planned * sum(self.seconds) / max(len(self.seconds), 1)

    def epoch(self, what: str, loss: float, metric: str, value: float | None, seconds: float, extra: str = "") -> None:
        """Log one epoch just done.

        Args:
            what: Which run (``dice_ce fold 2/5 epoch 3/30``).
            loss: Its training loss.
            metric: The held-out or validation metric's name.
            value: Its value (None when the run has none).
            seconds: How long the epoch took.
            extra: Anything else worth a glance (every metric).
        """
        self.seconds.append(float(seconds))
        done = len(self.seconds)
        left = max(self.planned - done, 0)
        mean = sum(self.seconds) / done
        shown = "n/a" if value is None else f"{value:.4f}"
        log.info(
            "%s %s: loss %.4f, %s %s; %.1f s; %d of %d planned epochs left, ETA %s%s",
            *(self.name, what, loss, metric, shown, seconds, left, self.planned, duration(left * mean)),
            f" ({extra})" if extra else "",
        )
        if done == 1:
            self._warn_if_long(self.estimate(), f"{self.planned} epochs x {duration(seconds)} for the first")
