"""Training of the two 3D models, the classifier and the severity scorer, from the HDF5 data sets: one
trainer (``fit``) for both with one settings record (``TrainSettings``, the ``train`` config block),
each model's own choices in ``KINDS``; a tf.data pipeline that reads the HDF5 lazily, one sample at a
time; k-fold cross-validation by subject."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from covidct import config
from covidct.errors import CovidctError
from covidct.evaluation.bootstrap import N_BOOTSTRAP
from covidct.evaluation.metrics import classification_metrics, regression_metrics, youden_threshold
from covidct.evaluation.reports import (
    FOLD_METRICS,
    MIN_SUBJECTS,
    interpretability,
    pooled_classifier_report,
    scorer_report,
)
from covidct.io import atomic_path, write_json
from covidct.models.cnn3d import DEFAULT_DENSE, DEFAULT_FILTERS, build_classifier, build_scorer, load_model
from covidct.models.inputs import DEFAULT_SHAPE
from covidct.report.plots import roc_curve, score_scatter, severity_confusion, training_curves
from covidct.runtime import Progress, gpu_visible, setup_keras
from covidct.split import hash_unit, read_split_table

log = logging.getLogger(__name__)

MAX_ROTATION_DEG = 10.0


#: One training sample: (HDF5 file, row).
Item = tuple[str, int]


def _h5_meta(path: str | Path) -> tuple[int, tuple[int, ...], np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return len(f["labels"]), tuple(f["images"].shape[1:4]), f["labels"][...], f["scores"][...]


def h5_table(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """Every row of several HDF5 data sets: ``items`` (file, row), ``labels``, ``scores``, ``patient_ids``."""
    items, labels, scores, ids = [], [], [], []
    for path in paths:
        with h5py.File(path, "r") as f:
            n = len(f["labels"])
            items += [(str(path), i) for i in range(n)]
            labels.append(f["labels"][...])
            scores.append(f["scores"][...])
            ids += [v.decode() if isinstance(v, bytes) else str(v) for v in f["patient_ids"][...]]
    return {
        "items": items,
        "labels": np.concatenate(labels) if labels else np.zeros(0, np.uint8),
        "scores": np.concatenate(scores) if scores else np.zeros(0, np.float32),
        "patient_ids": ids,
    }


def augment_volume(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small random rotation in the axial plane and a random left-right flip.

    Args:
        volume: (D, H, W, 1) float array.
        rng: Random generator (seeded by the caller).
    """
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    out = ndimage.rotate(volume, angle, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def make_dataset(items: Sequence[Item], target: str, batch_size: int, shuffle: bool, augment: bool, seed: int):
    """A ``tf.data.Dataset`` of (image, target) batches read lazily from HDF5 files.

    Args:
        items: (file, row) pairs: rows of one or several data sets (cross-validation mixes train.h5
            and val.h5).
        target: ``labels`` or ``scores``.
        batch_size: Batch size.
        shuffle: Reshuffle every epoch (seeded).
        augment: Apply ``augment_volume``.
        seed: Seed of shuffling and augmentation.
    """
    import tensorflow as tf

    items = [(str(path), int(row)) for path, row in items]
    if not items:
        raise CovidctError("no samples to train or evaluate on")
    shape = _h5_meta(items[0][0])[1]
    rng = np.random.default_rng(seed)

    def generator():
        order = rng.permutation(len(items)) if shuffle else np.arange(len(items))
        files: dict[str, h5py.File] = {}
        try:
            for k in order:
                path, row = items[int(k)]
                if path not in files:
                    files[path] = h5py.File(path, "r")
                x = files[path]["images"][row].astype(np.float32)
                if augment:
                    x = augment_volume(x, rng)
                yield x, np.float32(files[path][target][row])
        finally:
            for f in files.values():
                f.close()

    ds = tf.data.Dataset.from_generator(
        generator,
        output_signature=(tf.TensorSpec((*shape, 1), tf.float32), tf.TensorSpec((), tf.float32)),
    )
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(items)))
    return ds.batch(batch_size).prefetch(2)


#: CPU seconds per training sample and epoch of a 3D model at the default shape and filters (docs/measurements.md:
#: 38.4 s per step of 2 at 64x128x128, filters 64-64-128-256, on 2 loaded cores).
CPU_SECONDS_PER_SAMPLE = 19.2


def cpu_seconds_per_sample(shape: Sequence[int], filters: Sequence[int]) -> float:
    """CPU_SECONDS_PER_SAMPLE scaled to another input shape and filters: each Conv3D block costs its input
    x output channels x its voxels (each block halves every side).

    >>> round(cpu_seconds_per_sample(DEFAULT_SHAPE, DEFAULT_FILTERS), 1)
    19.2
    """

    def cost(shape, filters):
        voxels, total, channels = float(np.prod(shape)), 0.0, 1
        for f in filters:
            total += channels * f * voxels
            channels, voxels = f, voxels / 8
        return total

    return CPU_SECONDS_PER_SAMPLE * cost(shape, filters) / cost(DEFAULT_SHAPE, DEFAULT_FILTERS)


#: What makes a 3D model's training cheaper, in the config's words (``Progress``' warning).
CHEAPER_3D = (
    "fewer train.epochs (e.g. 10) and a lower train.patience, a smaller export.shape (e.g. [32, 64, 64]), "
    "evaluation.folds 0 (no cross-validation), or a machine with a GPU"
)


class EpochLogger:
    """Keras callback (built lazily) that tells a ``Progress`` of every epoch: loss, the val metric that
    chooses the epoch, every metric, an ETA."""

    @staticmethod
    def create(name: str, monitor: str, progress: Progress):
        import keras

        class _Logger(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                values = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
                what = f"{name} epoch {epoch + 1}/{self.params.get('epochs', 0)}"
                value = logs.get(monitor)
                seconds = time.perf_counter() - self.t0
                progress.epoch(what, float(logs.get("loss", float("nan"))), monitor, value, seconds, values)

        return _Logger()


def forecast(progress: Progress, samples: float, shape: Sequence[int], filters: Sequence[int]) -> None:
    """``progress.forecast`` of a 3D training: CPU seconds per epoch = training samples x ``cpu_seconds_per_sample``."""
    per_sample = cpu_seconds_per_sample(shape, filters)
    basis = f"{samples:.0f} training patients x {per_sample:.2g} s per patient and epoch, measured"
    progress.forecast(samples * per_sample, basis)


def _history_csv(history: dict, path: str | Path) -> None:
    keys = sorted(history)
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in range(len(history[keys[0]]) if keys else 0):
            w.writerow([e + 1, *(f"{history[k][e]:.6g}" for k in keys)])


def _fit(
    model,
    train_ds,
    val_ds,
    workdir: str | Path,
    epochs: int,
    monitor: str,
    mode: str,
    patience: int,
    name: str,
    class_weight: dict | None = None,
    progress: Progress | None = None,
):
    """Fit with best-checkpoint (in a temporary folder under ``workdir``) and early stopping on
    ``monitor``, each epoch told to ``progress`` (default: one of this fit's epochs); returns (best model,
    history, seconds)."""
    import keras

    progress = progress or Progress("3D model training", epochs, gpu_visible(), CHEAPER_3D)

    Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmpdir:
        best = os.path.join(tmpdir, "best.keras")
        callbacks = [
            keras.callbacks.ModelCheckpoint(best, monitor=monitor, mode=mode, save_best_only=True),
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience),
            EpochLogger.create(name, monitor, progress),
        ]
        t0 = time.perf_counter()
        hist = model.fit(
            train_ds, validation_data=val_ds, epochs=epochs, class_weight=class_weight, callbacks=callbacks, verbose=0
        )
        seconds = time.perf_counter() - t0
        return load_model(best), hist.history, seconds


def predict_items(model, items: Sequence[Item], batch_size: int = 4) -> np.ndarray:
    """Model outputs for the given rows, in order."""
    if not len(items):
        return np.zeros(0, np.float32)
    ds = make_dataset(items, "labels", batch_size, shuffle=False, augment=False, seed=0)
    return np.asarray(model.predict(ds.map(lambda x, y: x), verbose=0)).reshape(-1)


@dataclass(frozen=True)
class TrainSettings:
    """How a 3D model is trained: the ``train`` configuration block, one record for both models (the
    scorer's own two choices are its ``scorer`` block). Defaults: the schema's.

    Attributes:
        epochs: Maximum epochs.
        batch_size: Batch size.
        learning_rate: Adam's learning rate.
        filters: Filters of the four Conv3D blocks.
        dense: Units of the dense layer.
        patience: Early-stopping patience (epochs).
        seed: Random seed.
        augment: Random rotation and flip in training.
        positives_only: The scorer trains (and is judged) on COVID-positive patients only.
        loss: The scorer's loss (huber, mse).
    """

    epochs: int = config.default("train.epochs")
    batch_size: int = config.default("train.batch_size")
    learning_rate: float = config.default("train.learning_rate")
    filters: tuple[int, ...] = DEFAULT_FILTERS
    dense: int = DEFAULT_DENSE
    patience: int = config.default("train.patience")
    seed: int = config.default("train.seed")
    augment: bool = config.default("train.augment")
    positives_only: bool = config.default("train.scorer.positives_only")
    loss: str = config.default("train.scorer.loss")

    @classmethod
    def from_config(cls, train: dict | None) -> TrainSettings:
        """The settings of a ``train`` config block (its ``scorer`` block flattened in)."""
        block = dict(train or {})
        scorer = dict(block.pop("scorer", None) or {})
        return cls(**{**block, **scorer, "filters": tuple(block.get("filters", DEFAULT_FILTERS))})


@dataclass(frozen=True)
class Fit:
    """A trained model and what its training saw.

    Attributes:
        model: The Keras model (its best epoch on val).
        history: Keras' per-epoch history.
        seconds: Training time.
        p_val: Its outputs on the val rows.
        shape: The input shape (depth, height, width).
        monitor: The val metric that chose the epoch.
        threshold: The classifier's decision threshold (Youden's J on val); None for the scorer.
        class_weight: The classifier's class weights; None for the scorer.
    """

    model: object
    history: dict
    seconds: float
    p_val: np.ndarray
    shape: tuple[int, ...]
    monitor: str
    threshold: float | None = None
    class_weight: dict | None = None


@dataclass(frozen=True)
class ModelKind:
    """What makes the classifier or the scorer (the trainer, ``fit``, is one).

    Attributes:
        name: ``classifier`` or ``scorer``.
        target: The HDF5 data set it learns (``labels``, ``scores``).
        check: Refuses training rows it cannot learn from (raises CovidctError).
        build: The network for an input shape and the settings.
        monitor: The val metric that keeps the best epoch, and whether lower or higher is better.
        class_weight: Class weights of the training rows, or None.
    """

    name: str
    target: str
    check: Callable[[dict, dict], None]
    build: Callable[[tuple[int, ...], TrainSettings], object]
    monitor: Callable[[dict], tuple[str, str]]
    class_weight: Callable[[dict], dict | None]


def _check_classifier(train: dict, val: dict) -> None:
    y_train = np.asarray(train["labels"]).astype(int)
    if len(y_train) == 0 or len(np.unique(y_train)) < 2:
        raise CovidctError(
            f"the training set needs both labels; it has {len(y_train)} patient(s), labels "
            f"{sorted(set(y_train.tolist()))}"
        )
    if len(val["labels"]) == 0:
        raise CovidctError("the validation set is empty: add patients or pin some to val in the sheet")


def _check_scorer(train: dict, val: dict) -> None:
    if len(train["items"]) < 2 or len(val["items"]) < 1:
        raise CovidctError(
            f"the scorer needs scored patients in train (>= 2) and val (>= 1); found "
            f"{len(train['items'])} and {len(val['items'])}"
        )


def _class_weight(train: dict) -> dict:
    y = np.asarray(train["labels"]).astype(int)
    counts = np.bincount(y, minlength=2)
    return {c: float(len(y) / (2 * counts[c])) for c in (0, 1)}


def _classifier_monitor(val: dict) -> tuple[str, str]:
    return ("val_auc", "max") if len(np.unique(np.asarray(val["labels"]).astype(int))) == 2 else ("val_loss", "min")


#: The two 3D models.
KINDS = {
    "classifier": ModelKind(
        "classifier",
        "labels",
        _check_classifier,
        lambda shape, s: build_classifier(shape, s.filters, s.dense, s.learning_rate),
        _classifier_monitor,
        _class_weight,
    ),
    "scorer": ModelKind(
        "scorer",
        "scores",
        _check_scorer,
        lambda shape, s: build_scorer(shape, s.filters, s.dense, s.learning_rate, s.loss),
        lambda val: ("val_mae", "min"),
        lambda train: None,
    ),
}


def fit(
    kind: str,
    train: dict,
    val: dict,
    workdir: str | Path,
    settings: TrainSettings,
    name: str = "",
    progress: Progress | None = None,
) -> Fit:
    """Train the classifier (``kind`` classifier: best val AUC, threshold by Youden's J on val) or the
    scorer (``scorer``: best val MAE) on ``train`` rows, choosing the epoch on ``val`` rows.

    Args:
        kind: A key of KINDS.
        train, val: ``{"items": [(file, row)], "labels": array, "scores": array}`` (``h5_table``); the
            scorer's already restricted to the rows it uses (``scorer_rows``).
        workdir: Folder for the temporary checkpoint.
        settings: How to train.
        name: Its name in the log (default: ``kind``).
        progress: What its epochs are told to (a cross-validation's, planned over all folds); default: one
            of its own ``settings.epochs``.
    """
    spec = KINDS[kind]
    spec.check(train, val)
    class_weight = spec.class_weight(train)
    shape = _h5_meta(train["items"][0][0])[1]
    model = spec.build(shape, settings)
    train_ds = make_dataset(train["items"], spec.target, settings.batch_size, True, settings.augment, settings.seed)
    val_ds = make_dataset(val["items"], spec.target, settings.batch_size, False, False, settings.seed)
    monitor, mode = spec.monitor(val)
    if progress is None:
        progress = Progress("3D model training", settings.epochs, gpu_visible(), CHEAPER_3D)
        forecast(progress, len(train["items"]), shape, settings.filters)
    model, history, seconds = _fit(
        *(model, train_ds, val_ds, workdir, settings.epochs, monitor, mode, settings.patience, name or kind),
        *(class_weight, progress),
    )
    p_val = predict_items(model, val["items"], settings.batch_size)
    threshold = youden_threshold(np.asarray(val["labels"]).astype(int), p_val) if kind == "classifier" else None
    return Fit(model, history, seconds, p_val, shape, monitor, threshold, class_weight)


def scorer_rows(table: dict, positives_only: bool) -> np.ndarray:
    """Rows the scorer uses: scored patients (COVID-positive ones only with ``positives_only``)."""
    labels, scores = np.asarray(table["labels"]), np.asarray(table["scores"], dtype=float)
    return np.nonzero(((labels == 1) | (not positives_only)) & np.isfinite(scores))[0]


def _subset(table: dict, rows: np.ndarray) -> dict:
    return {
        "items": [table["items"][i] for i in rows],
        "labels": np.asarray(table["labels"])[rows],
        "scores": np.asarray(table["scores"])[rows],
        "patient_ids": [table["patient_ids"][i] for i in rows],
    }


#: What the validation figures are (they chose the checkpoint, and the classifier's threshold).
VAL_NOTE = (
    "validation split: it chose the checkpoint (and the classifier's threshold), so these figures are "
    "optimistic; the test split's are in evaluation.json"
)


@dataclass(frozen=True)
class Trained:
    """A model trained on ``train.h5``, chosen on ``val.h5``: what its step writes and plots.

    Attributes:
        fit: The training (model, history, val outputs).
        truth: The val rows' labels (classifier) or scores (scorer).
        metrics: Its val figures (``metrics/<kind>.json``).
        sidecar: What predicting needs besides the weights (``models/<kind>.json``).
        patients: The patient ids it learned from (``train``) and was chosen on (``val``): its model card's.
    """

    fit: Fit
    truth: np.ndarray
    metrics: dict
    sidecar: dict
    patients: dict[str, list[str]]


def train_model(
    kind: str, train_h5: str | Path, val_h5: str | Path, workdir: str | Path, settings: TrainSettings
) -> Trained:
    """Train the classifier or the scorer on ``train_h5``, choosing its epoch (and the classifier's threshold)
    on ``val_h5``. The figures are the validation split's, which chose them: optimistic by construction
    (the honest figures are the test split's, ``covidct.evaluation``).

    Raises:
        CovidctError: too few patients to train on, naming the data set.
    """
    gpu = setup_keras(settings.seed)
    train, val = h5_table([train_h5]), h5_table([val_h5])
    common = {"split": "val", "note": VAL_NOTE, "gpu": gpu}
    if kind == "classifier":
        log.info(
            "classifier: %d train (%d pos), %d val, gpu=%s",
            len(train["labels"]),
            int(train["labels"].sum()),
            len(val["labels"]),
            gpu,
        )
        try:
            done = fit(kind, train, val, workdir, settings)
        except CovidctError as exc:
            raise CovidctError(exc.message, path=train_h5 if "training" in exc.message else val_h5) from None
        truth = val["labels"]
        metrics = classification_metrics(truth, done.p_val, done.threshold)
        metrics.update({**common, "monitor": done.monitor, "class_weight": done.class_weight})
        sidecar = {"threshold": done.threshold, "shape": list(done.shape), "monitor": done.monitor}
        log.info("classifier: val %s", {k: metrics[k] for k in ("accuracy", "auc", "sensitivity", "specificity")})
    else:
        train = _subset(train, scorer_rows(train, settings.positives_only))
        val = _subset(val, scorer_rows(val, settings.positives_only))
        what = "scored COVID-positive" if settings.positives_only else "all scored"
        if len(train["items"]) < 2 or len(val["items"]) < 1:
            raise CovidctError(
                f"the scorer needs {what} patients in train (>= 2) and val (>= 1); found "
                f"{len(train['items'])} and {len(val['items'])}",
                path=train_h5,
            )
        log.info("scorer: %d train, %d val (%s patients), gpu=%s", len(train["items"]), len(val["items"]), what, gpu)
        done = fit(kind, train, val, workdir, settings)
        truth, train_mean = val["scores"], float(np.mean(train["scores"]))
        metrics = regression_metrics(truth, done.p_val)
        metrics["baseline_mae_train_mean"] = float(np.mean(np.abs(truth - np.mean(train["scores"]))))
        metrics.update({**common, "patients": what, "train_mean": train_mean})
        sidecar = {
            "shape": list(done.shape),
            "patients": what,
            "positives_only": settings.positives_only,
            "train_mean": train_mean,
        }
        log.info("scorer: val MAE %.2f (train-mean baseline %.2f)", metrics["mae"], metrics["baseline_mae_train_mean"])
    metrics.update(
        {
            "epochs_run": len(done.history["loss"]),
            "train_seconds": round(done.seconds, 1),
            "n_train": len(train["items"]),
            "n_val": len(val["items"]),
            "shape": list(done.shape),
        }
    )
    return Trained(done, truth, metrics, sidecar, {"train": train["patient_ids"], "val": val["patient_ids"]})


def save_model(
    trained: Trained, out_model: str | Path, out_sidecar: str | Path, out_history: str | Path, out_metrics: str | Path
) -> None:
    """The model, its sidecar JSON, the per-epoch history CSV and the val metrics JSON, each atomically."""
    with atomic_path(out_model, suffix=".keras") as tmp:
        trained.fit.model.save(tmp)
    write_json(out_sidecar, trained.sidecar)
    _history_csv(trained.fit.history, out_history)
    write_json(out_metrics, trained.metrics)


def plot_training(kind: str, trained: Trained, out_training: str | Path, *out_plots: str | Path) -> None:
    """The training curves and the val figures of a trained model: the classifier's ROC; the scorer's
    scatter and severity-class confusion."""
    truth, pred = trained.truth, trained.fit.p_val
    if kind == "classifier":
        training_curves(trained.fit.history, out_training, ["accuracy", "loss"])
        roc_curve(truth, pred, out_plots[0], trained.metrics.get("auc"), title="ROC (validation)")
    else:
        training_curves(trained.fit.history, out_training, ["mae", "loss"])
        score_scatter(truth, pred, out_plots[0], title="Scorer (validation)")
        severity_confusion(truth, pred, out_plots[1], title="Severity class (validation)")


def cv_folds(subjects: Sequence[str], labels: Sequence[int], folds: int, salt: str) -> dict[str, int]:
    """Each subject's fold (0..folds-1), stratified by label: within the positive and the negative
    subjects (a subject is positive if any of its scans is), subjects are ordered by a keyed hash
    and dealt round-robin, so folds differ in size by at most one per stratum.

    >>> f = cv_folds(["a", "a", "b", "c", "d"], [1, 1, 0, 1, 0], 2, "s")
    >>> sorted(f) == ["a", "b", "c", "d"] and set(f.values()) == {0, 1}
    True
    """
    positive: dict[str, bool] = {}
    for subject, label in zip(subjects, labels):
        positive[subject] = positive.get(subject, False) or int(label) == 1
    out = {}
    for stratum in (True, False):
        members = sorted((s for s, pos in positive.items() if pos == stratum), key=lambda s: hash_unit(s, salt))
        for i, subject in enumerate(members):
            out[subject] = i % folds
    return out


def cross_validate(
    train_h5: str | Path,
    val_h5: str | Path,
    split_table: str | Path,
    out_json: str | Path,
    folds: int = 5,
    salt: str = "covidct-split",
    n_boot: int = N_BOOTSTRAP,
    min_subjects: int = MIN_SUBJECTS,
    settings: TrainSettings | None = None,
) -> dict:
    """k-fold cross-validation of both models over train + val, by subject (the test split is not used).

    Fold ``f`` is tested on the subjects of fold ``f``, chooses its checkpoint and threshold on
    fold ``f + 1`` and trains on the others: every figure is from subjects that took no part in
    training or selection. Per fold and mean +- sd of the fold figures, and the pooled
    out-of-fold predictions with bootstrap intervals by subject.

    Args:
        train_h5, val_h5: The data sets (their rows are pooled).
        split_table: ``split.tsv`` (patient_id, subject_id, ...).
        out_json: Where the results go.
        folds: Number of folds (>= 3: one tests, one selects, the rest train).
        salt: Key of the fold assignment hash.
        n_boot: Bootstrap replicates of the pooled intervals.
        min_subjects: Fewer subjects than this in a fold: its figures are marked not interpretable.
        settings: How both models train (TrainSettings; the schema's defaults when None).
    """
    if folds < 3:
        raise CovidctError(
            f"cross-validation needs at least 3 folds (one tests, one selects, the rest train); got {folds}"
        )
    settings = settings or TrainSettings()
    positives_only = settings.positives_only
    split = read_split_table(split_table).set_index("patient_id")
    table = h5_table([train_h5, val_h5])
    subjects = [split.loc[pid, "subject_id"] or pid for pid in table["patient_ids"]]
    fold_of_subject = cv_folds(subjects, table["labels"], folds, salt + ":cv")
    fold = np.array([fold_of_subject[s] for s in subjects])
    gpu = setup_keras(settings.seed)
    progress = Progress("3D cross-validation", 2 * folds * settings.epochs, gpu, CHEAPER_3D)
    forecast(progress, len(table["items"]) * (folds - 2) / folds, _h5_meta(train_h5)[1], settings.filters)
    workdir = Path(out_json).parent
    oof_p, oof_s = np.full(len(fold), np.nan), np.full(len(fold), np.nan)
    oof_threshold, oof_mean = np.full(len(fold), np.nan), np.full(len(fold), np.nan)
    per_fold = []
    for f in range(folds):
        test_rows = np.nonzero(fold == f)[0]
        val_rows = np.nonzero(fold == (f + 1) % folds)[0]
        train_rows = np.nonzero((fold != f) & (fold != (f + 1) % folds))[0]
        entry: dict = {
            "fold": f,
            "n_test_scans": int(len(test_rows)),
            "n_test_subjects": len({subjects[i] for i in test_rows}),
            "n_val_scans": int(len(val_rows)),
            "n_train_scans": int(len(train_rows)),
        }
        log.info(
            "cross-validation fold %d/%d: %d train, %d val, %d test scans",
            f + 1,
            folds,
            len(train_rows),
            len(val_rows),
            len(test_rows),
        )
        clf = fit(
            "classifier",
            _subset(table, train_rows),
            _subset(table, val_rows),
            workdir,
            settings,
            f"cv fold {f + 1} classifier",
            progress,
        )
        test = _subset(table, test_rows)
        p = predict_items(clf.model, test["items"])
        oof_p[test_rows], oof_threshold[test_rows] = p, clf.threshold
        entry["classifier"] = classification_metrics(test["labels"], p, clf.threshold)
        entry["classifier"]["epochs_run"] = len(clf.history["loss"])
        s_train = _subset(table, train_rows[np.isin(train_rows, scorer_rows(table, positives_only))])
        s_val = _subset(table, val_rows[np.isin(val_rows, scorer_rows(table, positives_only))])
        s_test_rows = test_rows[np.isin(test_rows, scorer_rows(table, positives_only))]
        if len(s_train["items"]) >= 2 and len(s_val["items"]) >= 1 and len(s_test_rows):
            sfit = fit("scorer", s_train, s_val, workdir, settings, f"cv fold {f + 1} scorer", progress)
            pred = predict_items(sfit.model, [table["items"][i] for i in s_test_rows])
            oof_s[s_test_rows] = pred
            oof_mean[s_test_rows] = float(np.mean(s_train["scores"]))
            entry["scorer"] = regression_metrics(np.asarray(table["scores"])[s_test_rows], pred)
            entry["scorer"]["epochs_run"] = len(sfit.history["loss"])
        else:
            entry["scorer"] = {
                "skipped": f"too few scored patients (train {len(s_train['items'])}, val "
                f"{len(s_val['items'])}, test {len(s_test_rows)})"
            }
        entry["interpretable"] = interpretability(entry["n_test_subjects"], min_subjects)
        per_fold.append(entry)

    def mean_sd(model: str, key: str) -> dict:
        values = [e[model].get(key) for e in per_fold]
        values = np.array([v for v in values if v is not None], dtype=float)
        if not len(values):
            return {"mean": None, "sd": None, "n_folds": 0}
        return {
            "mean": round(float(values.mean()), 4),
            "sd": round(float(values.std(ddof=1)), 4) if len(values) > 1 else None,
            "n_folds": int(len(values)),
        }

    labels = np.asarray(table["labels"]).astype(int)
    s_rows = scorer_rows(table, positives_only)
    s_rows = s_rows[np.isfinite(oof_s[s_rows])]
    result = {
        "folds": folds,
        "scheme": "by subject, stratified by label; fold f tests, fold f+1 chooses checkpoint and threshold, the "
        "others train; the test split is not used",
        "n_scans": int(len(labels)),
        "n_subjects": len(set(subjects)),
        "per_fold": per_fold,
        "mean_sd": {model: {k: mean_sd(model, k) for k in keys} for model, keys in FOLD_METRICS.items()},
        "pooled_out_of_fold": {
            "classifier": pooled_classifier_report(labels, oof_p, oof_threshold, subjects, n_boot, min_subjects),
            "scorer": (
                scorer_report(
                    np.asarray(table["scores"])[s_rows],
                    oof_s[s_rows],
                    [subjects[i] for i in s_rows],
                    oof_mean[s_rows],
                    None,
                    n_boot,
                    min_subjects=min_subjects,
                )
                if len(s_rows)
                else None
            ),
        },
    }
    write_json(out_json, result)
    return result
