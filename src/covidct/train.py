"""Training of the classifier and the severity scorer from the HDF5 data sets,
with a tf.data pipeline that reads the HDF5 lazily, one sample at a time."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from covidct import metrics
from covidct.errors import CovidctError
from covidct.io import atomic_path, write_json

log = logging.getLogger(__name__)

MAX_ROTATION_DEG = 10.0


def _h5_meta(path: str | Path) -> tuple[int, tuple[int, ...], np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return len(f["labels"]), tuple(f["images"].shape[1:4]), f["labels"][...], f["scores"][...]


def augment_volume(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small random rotation in the axial plane and a random left-right flip.

    Args:
        volume: (D, H, W, 1) float array.
        rng: Random generator (seeded by the caller).
    """
    from scipy import ndimage

    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    out = ndimage.rotate(volume, angle, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def make_dataset(h5_path: str | Path, indices: np.ndarray, target: str, batch_size: int, shuffle: bool,
                 augment: bool, seed: int):
    """A ``tf.data.Dataset`` of (image, target) batches read lazily from the HDF5 file.

    Args:
        h5_path: train.h5 or val.h5.
        indices: Rows to use.
        target: ``labels`` or ``scores``.
        batch_size: Batch size.
        shuffle: Reshuffle every epoch (seeded).
        augment: Apply ``augment_volume``.
        seed: Seed of shuffling and augmentation.
    """
    import h5py
    import tensorflow as tf

    n, shape, _, _ = _h5_meta(h5_path)
    indices = np.asarray(indices, dtype=np.int64)
    rng = np.random.default_rng(seed)

    def generator():
        order = rng.permutation(indices) if shuffle else indices
        with h5py.File(h5_path, "r") as f:
            images, targets = f["images"], f[target]
            for i in order:
                x = images[int(i)].astype(np.float32)
                if augment:
                    x = augment_volume(x, rng)
                y = np.float32(targets[int(i)])
                yield x, y

    ds = tf.data.Dataset.from_generator(
        generator,
        output_signature=(tf.TensorSpec((*shape, 1), tf.float32), tf.TensorSpec((), tf.float32)),
    )
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(indices)))
    return ds.batch(batch_size).prefetch(2)


class EpochLogger:
    """Keras callback (built lazily) that logs every epoch's metrics to the rule's log."""

    @staticmethod
    def create(name: str):
        import keras

        class _Logger(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                values = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
                log.info("%s epoch %d/%d (%.1f s): %s", name, epoch + 1, self.params.get("epochs", 0),
                         time.perf_counter() - self.t0, values)

        return _Logger()


def _setup(seed: int) -> bool:
    """Seeds everything; mixed precision on a GPU. Returns whether a GPU is used."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "float32")
    return gpu


def _write_outputs(model, out_model: str | Path, sidecar: dict, history: dict, out_history: str | Path,
                   result: dict, out_metrics: str | Path) -> None:
    """Model, its sidecar JSON (what predicting needs besides the weights), history CSV and metrics JSON."""
    with atomic_path(out_model, suffix=".keras") as tmp:
        model.save(tmp)
    write_json(Path(out_model).with_suffix(".json"), sidecar)
    _history_csv(history, out_history)
    write_json(out_metrics, result)


def _history_csv(history: dict, path: str | Path) -> None:
    keys = sorted(history)
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(len(history[keys[0]]) if keys else 0):
            w.writerow([e + 1, *(f"{history[k][e]:.6g}" for k in keys)])


def _fit(model, train_ds, val_ds, out_model: str | Path, epochs: int, monitor: str, mode: str, patience: int,
         name: str, class_weight: dict | None = None):
    """Fit with best-checkpoint and early stopping on ``monitor``; returns (best model, history, seconds)."""
    import keras

    from covidct import models

    with tempfile.TemporaryDirectory(dir=Path(out_model).parent) as tmpdir:
        best = os.path.join(tmpdir, "best.keras")
        callbacks = [
            keras.callbacks.ModelCheckpoint(best, monitor=monitor, mode=mode, save_best_only=True),
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience),
            EpochLogger.create(name),
        ]
        t0 = time.perf_counter()
        hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=class_weight,
                         callbacks=callbacks, verbose=0)
        seconds = time.perf_counter() - t0
        return models.load_model(best), hist.history, seconds


def predict_h5(model, h5_path: str | Path, batch_size: int = 4) -> np.ndarray:
    """Model outputs for every row of an HDF5 file, in order."""
    n = _h5_meta(h5_path)[0]
    ds = make_dataset(h5_path, np.arange(n), "labels", batch_size, shuffle=False, augment=False, seed=0)
    return np.asarray(model.predict(ds.map(lambda x, y: x), verbose=0)).reshape(-1)


def train_classifier(train_h5: str | Path, val_h5: str | Path, out_model: str | Path, out_history: str | Path,
                     out_metrics: str | Path, plot_dir: str | Path, epochs: int = 30, batch_size: int = 2,
                     learning_rate: float = 1e-4, filters=(64, 64, 128, 256), dense: int = 512, patience: int = 10,
                     seed: int = 1337, augment: bool = True) -> dict:
    """Train the COVID-19 classifier; keep the epoch with the best val AUC.

    Writes the model, its sidecar JSON (decision threshold chosen on val by Youden's J),
    the per-epoch history CSV, metrics JSON and plots (accuracy, loss, ROC).
    """
    from covidct import models, plots

    gpu = _setup(seed)
    n_train, shape, y_train, _ = _h5_meta(train_h5)
    n_val, _, y_val, _ = _h5_meta(val_h5)
    if n_train == 0 or len(np.unique(y_train)) < 2:
        raise CovidctError(f"the training set needs both labels; it has {n_train} patient(s), labels "
                           f"{sorted(set(y_train.tolist()))}", path=train_h5)
    if n_val == 0:
        raise CovidctError("the validation set is empty: add patients or pin some to val in the sheet",
                           path=val_h5)
    counts = np.bincount(y_train.astype(int), minlength=2)
    class_weight = {c: float(n_train / (2 * counts[c])) for c in (0, 1)}
    log.info("classifier: %d train (%d pos), %d val, shape %s, class weights %s, gpu=%s",
             n_train, counts[1], n_val, shape, class_weight, gpu)
    model = models.build_classifier(shape, filters, dense, learning_rate)
    train_ds = make_dataset(train_h5, np.arange(n_train), "labels", batch_size, True, augment, seed)
    val_ds = make_dataset(val_h5, np.arange(n_val), "labels", batch_size, False, False, seed)
    monitor = "val_auc" if len(np.unique(y_val)) == 2 else "val_loss"
    mode = "max" if monitor == "val_auc" else "min"
    Path(out_model).parent.mkdir(parents=True, exist_ok=True)
    model, history, seconds = _fit(model, train_ds, val_ds, out_model, epochs, monitor, mode, patience,
                                   "classifier", class_weight)
    p_val = predict_h5(model, val_h5, batch_size)
    threshold = metrics.youden_threshold(y_val, p_val)
    result = metrics.classification_metrics(y_val, p_val, threshold)
    result.update({"monitor": monitor, "epochs_run": len(history["loss"]), "train_seconds": round(seconds, 1),
                   "n_train": int(n_train), "n_val": int(n_val), "gpu": gpu, "shape": list(shape)})
    _write_outputs(model, out_model, {"threshold": threshold, "shape": list(shape), "monitor": monitor},
                   history, out_history, result, out_metrics)
    plots.training_curves(history, Path(plot_dir) / "classifier_training.png", ["accuracy", "loss"])
    plots.roc_curve(y_val, p_val, Path(plot_dir) / "classifier_roc.png", result.get("auc"))
    log.info("classifier: val %s", {k: result[k] for k in ("accuracy", "auc", "sensitivity", "specificity")})
    return result


def train_scorer(train_h5: str | Path, val_h5: str | Path, out_model: str | Path, out_history: str | Path,
                 out_metrics: str | Path, plot_dir: str | Path, epochs: int = 30, batch_size: int = 2,
                 learning_rate: float = 1e-4, filters=(64, 64, 128, 256), dense: int = 512, patience: int = 10,
                 seed: int = 1337, augment: bool = True, positives_only: bool = True, loss: str = "huber") -> dict:
    """Train the severity scorer (percent of lung involved); keep the epoch with the best val MAE."""
    from covidct import models, plots

    gpu = _setup(seed)
    _, shape, y_train, s_train = _h5_meta(train_h5)
    _, _, y_val, s_val = _h5_meta(val_h5)
    # patients without a score (label known, score empty) are not used by the scorer
    rows_train = np.nonzero(((y_train == 1) | (not positives_only)) & np.isfinite(s_train))[0]
    rows_val = np.nonzero(((y_val == 1) | (not positives_only)) & np.isfinite(s_val))[0]
    what = "scored COVID-positive" if positives_only else "all scored"
    if len(rows_train) < 2 or len(rows_val) < 1:
        raise CovidctError(f"the scorer needs {what} patients in train (>= 2) and val (>= 1); found "
                           f"{len(rows_train)} and {len(rows_val)}", path=train_h5)
    log.info("scorer: %d train, %d val (%s patients), shape %s, gpu=%s", len(rows_train), len(rows_val), what,
             shape, gpu)
    model = models.build_scorer(shape, filters, dense, learning_rate, loss)
    train_ds = make_dataset(train_h5, rows_train, "scores", batch_size, True, augment, seed)
    val_ds = make_dataset(val_h5, rows_val, "scores", batch_size, False, False, seed)
    Path(out_model).parent.mkdir(parents=True, exist_ok=True)
    model, history, seconds = _fit(model, train_ds, val_ds, out_model, epochs, "val_mae", "min", patience, "scorer")
    pred_all = predict_h5(model, val_h5, batch_size)
    pred = pred_all[rows_val]
    truth = s_val[rows_val]
    result = metrics.regression_metrics(truth, pred)
    result["baseline_mae_train_mean"] = float(np.mean(np.abs(truth - np.mean(s_train[rows_train]))))
    result.update({"epochs_run": len(history["loss"]), "train_seconds": round(seconds, 1),
                   "n_train": int(len(rows_train)), "n_val": int(len(rows_val)), "patients": what, "gpu": gpu,
                   "shape": list(shape)})
    _write_outputs(model, out_model, {"shape": list(shape), "patients": what}, history, out_history, result,
                   out_metrics)
    plots.training_curves(history, Path(plot_dir) / "scorer_training.png", ["mae", "loss"])
    plots.score_scatter(truth, pred, Path(plot_dir) / "scorer_scatter.png")
    plots.severity_confusion(truth, pred, Path(plot_dir) / "scorer_severity_confusion.png")
    log.info("scorer: val MAE %.2f (train-mean baseline %.2f)", result["mae"], result["baseline_mae_train_mean"])
    return result
