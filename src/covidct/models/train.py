"""Training of the classifier and the severity scorer from the HDF5 data sets,
with a tf.data pipeline that reads the HDF5 lazily, one sample at a time."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.evaluation.metrics import classification_metrics, regression_metrics, youden_threshold
from covidct.io import atomic_path, write_json
from covidct.runtime import setup_keras

log = logging.getLogger(__name__)

MAX_ROTATION_DEG = 10.0


#: One training sample: (HDF5 file, row).
Item = tuple[str, int]


def _h5_meta(path: str | Path) -> tuple[int, tuple[int, ...], np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return len(f["labels"]), tuple(f["images"].shape[1:4]), f["labels"][...], f["scores"][...]


def h5_table(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """Every row of several HDF5 data sets: ``items`` (file, row), ``labels``, ``scores``, ``patient_ids``."""
    import h5py

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
    from scipy import ndimage

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
    import h5py
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
                log.info(
                    "%s epoch %d/%d (%.1f s): %s",
                    name,
                    epoch + 1,
                    self.params.get("epochs", 0),
                    time.perf_counter() - self.t0,
                    values,
                )

        return _Logger()


def _write_outputs(
    model,
    out_model: str | Path,
    sidecar: dict,
    out_sidecar: str | Path,
    history: dict,
    out_history: str | Path,
    result: dict,
    out_metrics: str | Path,
) -> None:
    """Model, its sidecar JSON (what predicting needs besides the weights), history CSV and metrics JSON."""
    with atomic_path(out_model, suffix=".keras") as tmp:
        model.save(tmp)
    write_json(out_sidecar, sidecar)
    _history_csv(history, out_history)
    write_json(out_metrics, result)


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
):
    """Fit with best-checkpoint (in a temporary folder under ``workdir``) and early stopping on
    ``monitor``; returns (best model, history, seconds)."""
    import keras

    from covidct.models.cnn3d import load_model

    Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmpdir:
        best = os.path.join(tmpdir, "best.keras")
        callbacks = [
            keras.callbacks.ModelCheckpoint(best, monitor=monitor, mode=mode, save_best_only=True),
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience),
            EpochLogger.create(name),
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


def fit_classifier(
    train: dict,
    val: dict,
    workdir: str | Path,
    epochs: int = 30,
    batch_size: int = 2,
    learning_rate: float = 1e-4,
    filters=(64, 64, 128, 256),
    dense: int = 512,
    patience: int = 10,
    seed: int = 1337,
    augment: bool = True,
    name: str = "classifier",
) -> dict:
    """Train a classifier on ``train`` rows; checkpoint (best val AUC) and threshold (Youden's J) on ``val``.

    Args:
        train, val: ``{"items": [(file, row)], "labels": array}`` (see ``h5_table``).
        workdir: Folder for the temporary checkpoint.

    Returns:
        ``model``, ``threshold``, ``monitor``, ``history``, ``seconds``, ``p_val``, ``class_weight``.
    """
    from covidct.models.cnn3d import build_classifier

    y_train, y_val = np.asarray(train["labels"]).astype(int), np.asarray(val["labels"]).astype(int)
    if len(y_train) == 0 or len(np.unique(y_train)) < 2:
        raise CovidctError(
            f"the training set needs both labels; it has {len(y_train)} patient(s), labels "
            f"{sorted(set(y_train.tolist()))}"
        )
    if len(y_val) == 0:
        raise CovidctError("the validation set is empty: add patients or pin some to val in the sheet")
    counts = np.bincount(y_train, minlength=2)
    class_weight = {c: float(len(y_train) / (2 * counts[c])) for c in (0, 1)}
    shape = _h5_meta(train["items"][0][0])[1]
    model = build_classifier(shape, filters, dense, learning_rate)
    train_ds = make_dataset(train["items"], "labels", batch_size, True, augment, seed)
    val_ds = make_dataset(val["items"], "labels", batch_size, False, False, seed)
    monitor = "val_auc" if len(np.unique(y_val)) == 2 else "val_loss"
    mode = "max" if monitor == "val_auc" else "min"
    model, history, seconds = _fit(
        model, train_ds, val_ds, workdir, epochs, monitor, mode, patience, name, class_weight
    )
    p_val = predict_items(model, val["items"], batch_size)
    return {
        "model": model,
        "threshold": youden_threshold(y_val, p_val),
        "monitor": monitor,
        "history": history,
        "seconds": seconds,
        "p_val": p_val,
        "class_weight": class_weight,
        "shape": shape,
    }


def scorer_rows(table: dict, positives_only: bool) -> np.ndarray:
    """Rows the scorer uses: scored patients (COVID-positive ones only with ``positives_only``)."""
    labels, scores = np.asarray(table["labels"]), np.asarray(table["scores"], dtype=float)
    return np.nonzero(((labels == 1) | (not positives_only)) & np.isfinite(scores))[0]


def fit_scorer(
    train: dict,
    val: dict,
    workdir: str | Path,
    epochs: int = 30,
    batch_size: int = 2,
    learning_rate: float = 1e-4,
    filters=(64, 64, 128, 256),
    dense: int = 512,
    patience: int = 10,
    seed: int = 1337,
    augment: bool = True,
    loss: str = "huber",
    name: str = "scorer",
) -> dict:
    """Train a scorer on ``train`` rows; checkpoint on the best val MAE.

    Args:
        train, val: ``{"items": [(file, row)], "scores": array}``, already restricted to the rows the
            scorer uses (``scorer_rows``).
        workdir: Folder for the temporary checkpoint.

    Returns:
        ``model``, ``history``, ``seconds``, ``p_val``.
    """
    from covidct.models.cnn3d import build_scorer

    if len(train["items"]) < 2 or len(val["items"]) < 1:
        raise CovidctError(
            f"the scorer needs scored patients in train (>= 2) and val (>= 1); found "
            f"{len(train['items'])} and {len(val['items'])}"
        )
    shape = _h5_meta(train["items"][0][0])[1]
    model = build_scorer(shape, filters, dense, learning_rate, loss)
    train_ds = make_dataset(train["items"], "scores", batch_size, True, augment, seed)
    val_ds = make_dataset(val["items"], "scores", batch_size, False, False, seed)
    model, history, seconds = _fit(model, train_ds, val_ds, workdir, epochs, "val_mae", "min", patience, name)
    return {
        "model": model,
        "history": history,
        "seconds": seconds,
        "p_val": predict_items(model, val["items"], batch_size),
        "shape": shape,
    }


def _subset(table: dict, rows: np.ndarray) -> dict:
    return {
        "items": [table["items"][i] for i in rows],
        "labels": np.asarray(table["labels"])[rows],
        "scores": np.asarray(table["scores"])[rows],
        "patient_ids": [table["patient_ids"][i] for i in rows],
    }


def train_classifier(
    train_h5: str | Path,
    val_h5: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_training_plot: str | Path,
    out_roc_plot: str | Path,
    epochs: int = 30,
    batch_size: int = 2,
    learning_rate: float = 1e-4,
    filters=(64, 64, 128, 256),
    dense: int = 512,
    patience: int = 10,
    seed: int = 1337,
    augment: bool = True,
) -> dict:
    """Train the COVID-19 classifier; keep the epoch with the best val AUC.

    Writes the model, its sidecar JSON (decision threshold chosen on val by Youden's J),
    the per-epoch history CSV, metrics JSON and plots (accuracy and loss per epoch, ROC). The metrics are
    those of the validation split, which chose the epoch and the threshold: optimistic by
    construction (the honest figures are the test split's, ``covidct.evaluation``).
    """
    from covidct.report.plots import roc_curve, training_curves

    gpu = setup_keras(seed)
    train, val = h5_table([train_h5]), h5_table([val_h5])
    log.info(
        "classifier: %d train (%d pos), %d val, gpu=%s",
        len(train["labels"]),
        int(train["labels"].sum()),
        len(val["labels"]),
        gpu,
    )
    try:
        fit = fit_classifier(
            train,
            val,
            Path(out_model).parent,
            epochs,
            batch_size,
            learning_rate,
            filters,
            dense,
            patience,
            seed,
            augment,
        )
    except CovidctError as exc:
        raise CovidctError(exc.message, path=train_h5 if "training" in exc.message else val_h5) from None
    y_val, p_val, threshold = val["labels"], fit["p_val"], fit["threshold"]
    result = classification_metrics(y_val, p_val, threshold)
    result.update(
        {
            "split": "val",
            "note": VAL_NOTE,
            "monitor": fit["monitor"],
            "epochs_run": len(fit["history"]["loss"]),
            "train_seconds": round(fit["seconds"], 1),
            "n_train": len(train["labels"]),
            "n_val": len(y_val),
            "gpu": gpu,
            "shape": list(fit["shape"]),
            "class_weight": fit["class_weight"],
        }
    )
    _write_outputs(
        fit["model"],
        out_model,
        {"threshold": threshold, "shape": list(fit["shape"]), "monitor": fit["monitor"]},
        out_sidecar,
        fit["history"],
        out_history,
        result,
        out_metrics,
    )
    training_curves(fit["history"], out_training_plot, ["accuracy", "loss"])
    roc_curve(y_val, p_val, out_roc_plot, result.get("auc"), title="ROC (validation)")
    log.info("classifier: val %s", {k: result[k] for k in ("accuracy", "auc", "sensitivity", "specificity")})
    return result


#: What the validation figures are (they chose the checkpoint, and the classifier's threshold).
VAL_NOTE = (
    "validation split: it chose the checkpoint (and the classifier's threshold), so these figures are "
    "optimistic; the test split's are in evaluation.json"
)


def train_scorer(
    train_h5: str | Path,
    val_h5: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_training_plot: str | Path,
    out_scatter_plot: str | Path,
    out_confusion_plot: str | Path,
    epochs: int = 30,
    batch_size: int = 2,
    learning_rate: float = 1e-4,
    filters=(64, 64, 128, 256),
    dense: int = 512,
    patience: int = 10,
    seed: int = 1337,
    augment: bool = True,
    positives_only: bool = True,
    loss: str = "huber",
) -> dict:
    """Train the severity scorer (percent of lung involved); keep the epoch with the best val MAE."""
    from covidct.report.plots import score_scatter, severity_confusion, training_curves

    gpu = setup_keras(seed)
    train_all, val_all = h5_table([train_h5]), h5_table([val_h5])
    # patients without a score (label known, score empty) are not used by the scorer
    train = _subset(train_all, scorer_rows(train_all, positives_only))
    val = _subset(val_all, scorer_rows(val_all, positives_only))
    what = "scored COVID-positive" if positives_only else "all scored"
    if len(train["items"]) < 2 or len(val["items"]) < 1:
        raise CovidctError(
            f"the scorer needs {what} patients in train (>= 2) and val (>= 1); found "
            f"{len(train['items'])} and {len(val['items'])}",
            path=train_h5,
        )
    log.info("scorer: %d train, %d val (%s patients), gpu=%s", len(train["items"]), len(val["items"]), what, gpu)
    fit = fit_scorer(
        train,
        val,
        Path(out_model).parent,
        epochs,
        batch_size,
        learning_rate,
        filters,
        dense,
        patience,
        seed,
        augment,
        loss,
    )
    truth, pred = val["scores"], fit["p_val"]
    result = regression_metrics(truth, pred)
    result["baseline_mae_train_mean"] = float(np.mean(np.abs(truth - np.mean(train["scores"]))))
    result.update(
        {
            "split": "val",
            "note": VAL_NOTE,
            "epochs_run": len(fit["history"]["loss"]),
            "train_seconds": round(fit["seconds"], 1),
            "n_train": len(train["items"]),
            "n_val": len(val["items"]),
            "patients": what,
            "gpu": gpu,
            "shape": list(fit["shape"]),
            "train_mean": float(np.mean(train["scores"])),
        }
    )
    _write_outputs(
        fit["model"],
        out_model,
        {
            "shape": list(fit["shape"]),
            "patients": what,
            "positives_only": positives_only,
            "train_mean": float(np.mean(train["scores"])),
        },
        out_sidecar,
        fit["history"],
        out_history,
        result,
        out_metrics,
    )
    training_curves(fit["history"], out_training_plot, ["mae", "loss"])
    score_scatter(truth, pred, out_scatter_plot, title="Scorer (validation)")
    severity_confusion(truth, pred, out_confusion_plot, title="Severity class (validation)")
    log.info("scorer: val MAE %.2f (train-mean baseline %.2f)", result["mae"], result["baseline_mae_train_mean"])
    return result


def cv_folds(subjects: Sequence[str], labels: Sequence[int], folds: int, salt: str) -> dict[str, int]:
    """Each subject's fold (0..folds-1), stratified by label: within the positive and the negative
    subjects (a subject is positive if any of its scans is), subjects are ordered by a keyed hash
    and dealt round-robin, so folds differ in size by at most one per stratum.

    >>> f = cv_folds(["a", "a", "b", "c", "d"], [1, 1, 0, 1, 0], 2, "s")
    >>> sorted(f) == ["a", "b", "c", "d"] and set(f.values()) == {0, 1}
    True
    """
    from covidct.split import hash_unit

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
    n_boot: int = 2000,
    min_subjects: int = 10,
    classifier: dict | None = None,
    scorer: dict | None = None,
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
        classifier: Training settings of the classifier (``fit_classifier`` keywords).
        scorer: Training settings of the scorer (``fit_scorer`` keywords plus ``positives_only``).
    """
    import pandas as pd

    from covidct.evaluation.reports import interpretability, scorer_report

    if folds < 3:
        raise CovidctError(
            f"cross-validation needs at least 3 folds (one tests, one selects, the rest train); got {folds}"
        )
    classifier, scorer = dict(classifier or {}), dict(scorer or {})
    positives_only = bool(scorer.pop("positives_only", True))
    split = pd.read_csv(split_table, sep="\t", dtype=str, keep_default_na=False).set_index("patient_id")
    table = h5_table([train_h5, val_h5])
    subjects = [split.loc[pid, "subject_id"] or pid for pid in table["patient_ids"]]
    fold_of_subject = cv_folds(subjects, table["labels"], folds, salt + ":cv")
    fold = np.array([fold_of_subject[s] for s in subjects])
    setup_keras(int(classifier.get("seed", 1337)))
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
        fit = fit_classifier(
            _subset(table, train_rows),
            _subset(table, val_rows),
            workdir,
            name=f"cv fold {f + 1} classifier",
            **classifier,
        )
        test = _subset(table, test_rows)
        p = predict_items(fit["model"], test["items"])
        oof_p[test_rows], oof_threshold[test_rows] = p, fit["threshold"]
        entry["classifier"] = classification_metrics(test["labels"], p, fit["threshold"])
        entry["classifier"]["epochs_run"] = len(fit["history"]["loss"])
        s_train = _subset(table, train_rows[np.isin(train_rows, scorer_rows(table, positives_only))])
        s_val = _subset(table, val_rows[np.isin(val_rows, scorer_rows(table, positives_only))])
        s_test_rows = test_rows[np.isin(test_rows, scorer_rows(table, positives_only))]
        if len(s_train["items"]) >= 2 and len(s_val["items"]) >= 1 and len(s_test_rows):
            sfit = fit_scorer(s_train, s_val, workdir, name=f"cv fold {f + 1} scorer", **scorer)
            pred = predict_items(sfit["model"], [table["items"][i] for i in s_test_rows])
            oof_s[s_test_rows] = pred
            oof_mean[s_test_rows] = float(np.mean(s_train["scores"]))
            entry["scorer"] = regression_metrics(np.asarray(table["scores"])[s_test_rows], pred)
            entry["scorer"]["epochs_run"] = len(sfit["history"]["loss"])
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
        "mean_sd": {
            "classifier": {k: mean_sd("classifier", k) for k in ("accuracy", "auc", "sensitivity", "specificity")},
            "scorer": {
                k: mean_sd("scorer", k)
                for k in ("mae", "rmse", "pearson_r", "class_exact_accuracy", "class_within_one_accuracy")
            },
        },
        "pooled_out_of_fold": {
            "classifier": _pooled_classifier(labels, oof_p, oof_threshold, subjects, n_boot, min_subjects),
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


def _pooled_classifier(
    labels: np.ndarray, p: np.ndarray, thresholds: np.ndarray, subjects: Sequence[str], n_boot: int, min_subjects: int
) -> dict:
    """Pooled out-of-fold classifier figures: each scan judged at its own fold's threshold."""
    from covidct.evaluation.bootstrap import (
        bootstrap_weights,
        estimate,
        subject_codes,
        w_accuracy,
        w_auc,
        w_brier,
        w_sensitivity,
        w_specificity,
    )
    from covidct.evaluation.reports import interpretability, withhold

    pred = (p >= thresholds).astype(int)
    boot = bootstrap_weights(subjects, n_boot)
    _, n_subjects = subject_codes(subjects)
    out = interpretability(n_subjects, min_subjects, [bool((labels == 1).any()), bool((labels == 0).any())])
    out["metrics"] = {
        name: estimate(fn, labels, b, boot)
        for name, fn, b in (
            ("accuracy", w_accuracy, pred),
            ("sensitivity", w_sensitivity, pred),
            ("specificity", w_specificity, pred),
            ("auc", w_auc, p),
            ("brier", w_brier, p),
        )
    }
    return withhold(out)
