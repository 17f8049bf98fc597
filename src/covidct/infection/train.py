"""Training the infection U-Net: schedule, degenerate-run detection, k-fold cross-validation, final model.

One *run* trains one variant for a fixed schedule: the learning rate rises linearly over
``warmup_epochs`` and then follows a cosine decay to 1 % of ``learning_rate`` at ``epochs``; every
epoch sees each training slice once, freshly augmented. A run is *degenerate* when, on the slices it
is checked on, it marks nothing while there is infection (all-background), marks at least 90 % of
all pixels (all-foreground), or its training loss never fell (the mean of the last two epochs at or
above 97 % of the first epoch's): it is retried with another seed (``retries`` times), then reported
as failed, never kept silently.

Model selection is by k-fold cross-validation over source units (a 2D image or a 3D volume is never
split): each variant is trained ``folds`` times on the other folds and evaluated on its held-out fold
after every epoch. The variant with the best cross-validated mean Dice is chosen, and the epoch count
at which the mean-over-folds Dice curve peaks; the final model is then trained on all sources with
that variant for that many epochs (same schedule). The reported CV numbers at the chosen epoch carry
the small optimism of choosing that epoch on the same folds; the numbers at the last epoch do not.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.infection.augment import augment_pairs
from covidct.infection.data import (
    DEFAULT_SPACING_MM,
    SliceGroup,
    assign_folds,
    describe_sources,
    load_sources,
    source_labels,
    stack,
    stack_lungs,
)
from covidct.infection.inputs import INPUT_SPACE
from covidct.infection.unet import (
    CLASS_NAMES,
    THRESHOLD,
    build_unet,
    infection_probability,
    lesion_types,
    load_model,
    mean_metrics,
    pooled_dice,
)
from covidct.io import atomic_dir, atomic_path, read_json, write_json
from covidct.modelcard import card_paths, make_card, write_card
from covidct.runtime import Progress, setup_keras

log = logging.getLogger(__name__)

#: What makes the U-Net's training cheaper, in the config's words (``Progress``' warning).
CHEAPER_UNET = (
    "infection.size 128, infection.variants [dice_ce], infection.folds 3, fewer infection.epochs (e.g. 15), "
    "or a machine with a GPU"
)
#: CPU seconds per training slice and epoch at 256 px and 32 base filters, rounded up from 0.65-0.96 s measured on 2
#: cores shared with two other trainings (docs/measurements.md, 2026-12-03; 0.27-0.36 s at 128 px in the same run);
#: other sizes scale with the pixels and the square of the filters.
CPU_SECONDS_PER_SLICE = 1.0
#: A run that marks at least this share of all pixels is all-foreground.
ALL_FOREGROUND = 0.9
#: A run whose last two epochs' mean loss is at least this share of the first epoch's did not learn.
FLAT_LOSS = 0.97
METRIC_KEYS = ("dice", "iou", "sensitivity", "specificity", "accuracy")
#: Probability thresholds tried when the threshold is chosen by cross-validation (0.10, 0.15, ..., 0.90).
THRESHOLD_GRID = np.round(np.arange(0.10, 0.9001, 0.05), 2)
#: A threshold chosen by cross-validation may mark at most this share (%) of the held-out lesion-free lungs'
#: pixels, or as much as the fixed ``THRESHOLD`` marks where that is already more.
LESION_FREE_MAX_PERCENT = 1.0


def learning_rate_at(epoch: int, epochs: int, base: float, warmup: int) -> float:
    """Learning rate of ``epoch`` (1-based): linear warm-up, then cosine decay to 1 % of ``base``.

    >>> [round(learning_rate_at(e, 10, 1.0, 2), 3) for e in (1, 2, 3, 10)]
    [0.5, 1.0, 1.0, 0.01]
    """
    if warmup > 0 and epoch <= warmup:
        return base * epoch / warmup
    span = max(1, epochs - max(warmup, 0) - 1)
    t = min(1.0, (epoch - max(warmup, 0) - 1) / span)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


def _targets(y: np.ndarray, classes: int) -> np.ndarray:
    """(N, H, W, 1) labels -> the network's target: binary (N, H, W, 1) or one-hot (N, H, W, classes)."""
    if classes == 1:
        return (y > 0).astype(np.float32)
    return np.eye(classes, dtype=np.float32)[np.clip(y[..., 0], 0, classes - 1)]


def predict(model, x: np.ndarray, batch_size: int = 8, tta: bool = False) -> np.ndarray:
    """Network output (N, H, W, classes); with ``tta`` the mean over the slice, its left-right and its
    up-down flip (each prediction flipped back)."""
    prob = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float32)
    if not tta:
        return prob
    for axis in (2, 1):
        flipped = np.asarray(model.predict(np.flip(x, axis), batch_size=batch_size, verbose=0), np.float32)
        prob += np.flip(flipped, axis)
    return prob / 3.0


def evaluate(y: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """``evaluate_lists`` of stacked labels ``y`` (N, H, W, 1) and network outputs ``prob`` (N, H, W, classes)."""
    return evaluate_lists(list(y[..., 0]), list(prob), threshold)


def evaluate_lists(truths: list[np.ndarray], probs: list[np.ndarray], threshold: float = THRESHOLD) -> dict:
    """Metrics of network outputs ``probs`` (each (H, W, classes)) against label maps ``truths`` (each (H, W));
    the pairs may differ in size from one to the next.

    Infection (any lesion): per-image mean Dice, IoU, sensitivity, specificity, accuracy (as the
    published tables), pooled Dice, and the share of pixels marked. A lesion-type head adds per class
    (ground-glass, consolidation) the per-image mean Dice and the pooled Dice. ``dice_of_empty_prediction``
    is the baseline of marking nothing (Dice 1 on lesion-free slices, 0 on the others).
    """
    truth = [np.asarray(t) > 0 for t in truths]
    infected = [infection_probability(p) >= threshold for p in probs]
    n_pixels = sum(t.size for t in truth)
    result = {**mean_metrics(truth, infected), "dice_pooled": pooled_dice(truth, infected)}
    result["dice_of_empty_prediction"] = float(np.mean([0.0 if t.any() else 1.0 for t in truth]))
    result["marked_fraction"] = float(sum(int(i.sum()) for i in infected) / n_pixels)
    result["truth_fraction"] = float(sum(int(t.sum()) for t in truth) / n_pixels)
    if np.asarray(probs[0]).shape[-1] == 3:
        types = [lesion_types(p) for p in probs]
        for code, name in enumerate(CLASS_NAMES[3][1:], start=1):
            t = [np.asarray(lab) == code for lab in truths]
            p = [i & (ty == code) for i, ty in zip(infected, types)]
            result[f"{name}_dice"] = mean_metrics(t, p)["dice"]
            result[f"{name}_dice_pooled"] = pooled_dice(t, p)
    return result


def threshold_counts(truths, probs, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """(TP, FP, FN) of the infection mask ``probability >= t`` for every slice and every ``t`` of ``grid``:
    an (N, len(grid), 3) integer array. ``probs`` are network outputs (each (H, W, classes)).

    >>> c = threshold_counts([np.array([[1, 0]])], [np.array([[[0.7], [0.3]]])], np.array([0.2, 0.5, 0.8]))
    >>> c[0].tolist()
    [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    """
    out = np.zeros((len(probs), len(grid), 3), np.int64)
    for i, (truth, prob) in enumerate(zip(truths, probs)):
        t = np.asarray(truth).ravel() > 0
        p = infection_probability(prob).ravel()
        # thresholds passed, compared in the probabilities' own precision as inference compares them
        level = np.searchsorted(np.asarray(grid, p.dtype), p, side="right")
        above_t = np.cumsum(np.bincount(level[t], minlength=len(grid) + 1)[::-1])[::-1][1:]
        above_f = np.cumsum(np.bincount(level[~t], minlength=len(grid) + 1)[::-1])[::-1][1:]
        out[i, :, 0], out[i, :, 1], out[i, :, 2] = above_t, above_f, int(t.sum()) - above_t
    return out


def slice_dice(counts: np.ndarray) -> np.ndarray:
    """Per-slice Dice (N, thresholds) of ``threshold_counts``; 1 where truth and prediction are both empty."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)


def pick_threshold(score: np.ndarray, marked: np.ndarray | None, grid: np.ndarray = THRESHOLD_GRID) -> int:
    """Index into ``grid`` of the threshold with the best ``score`` (one per threshold), among those that mark
    held-out lesion-free lungs (``marked``: % of their pixels per threshold, or None) at most
    ``LESION_FREE_MAX_PERCENT`` % or as much as the fixed ``THRESHOLD``; of equal ones, the nearest to
    ``THRESHOLD``.

    >>> int(pick_threshold(np.array([0.5, 0.7, 0.6]), None, np.array([0.3, 0.5, 0.7])))
    1
    >>> int(pick_threshold(np.array([0.9, 0.7, 0.6]), np.array([5.0, 0.5, 0.1]), np.array([0.3, 0.5, 0.7])))
    1
    """
    score = np.asarray(score, float)
    if marked is not None:
        fixed = int(np.argmin(np.abs(grid - THRESHOLD)))
        score = np.where(marked <= max(LESION_FREE_MAX_PERCENT, float(marked[fixed])), score, -np.inf)
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return int(best[np.argmin(np.abs(grid[best] - THRESHOLD))])


def calibrate_threshold(folds: list[dict], grid: np.ndarray = THRESHOLD_GRID) -> dict:
    """The probability threshold chosen on the out-of-fold predictions of a cross-validation.

    ``folds``: per fold ``{"counts": threshold_counts of its held-out annotated slices, "free": those of its
    held-out lesion-free slices or None, "free_pixels": their pixel count}`` (the fold models at their last
    epoch). The threshold is the one with the best pooled Dice of all held-out annotated pixels together
    (``pick_threshold``): the pixel-level agreement that the severity read-out's volumes depend on; the
    per-image mean Dice of the published tables is dominated by slices with little lesion, where every
    false pixel weighs much. ``nested`` says what the choice is worth on unseen data: each fold scored (per-image
    mean and pooled Dice) at the threshold chosen on the other folds alone, mean +- sd over folds, beside the
    same folds at the fixed ``THRESHOLD``. ``folds`` in the result keep each fold's pooled (TP, FP, FN) and
    per-image mean Dice per threshold, so another rule of choice can be checked on them later.
    """
    fixed = int(np.argmin(np.abs(grid - THRESHOLD)))
    per_image = [slice_dice(f["counts"]) for f in folds]
    pooled = [f["counts"].sum(axis=0) for f in folds]
    free = [f.get("free") for f in folds]
    free_pixels = [f.get("free_pixels", 0) for f in folds]

    def pooled_dice(idx: list[int]) -> np.ndarray:
        return slice_dice(sum(pooled[i] for i in idx))

    def marked_percent(idx: list[int]) -> np.ndarray | None:
        parts = [(free[i], free_pixels[i]) for i in idx if free[i] is not None and len(free[i])]
        if not parts:
            return None
        fp = sum(p[..., 1].sum(axis=0) for p, _ in parts)
        return 100.0 * fp / max(sum(n for _, n in parts), 1)

    everything = list(range(len(folds)))
    all_marked = marked_percent(everything)
    chosen = pick_threshold(pooled_dice(everything), all_marked, grid)
    nested = {"dice": [], "dice_at_fixed_threshold": [], "pooled_dice": [], "pooled_dice_at_fixed_threshold": []}
    thresholds = []
    for k in everything:
        others = [i for i in everything if i != k]
        j = pick_threshold(pooled_dice(others), marked_percent(others), grid)
        thresholds.append(float(grid[j]))
        nested["dice"].append(float(per_image[k][:, j].mean()))
        nested["dice_at_fixed_threshold"].append(float(per_image[k][:, fixed].mean()))
        nested["pooled_dice"].append(float(pooled_dice([k])[j]))
        nested["pooled_dice_at_fixed_threshold"].append(float(pooled_dice([k])[fixed]))
    result = {
        "threshold": float(grid[chosen]),
        "chosen_by": "pooled Dice of the held-out annotated slices",
        "grid": [float(t) for t in grid],
        "out_of_fold_pooled_dice": [round(float(v), 4) for v in pooled_dice(everything)],
        "out_of_fold_dice": [round(float(v), 4) for v in np.concatenate(per_image).mean(axis=0)],
        "nested": {k: _mean_sd(v) for k, v in nested.items()} | {"fixed_threshold": THRESHOLD,
                                                                  "thresholds": thresholds},
        "folds": [{"pooled_counts": pooled[k].tolist(), "dice": [round(float(v), 4) for v in per_image[k].mean(0)]}
                  for k in everything],
    }  # fmt: skip
    if all_marked is not None:
        result["lesion_free_marked_percent"] = [round(float(v), 4) for v in all_marked]
    return result


def degenerate(history: list[dict], checked: dict) -> str | None:
    """Why a run is degenerate (all-background, all-foreground, flat loss), or None.

    ``checked`` is ``evaluate``'s result on the slices the run is checked on.

    >>> degenerate([{"loss": 1.0}, {"loss": 0.5}], {"truth_fraction": 0.1, "marked_fraction": 0.0})
    'all-background: nothing marked where 10.0% of pixels are infected'
    >>> degenerate([{"loss": 1.0}, {"loss": 0.99}, {"loss": 0.99}], {"truth_fraction": .1, "marked_fraction": .1})
    'flat loss: 0.9900 after 3 epochs, 1.0000 at epoch 1'
    """
    if checked["truth_fraction"] > 0 and checked["marked_fraction"] == 0:
        return f"all-background: nothing marked where {100 * checked['truth_fraction']:.1f}% of pixels are infected"
    if checked["marked_fraction"] >= ALL_FOREGROUND:
        return f"all-foreground: {100 * checked['marked_fraction']:.1f}% of all pixels marked"
    losses = [row["loss"] for row in history]
    if len(losses) >= 3 and np.mean(losses[-2:]) >= FLAT_LOSS * losses[0]:
        return f"flat loss: {np.mean(losses[-2:]):.4f} after {len(losses)} epochs, {losses[0]:.4f} at epoch 1"
    return None


def fit(
    x: np.ndarray,
    y: np.ndarray,
    variant: str,
    epochs: int,
    *,
    classes: int = 1,
    base_filters: int = 32,
    norm: str = "batch",
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    warmup_epochs: int = 2,
    augment: bool = True,
    seed: int = 0,
    stop_at: int | None = None,
    x_held: np.ndarray | None = None,
    y_held: np.ndarray | None = None,
    lung: np.ndarray | None = None,
    progress: Progress | None = None,
    label: str = "",
):
    """One run: train ``variant`` on (x, y) with the warm-up + cosine schedule of ``epochs`` epochs,
    stopping after ``stop_at`` (default: all). ``lung``: the slices' lung masks (for the dependent-density
    augmentation). With held-out slices, each epoch's row holds their metrics (``held_*``). Each epoch is
    told to ``progress`` (the whole training's, ``covidct.runtime.Progress``) as ``label`` (default: the
    variant). Returns ``(model, history)``."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_unet(int(x.shape[1]), base_filters, variant, learning_rate, classes, norm)
    history = []
    for epoch in range(1, (stop_at or epochs) + 1):
        lr = learning_rate_at(epoch, epochs, learning_rate, warmup_epochs)
        model.optimizer.learning_rate.assign(lr)
        t0 = time.perf_counter()
        xa, ya = augment_pairs(x, y, rng, lung) if augment else (x, y)
        fitted = model.fit(xa, _targets(ya, classes), batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        row = {"epoch": epoch, "lr": lr, "loss": float(fitted.history["loss"][-1]),
               "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
        if x_held is not None:
            held = evaluate(y_held, predict(model, x_held, batch_size))
            row.update({f"held_{k}": v for k, v in held.items()})
        history.append(row)
        if progress is not None:
            what = f"{label or variant} epoch {epoch}/{stop_at or epochs}"
            progress.epoch(what, row["loss"], "held-out Dice", row.get("held_dice"), time.perf_counter() - t0)
    return model, history


def fit_checked(x, y, variant, epochs, *, retries: int = 2, seed: int = 0, x_held=None, y_held=None, **kwargs):
    """``fit`` with degenerate-run detection on the held-out slices (else the training slices, not
    augmented): a degenerate run is retried with seed + 1000, + 2000, ... up to ``retries`` times.

    Returns ``(model, history, attempts)``: the last run and one ``{seed, degenerate}`` per attempt
    (``degenerate`` None for a healthy run: only the last attempt can be healthy).
    """
    attempts = []
    for attempt in range(retries + 1):
        run_seed = seed + 1000 * attempt
        model, history = fit(x, y, variant, epochs, seed=run_seed, x_held=x_held, y_held=y_held, **kwargs)
        checked = (
            {k[5:]: v for k, v in history[-1].items() if k.startswith("held_")}
            if x_held is not None
            else evaluate(y, predict(model, x, kwargs.get("batch_size", 4)))
        )
        reason = degenerate(history, checked)
        attempts.append({"seed": run_seed, "degenerate": reason})
        if reason is None:
            break
        log.warning("%s (seed %d) is degenerate: %s%s", variant, run_seed, reason,
                    "; retrying with another seed" if attempt < retries else "; no retries left")  # fmt: skip
    return model, history, attempts


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def _held_out_lesion_free(model, groups: list[SliceGroup], batch_size: int) -> tuple[dict | None, dict]:
    """Share of the pixels of held-out lesion-free slices marked infected at ``THRESHOLD`` (pooled over
    their pixels), or None without such slices; and their ``threshold_counts`` for ``calibrate_threshold``."""
    free = [g for g in groups if g.lesion_free]
    if not free:
        return None, {"free": None, "free_pixels": 0}
    x, y = stack(free)
    counts = threshold_counts(list(y[..., 0]), list(predict(model, x, batch_size)))
    pixels = int(y[..., 0].size)
    fixed = int(np.argmin(np.abs(THRESHOLD_GRID - THRESHOLD)))
    marked = int(counts[:, fixed, :2].sum())  # TP + FP at THRESHOLD: every pixel marked
    summary = {"slices": int(len(x)), "marked_percent": round(100.0 * marked / pixels, 4)}
    return summary, {"free": counts, "free_pixels": pixels}


def cv_fold(
    groups: list[SliceGroup],
    variant: str,
    k: int,
    folds: int = 5,
    epochs: int = 40,
    *,
    classes: int = 1,
    seed: int = 1337,
    retries: int = 2,
    tta: bool = False,
    batch_size: int = 4,
    **kwargs,
) -> tuple[dict, dict, object]:
    """One fold of the cross-validation: ``variant`` trained on every fold of ``groups`` but ``k`` (of ``folds``,
    ``assign_folds`` with ``seed``) and measured on fold ``k`` after every epoch.

    Returns ``(fold, scan, model)``: the fold's record (held-out units, attempts, seconds, the held-out curve,
    lesion-free share, with ``tta`` the last epoch with test-time flips), its ``threshold_counts`` for
    ``calibrate_threshold`` (``scan``: ``counts``, ``free``, ``free_pixels``) and the fold model.
    """
    fold_of = assign_folds([g.name for g in groups], folds, seed)
    held = [g for g in groups if fold_of[g.name] == k]
    annotated = [g for g in held if not g.lesion_free] or held
    train_g = [g for g in groups if fold_of[g.name] != k]
    x_tr, y_tr = stack(train_g)
    x_ho, y_ho = stack(annotated)
    t0 = time.perf_counter()
    model, history, attempts = fit_checked(
        x_tr, y_tr, variant, epochs, classes=classes, seed=seed + k, retries=retries,
        x_held=x_ho, y_held=y_ho, batch_size=batch_size, lung=stack_lungs(train_g),
        label=f"{variant} fold {k + 1}/{folds}", **kwargs,
    )  # fmt: skip
    fold = {
        "fold": k,
        "held_out": [g.name for g in held],
        "train_slices": int(len(x_tr)),
        "held_out_slices": int(len(x_ho)),
        "attempts": attempts,
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_per_epoch": round(float(np.mean([r["seconds"] for r in history])), 2),
        "curve": [
            {k2[5:]: v for k2, v in r.items() if k2.startswith("held_")} | {"loss": r["loss"]} for r in history
        ],  # fmt: skip
    }
    fold["lesion_free"], scan = _held_out_lesion_free(model, held, batch_size)
    held_prob = predict(model, x_ho, batch_size)
    scan = scan | {"counts": threshold_counts(list(y_ho[..., 0]), list(held_prob))}
    if tta:
        fold["last_epoch_tta"] = evaluate(y_ho, predict(model, x_ho, batch_size, tta=True))
    last = fold["curve"][-1]
    log.info("%s fold %d/%d: held-out Dice %.4f (%d units, %d slices), %.1f s/epoch%s", variant, k + 1,
             folds, last["dice"], len(annotated), len(x_ho), fold["seconds_per_epoch"],
             f", degenerate: {attempts[-1]['degenerate']}" if attempts[-1]["degenerate"] else "")  # fmt: skip
    return fold, scan, model


def fold_failure(fold: dict) -> str | None:
    """Why a fold failed (it stayed degenerate after its retries), or None."""
    attempts = fold["attempts"]
    if not attempts[-1]["degenerate"]:
        return None
    return f"fold {fold['fold'] + 1} stayed degenerate after {len(attempts)} attempts: {attempts[-1]['degenerate']}"


def summarize_variant(variant: str, per_fold: list[dict], scans: list[dict], epochs: int, tta: bool = False) -> dict:
    """A variant's cross-validation from its folds (``cv_fold``'s records and scans, in fold order): ``failed``
    with the ``reason`` when a fold stayed degenerate, else the mean-over-folds Dice curve, its best epoch,
    mean +- sd over folds at the best and the last epoch, and the threshold chosen on the held-out folds."""
    failed = next((reason for reason in map(fold_failure, per_fold) if reason), None)
    entry = {"status": "failed" if failed else "ok", "folds": per_fold}
    if failed:
        entry["reason"] = failed
        log.warning("%s failed: %s", variant, failed)
        return entry
    curve = np.mean([[r["dice"] for r in f["curve"]] for f in per_fold], axis=0)
    best = int(np.argmax(curve)) + 1
    keys = [k for k in per_fold[0]["curve"][-1] if k not in ("loss", "marked_fraction", "truth_fraction")]
    entry.update(
        {
            "mean_dice_curve": [round(float(v), 4) for v in curve],
            "best_epoch": best,
            "at_best_epoch": {k: _mean_sd([f["curve"][best - 1][k] for f in per_fold]) for k in keys},
            "at_last_epoch": {k: _mean_sd([f["curve"][-1][k] for f in per_fold]) for k in keys},
            "seconds_per_epoch": round(float(np.mean([f["seconds_per_epoch"] for f in per_fold])), 2),
        }
    )
    free = [f["lesion_free"]["marked_percent"] for f in per_fold if f["lesion_free"]]
    if free:
        entry["lesion_free_marked_percent"] = _mean_sd(free)
    if tta:
        entry["at_last_epoch_tta"] = {k: _mean_sd([f["last_epoch_tta"][k] for f in per_fold]) for k in keys}
    entry["threshold"] = calibrate_threshold(scans)
    nested = entry["threshold"]["nested"]
    log.info("%s: threshold %.2f chosen on the held-out folds; nested CV Dice %.4f +- %.4f (%.4f at %.2f), "
             "pooled %.4f (%.4f)", variant, entry["threshold"]["threshold"], nested["dice"]["mean"],
             nested["dice"]["sd"], nested["dice_at_fixed_threshold"]["mean"], THRESHOLD,
             nested["pooled_dice"]["mean"], nested["pooled_dice_at_fixed_threshold"]["mean"])  # fmt: skip
    log.info("%s: CV Dice %.4f +- %.4f at epoch %d (best of the mean curve), %.4f +- %.4f at epoch %d",
             variant, entry["at_best_epoch"]["dice"]["mean"], entry["at_best_epoch"]["dice"]["sd"], best,
             entry["at_last_epoch"]["dice"]["mean"], entry["at_last_epoch"]["dice"]["sd"], epochs)  # fmt: skip
    return entry


def cross_validate(
    groups: list[SliceGroup],
    variants: tuple[str, ...] | list[str],
    folds: int = 5,
    epochs: int = 40,
    *,
    classes: int = 1,
    seed: int = 1337,
    retries: int = 2,
    tta: bool = False,
    batch_size: int = 4,
    keep_models: bool = False,
    **kwargs,
):
    """K-fold cross-validation of each variant over the source units of ``groups`` in one process
    (``cv_fold`` for each fold, ``summarize_variant`` for each variant; a variant stops at its first fold that
    stays degenerate).

    The held-out curve (metrics after every epoch) is measured on the held-out units with masks;
    held-out units of lesion-free sources are scored apart, at the last epoch, by the share of their
    pixels marked infected (``lesion_free``), so the Dice stays comparable with and without negatives.

    Returns per variant: ``status`` (``ok``, or ``failed`` with the ``reason`` when a fold stayed
    degenerate after its retries), per fold the held-out units, attempts, seconds per epoch, the
    held-out metrics after every epoch (``curve``) and at the last epoch (also with test-time flips
    when ``tta``); the mean-over-folds Dice curve, its best epoch, and mean +- sd over folds of every
    metric at the best epoch (``at_best_epoch``) and at the last epoch (``at_last_epoch``); the probability
    threshold chosen on the folds' held-out predictions at the last epoch (``threshold``:
    ``calibrate_threshold``). With
    ``keep_models`` a pair ``(result, {variant: [fold models]})``.
    """
    result = {"folds": folds, "fold_of": assign_folds([g.name for g in groups], folds, seed), "variants": {}}
    kept: dict[str, list] = {}
    for variant in variants:
        per_fold, models, scans = [], [], []
        for k in range(folds):
            fold, scan, model = cv_fold(groups, variant, k, folds, epochs, classes=classes, seed=seed,
                                        retries=retries, tta=tta, batch_size=batch_size, **kwargs)  # fmt: skip
            per_fold.append(fold)
            scans.append(scan)
            if keep_models:
                models.append(model)
            if fold_failure(fold):
                break
        result["variants"][variant] = summarize_variant(variant, per_fold, scans, epochs, tta)
        if result["variants"][variant]["status"] == "ok":
            kept[variant] = models
    return (result, kept) if keep_models else result


def ensemble(models: list, name: str = "unet_ensemble"):
    """One Keras model averaging the outputs of ``models`` (same input): the fold models as one file."""
    import keras

    if len(models) == 1:
        return models[0]
    inputs = keras.Input(models[0].input_shape[1:], name="slice")
    # each member under a name of its own: fold models of one variant share the name unet_<variant>
    members = [keras.Model(m.input, m.output, name=f"member_{i + 1}") for i, m in enumerate(models)]
    outputs = keras.layers.Average(name="infection_mean")([m(inputs) for m in members])
    model = keras.Model(inputs, outputs, name=name)
    model.compile(loss=models[0].loss)
    return model


def choose(cv: dict, at: str = "at_best_epoch") -> tuple[str, int]:
    """The variant with the best cross-validated mean Dice and its epoch count: at the best epoch of its mean
    curve (``at_best_epoch``, for a final model trained anew) or at the last epoch (``at_last_epoch``, for
    the fold models kept as they are).

    Raises:
        CovidctError: every variant failed (degenerate in some fold after its retries).
    """
    ok = {v: e for v, e in cv["variants"].items() if e["status"] == "ok"}
    if not ok:
        reasons = "; ".join(f"{v}: {e['reason']}" for v, e in cv["variants"].items())
        raise CovidctError(f"every infection U-Net variant was degenerate, no model kept ({reasons})")
    variant = max(ok, key=lambda v: ok[v][at]["dice"]["mean"])
    epochs = ok[variant]["best_epoch"] if at == "at_best_epoch" else len(ok[variant]["mean_dice_curve"])
    return variant, epochs


#: The files of one cross-validation fold's folder (``train_fold``): its record, its held-out counts, and with
#: ``ensemble_folds`` its model.
FOLD_RECORD, FOLD_COUNTS, FOLD_MODEL = "fold.json", "counts.npz", "model.keras"
#: The settings a fold's folder must share with the final training that reads it.
FOLD_SETTINGS = ("size", "base_filters", "norm", "folds", "epochs", "warmup_epochs", "batch_size", "learning_rate",
                 "retries", "seed", "augment", "tta", "max_slices_per_volume", "spacing_mm")  # fmt: skip


def _prepare(sources: list[dict], size: int, max_slices_per_volume: int, spacing_mm: float, seed: int):
    """Keras seeded, and the sources loaded: ``(gpu, labels, classes, groups)``."""
    gpu = setup_keras(seed)
    labels = source_labels(sources)
    classes = 3 if labels == "types" else 1
    return gpu, labels, classes, load_sources(sources, size, max_slices_per_volume, spacing_mm)


def _forecast(progress: Progress, groups: list[SliceGroup], size: int, base_filters: int) -> int:
    """Tell ``progress`` the CPU cost per epoch reckoned from the settings; returns the slice count."""
    n_slices = sum(len(g.x) for g in groups)
    per_slice = CPU_SECONDS_PER_SLICE * (size / 256) ** 2 * (base_filters / 32) ** 2
    progress.forecast(n_slices * per_slice, f"{n_slices} slices x {per_slice:.2g} s per slice and epoch, measured")
    return n_slices


def train_fold(
    sources: list[dict],
    out_dir: str | Path,
    variant: str,
    fold: int,
    size: int = 256,
    base_filters: int = 32,
    norm: str = "batch",
    folds: int = 5,
    epochs: int = 40,
    warmup_epochs: int = 2,
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    retries: int = 2,
    seed: int = 1337,
    augment: bool = True,
    tta: bool = False,
    max_slices_per_volume: int = 64,
    spacing_mm: float = DEFAULT_SPACING_MM,
    ensemble_folds: bool = False,
) -> dict:
    """One fold of ``train``'s cross-validation as a job of its own (``cv_fold``), so that the folds of a
    workstation run side by side: writes the folder ``out_dir`` (atomically) with the fold's record and
    settings (``fold.json``), its held-out ``threshold_counts`` (``counts.npz``) and, with ``ensemble_folds``,
    the fold model (``model.keras``). A fold that stays degenerate is a result (the variant fails), not an
    error. ``train(..., fold_dirs=...)`` reads the folders."""
    values = {k: v for k, v in locals().items() if k in FOLD_SETTINGS}
    if not 0 <= fold < folds:
        raise CovidctError(f"fold {fold} of a {folds}-fold cross-validation does not exist")
    gpu, labels, classes, groups = _prepare(sources, size, max_slices_per_volume, spacing_mm, seed)
    settings = dict(
        classes=classes, base_filters=base_filters, norm=norm, batch_size=batch_size, learning_rate=learning_rate,
        warmup_epochs=warmup_epochs, augment=augment,
    )  # fmt: skip
    progress = Progress("infection U-Net", epochs, gpu, CHEAPER_UNET)
    _forecast(progress, groups, size, base_filters)
    record, scan, model = cv_fold(groups, variant, fold, folds, epochs, seed=seed, retries=retries, tta=tta,
                                  progress=progress, **settings)  # fmt: skip
    info = {"variant": variant, "fold": fold, "settings": values, "labels": labels, "classes": classes, "gpu": gpu,
            "free_pixels": scan["free_pixels"], "record": record, "model": bool(ensemble_folds)}  # fmt: skip
    with atomic_dir(out_dir) as tmp:
        arrays = {"counts": scan["counts"]} | ({"free": scan["free"]} if scan["free"] is not None else {})
        np.savez(tmp / FOLD_COUNTS, **arrays)
        if ensemble_folds:
            model.save(tmp / FOLD_MODEL)
        write_json(tmp / FOLD_RECORD, info)
    return info


def read_folds(fold_dirs: list[str | Path], variants, folds: int, expected: dict) -> dict[str, list[dict]]:
    """The fold folders of ``train_fold`` by variant, in fold order: ``{variant: [{record, scan, dir}]}``.

    Raises:
        CovidctError: a folder is missing a file, was made with other settings than ``expected``, or a
            variant lacks a fold (every variant needs folds 0 .. ``folds`` - 1).
    """
    found: dict[tuple[str, int], dict] = {}
    for folder in map(Path, fold_dirs):
        record_path, counts_path = folder / FOLD_RECORD, folder / FOLD_COUNTS
        if not record_path.is_file() or not counts_path.is_file():
            raise CovidctError(f"not a cross-validation fold folder (no {FOLD_RECORD} or {FOLD_COUNTS})", path=folder)
        info = read_json(record_path)
        other = {k: (info["settings"].get(k), v) for k, v in expected.items() if info["settings"].get(k) != v}
        if other:
            raise CovidctError(f"fold trained with other settings (the fold's, now): {other}; re-run it", path=folder)
        with np.load(counts_path) as arrays:
            scan = {"counts": arrays["counts"], "free": arrays["free"] if "free" in arrays else None,
                    "free_pixels": info["free_pixels"]}  # fmt: skip
        found[(info["variant"], int(info["fold"]))] = {"record": info["record"], "scan": scan, "dir": folder}
    missing = [f"{v} fold {k + 1}" for v in variants for k in range(folds) if (v, k) not in found]
    if missing:
        raise CovidctError(f"cross-validation folds missing: {', '.join(missing)}")
    return {v: [found[(v, k)] for k in range(folds)] for v in variants}


def train(
    sources: list[dict],
    out_model: str | Path,
    out_metrics: str | Path,
    out_sidecar: str | Path | None = None,
    out_card: str | Path | None = None,
    out_card_md: str | Path | None = None,
    size: int = 256,
    base_filters: int = 32,
    norm: str = "batch",
    variants: tuple[str, ...] | list[str] = ("dice_ce", "bce", "dice"),
    folds: int = 5,
    epochs: int = 40,
    warmup_epochs: int = 2,
    batch_size: int = 4,
    learning_rate: float = 1e-3,
    retries: int = 2,
    seed: int = 1337,
    augment: bool = True,
    tta: bool = False,
    max_slices_per_volume: int = 64,
    spacing_mm: float = DEFAULT_SPACING_MM,
    ensemble_folds: bool = False,
    threshold_from_cv: bool = True,
    fold_dirs: list[str | Path] | None = None,
) -> dict:
    """Cross-validate the variants on the sources, then keep the chosen one: trained anew on all of them for
    the chosen epoch count, or (``ensemble_folds``) its fold models as they are, averaged in one model. Its
    probability threshold is the one chosen on the held-out folds (``calibrate_threshold``), or the fixed
    ``THRESHOLD`` without ``threshold_from_cv``.

    Writes the model (``.keras``), its sidecar JSON (``out_sidecar``, else beside the model: size, input space,
    threshold, classes, variant, test-time flips: what inference needs), the metrics JSON (the
    cross-validation of every variant, the choice, the final run) and the model card (``out_card`` and its
    Markdown page ``out_card_md``, else beside the model: ``covidct.modelcard``).

    With ``fold_dirs`` (the folders of ``train_fold``, one per variant and fold, made with these settings) the
    cross-validation is read from them instead of run here: the workflow runs the folds as jobs of their own.

    Raises:
        CovidctError: bad sources, too few units for the folds, every variant degenerate, a final
            run that stays degenerate after its retries (nothing is written then), or fold folders that are
            missing or were made with other settings.
    """
    fold_settings = {k: v for k, v in locals().items() if k in FOLD_SETTINGS}
    gpu, labels, classes, groups = _prepare(sources, size, max_slices_per_volume, spacing_mm, seed)
    settings = dict(
        classes=classes, base_filters=base_filters, norm=norm, batch_size=batch_size, learning_rate=learning_rate,
        warmup_epochs=warmup_epochs, augment=augment,
    )  # fmt: skip
    planned = (0 if fold_dirs is not None else len(variants) * folds * epochs) + (0 if ensemble_folds else epochs)
    progress = Progress("infection U-Net", planned, gpu, CHEAPER_UNET)
    n_slices = _forecast(progress, groups, size, base_filters)
    log.info("infection U-Net: %d units (%d slices), %s labels, %dx%d, %d-fold CV of %s, %d epochs", len(groups),
             n_slices, labels, size, size, folds, ", ".join(variants), epochs)  # fmt: skip
    if fold_dirs is None:
        cv = cross_validate(groups, variants, folds, epochs, seed=seed, retries=retries, tta=tta,
                            keep_models=ensemble_folds, progress=progress, **settings)  # fmt: skip
        cv, fold_models = cv if ensemble_folds else (cv, {})
    else:
        by_variant = read_folds(fold_dirs, variants, folds, fold_settings)
        cv = {"folds": folds, "fold_of": assign_folds([g.name for g in groups], folds, seed), "variants": {}}
        for variant, runs in by_variant.items():
            cv["variants"][variant] = summarize_variant(
                variant, [r["record"] for r in runs], [r["scan"] for r in runs], epochs, tta
            )
        fold_models = {}
        if ensemble_folds:
            # through unet.load_model, which registers the custom losses: the workflow reads the folds in a
            # process that trained none of them
            fold_models = {v: [load_model(r["dir"] / FOLD_MODEL) for r in runs]
                           for v, runs in by_variant.items() if cv["variants"][v]["status"] == "ok"}  # fmt: skip
    metrics = {"classes": classes, "class_names": list(CLASS_NAMES[classes]), "labels": labels, "gpu": gpu,
               "units": len(groups), "slices": n_slices, "cross_validation": cv}  # fmt: skip
    at = "at_last_epoch" if ensemble_folds else "at_best_epoch"
    try:
        variant, chosen_epochs = choose(cv, at)
    except CovidctError:
        log.error("cross-validation: %s", {v: e.get("reason") for v, e in cv["variants"].items()})
        raise
    t0 = time.perf_counter()
    if ensemble_folds:
        model = ensemble(fold_models[variant])
        final = {"trained_on": f"the {folds} fold models, averaged", "epochs": chosen_epochs}
    else:
        x, y = stack(groups)
        model, history, attempts = fit_checked(
            x, y, variant, epochs, stop_at=chosen_epochs, seed=seed, retries=retries, lung=stack_lungs(groups),
            progress=progress, label=f"final {variant}", **settings,
        )  # fmt: skip
        if attempts[-1]["degenerate"]:
            raise CovidctError(
                f"the final {variant} model (all sources, {chosen_epochs} epochs) stayed degenerate after "
                f"{len(attempts)} attempts: {attempts[-1]['degenerate']}; no model kept"
            )
        final = {"trained_on": "all sources", "epochs": chosen_epochs, "attempts": attempts, "history": history}
    seconds = time.perf_counter() - t0
    chosen = cv["variants"][variant]
    threshold = chosen["threshold"]["threshold"] if threshold_from_cv else THRESHOLD
    sidecar = {"size": size, "input_space": INPUT_SPACE, "threshold": threshold, "variant": variant,
               "base_filters": base_filters, "norm": norm, "classes": classes,
               "class_names": list(CLASS_NAMES[classes]), "epochs": chosen_epochs, "tta": bool(tta),
               "ensemble": folds if ensemble_folds else 1}  # fmt: skip
    metrics.update(
        {
            "chosen_variant": variant,
            "chosen_epochs": chosen_epochs,
            "chosen_by": f"best {folds}-fold cross-validated mean Dice (threshold {THRESHOLD}), "
            + ("variants, at the last epoch" if ensemble_folds else "variants x epochs"),
            "threshold_chosen_by": "held-out folds at the last epoch (nested CV Dice below)"
            if threshold_from_cv
            else "fixed",
            "cv_dice": chosen[at]["dice"]["mean"],
            "cv_dice_sd": chosen[at]["dice"]["sd"],
            "final": final | {"seconds": round(seconds, 1)},
            **sidecar,
        }
    )
    card_json, card_md = card_paths(out_model)
    card_json, card_md = out_card or card_json, out_card_md or card_md
    figures = {
        f"{folds}-fold CV Dice ({metrics['chosen_by']})": f"{metrics['cv_dice']:.3f} +- {metrics['cv_dice_sd']:.3f}",
    }
    if "lesion_free_marked_percent" in chosen:
        free = chosen["lesion_free_marked_percent"]
        figures[f"held-out lesion-free slices, % of pixels marked at {THRESHOLD}"] = (
            f"{free['mean']:.3f} +- {free['sd']:.3f}"
        )
    if threshold_from_cv:
        nested = chosen["threshold"]["nested"]
        figures[f"threshold {threshold:.2f} (chosen on the held-out folds), nested CV Dice"] = (
            f"{nested['dice']['mean']:.3f} +- {nested['dice']['sd']:.3f} "
            f"({nested['dice_at_fixed_threshold']['mean']:.3f} at {THRESHOLD}); pooled "
            f"{nested['pooled_dice']['mean']:.3f} +- {nested['pooled_dice']['sd']:.3f} "
            f"({nested['pooled_dice_at_fixed_threshold']['mean']:.3f} at {THRESHOLD})"
        )
        marked = chosen["threshold"].get("lesion_free_marked_percent")
        if marked is not None:
            at = chosen["threshold"]["grid"].index(threshold)
            figures[f"held-out lesion-free slices, % of pixels marked at {threshold:.2f}"] = f"{marked[at]:.3f}"
    card = make_card(
        "infection_unet",
        describe_sources(sources, groups),
        figures,
        {"size": f"{size} x {size}", "input_space": INPUT_SPACE["name"], "classes": list(CLASS_NAMES[classes])},
        {"variant": variant, "epochs": chosen_epochs, "base_filters": base_filters, "norm": norm,
         "ensemble": sidecar["ensemble"], "threshold": threshold},
    )  # fmt: skip
    sidecar["trained_on"] = card["trained_on"]
    with atomic_path(out_model, suffix=".keras") as tmp:
        model.save(tmp)
    write_json(out_sidecar if out_sidecar is not None else Path(out_model).with_suffix(".json"), sidecar)
    write_json(out_metrics, metrics | {"card": card})
    write_card(card, card_json, card_md)
    log.info("kept %s, %d epochs: CV Dice %.4f +- %.4f; final model %.0f s", variant, chosen_epochs,
             metrics["cv_dice"], metrics["cv_dice_sd"], seconds)  # fmt: skip
    return metrics
