"""Do the evaluation's confidence intervals cover the truth at the nominal rate?

Repeated simulation: many test sets are drawn from a population whose AUC, accuracy, sensitivity,
MAE and Pearson r are known in closed form; each gets the very intervals the `evaluate` rule computes
(covidct.evaluation.estimate with the config's `evaluation.bootstrap` and `evaluation.confidence`,
bootstrap by subject), and we count how often they cover the true value. Subjects have two scans that
share the label and most of their noise (as follow-up scans of one person do), so the comparison with
intervals that resample scans as if independent shows why the bootstrap is by subject.

    python bench/evaluation_coverage.py [--reps 400] [--out bench/measured/evaluation_coverage.txt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import norm

from covidct.evaluation.bootstrap import bootstrap_weights, estimate, w_accuracy, w_auc, w_mae, w_pearson, w_sensitivity

REPO = Path(__file__).resolve().parents[1]
D = 1.2  # separation of the binormal classifier scores (unit variances)
SHARED = 0.7  # share of a scan's noise that its subject's other scan shares
ERROR_SD = 10.0  # scorer error, points of percent lung


def draw(rng: np.random.Generator, n_subjects: int):
    labels = rng.integers(0, 2, n_subjects)
    y = np.repeat(labels, 2)
    noise = np.sqrt(SHARED) * np.repeat(rng.normal(0, 1, n_subjects), 2) + np.sqrt(1 - SHARED) * rng.normal(
        0, 1, 2 * n_subjects
    )
    p = 1 / (1 + np.exp(-(D * y + noise - D / 2)))
    t = rng.uniform(0, 100, 2 * n_subjects)
    err = ERROR_SD * (
        np.sqrt(SHARED) * np.repeat(rng.normal(0, 1, n_subjects), 2)
        + np.sqrt(1 - SHARED) * rng.normal(0, 1, 2 * n_subjects)
    )
    # a predicted score with correlation r to the truth: t + err, r = sd_t / sqrt(sd_t^2 + sd_err^2)
    subjects = np.repeat([f"s{i}" for i in range(n_subjects)], 2)
    return y, p, t, t + err, subjects


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "measured" / "evaluation_coverage.txt")
    args = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["evaluation"]
    n_boot, confidence = cfg["bootstrap"], cfg["confidence"]
    truth = {
        "auc": norm.cdf(D / np.sqrt(2)),
        "accuracy": norm.cdf(D / 2),
        "sensitivity": norm.cdf(D / 2),
        "mae": ERROR_SD * np.sqrt(2 / np.pi),
        "pearson_r": (100 / np.sqrt(12)) / np.sqrt((100 / np.sqrt(12)) ** 2 + ERROR_SD**2),
    }
    lines = [
        f"# bench/evaluation_coverage.py: {args.reps} simulated test sets per size, {n_boot} bootstrap "
        f"replicates, {confidence:.0%} intervals (config evaluation.*); 2 scans per subject, {SHARED:.0%} shared noise",
        "subjects  metric       coverage_by_subject  coverage_by_scan  mean_width_by_subject",
    ]
    t0 = time.perf_counter()
    for n_subjects in args.sizes:
        rng = np.random.default_rng(n_subjects)
        hits = {k: [0, 0] for k in truth}
        widths = {k: [] for k in truth}
        for r in range(args.reps):
            y, p, t, q, subjects = draw(rng, n_subjects)
            pred = (p >= 0.5).astype(int)
            for k, boot in enumerate(
                (
                    bootstrap_weights(subjects, n_boot, seed=r),
                    bootstrap_weights(np.arange(len(y)).astype(str), n_boot, seed=r),
                )
            ):
                for name, fn, a, b in (
                    ("auc", w_auc, y, p),
                    ("accuracy", w_accuracy, y, pred),
                    ("sensitivity", w_sensitivity, y, pred),
                    ("mae", w_mae, t, q),
                    ("pearson_r", w_pearson, t, q),
                ):
                    est = estimate(fn, a, b, boot, confidence)
                    hits[name][k] += est["ci_low"] <= truth[name] <= est["ci_high"]
                    if k == 0:
                        widths[name].append(est["ci_high"] - est["ci_low"])
        for name in truth:
            lines.append(
                f"{n_subjects:8d}  {name:12s} {hits[name][0] / args.reps:19.3f} {hits[name][1] / args.reps:17.3f}"
                f" {np.mean(widths[name]):22.3f}"
            )
    lines.append(f"# {time.perf_counter() - t0:.0f} s")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
