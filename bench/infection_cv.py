"""Cross-validation of the infection U-Net on COVID-SemiSeg (the 50 training slices in ../shared), through
the product's own path: ``covidct.infection.train.cross_validate``, the function the
``train_infection_unet`` rule runs to choose its variant and epoch count, with config/config.yaml's
``infection`` defaults unless a flag says otherwise.

Per seed: k folds split by source unit (one image), each variant trained on the other folds and
evaluated on its held-out fold after every epoch; per variant the mean +- sd over folds of Dice, IoU,
sensitivity, specificity at the last epoch and at the best epoch of the mean curve (chosen on the same
folds: optimistic), per-class Dice for the lesion-type head (``--labels types``: train_multiclass), the
degenerate runs and retries, seconds per epoch; the probability threshold chosen on the held-out folds and
its nested estimate (each fold at the threshold chosen on the others) beside the fixed 0.5. Over seeds: mean +- sd
of the per-seed means.

    python bench/infection_cv.py --size 128 --epochs 20 --seeds 1337 1338 1339 [--labels types] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SEMISEG = REPO.parent / "shared" / "data" / "covid_semiseg"


def main() -> None:
    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["infection"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=defaults["size"])
    ap.add_argument("--epochs", type=int, default=defaults["epochs"])
    ap.add_argument("--folds", type=int, default=defaults["folds"])
    ap.add_argument("--variants", nargs="+", default=defaults["variants"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[defaults["seed"] + i for i in range(3)])
    ap.add_argument("--labels", choices=["binary", "types"], default="binary")
    ap.add_argument("--semiseg", type=Path, default=SEMISEG, help="the COVID-SemiSeg folder (default: ../shared's)")
    ap.add_argument("--base-filters", type=int, default=defaults["base_filters"])
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its default)")
    ap.add_argument("--tag", default=None, help="output name under bench/measured (default from the settings)")
    ap.add_argument("--reuse", action="store_true",
                    help="a seed whose JSON under this tag exists is read, not trained again")  # fmt: skip
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the training's epoch lines
    if a.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    from covidct.infection.data import load_sources
    from covidct.infection.train import cross_validate

    folder = a.semiseg / ("train_multiclass" if a.labels == "types" else "train")
    source = {"images": str(folder / "Imgs"), "masks": str(folder / "GT"), "labels": a.labels}
    groups = load_sources([source], a.size)
    settings = dict(
        classes=3 if a.labels == "types" else 1,
        base_filters=a.base_filters,
        norm=defaults["norm"],
        batch_size=defaults["batch_size"],
        learning_rate=defaults["learning_rate"],
        warmup_epochs=defaults["warmup_epochs"],
        augment=defaults["augment"],
        retries=defaults["retries"],
        tta=True,
    )
    tag = a.tag or f"infection_cv_{a.labels}_{a.size}px_{a.epochs}ep_bf{a.base_filters}"
    out = REPO / "bench" / "measured"
    print(f"{folder.name}: {len(groups)} slices at {a.size}px, {a.folds} folds, {a.epochs} epochs, seeds {a.seeds}, "
          f"{settings}", flush=True)  # fmt: skip
    runs = {}
    for seed in a.seeds:
        t0 = time.perf_counter()
        saved = out / f"{tag}_seed{seed}.json"
        if a.reuse and saved.exists():
            runs[seed] = cv = json.loads(saved.read_text())
            print(f"seed {seed}: read from {saved.name}", flush=True)
        else:
            cv = cross_validate(groups, a.variants, a.folds, a.epochs, seed=seed, **settings)
            runs[seed] = cv
            saved.write_text(json.dumps(cv, indent=1))
        for v, e in cv["variants"].items():
            tries = [len(f["attempts"]) for f in e["folds"]]
            if e["status"] != "ok":
                print(f"seed {seed} {v}: FAILED {e['reason']}", flush=True)
                continue
            last, best = e["at_last_epoch"], e["at_best_epoch"]
            extra = "".join(f", {k} {last[k]['mean']:.3f}+-{last[k]['sd']:.3f}" for k in last if k.endswith("_dice"))
            print(f"seed {seed} {v}: last epoch Dice {last['dice']['mean']:.3f}+-{last['dice']['sd']:.3f} "
                  f"(IoU {last['iou']['mean']:.3f}, sens {last['sensitivity']['mean']:.3f}, spec "
                  f"{last['specificity']['mean']:.3f}{extra}); best epoch {e['best_epoch']} Dice "
                  f"{best['dice']['mean']:.3f}; TTA last {e['at_last_epoch_tta']['dice']['mean']:.3f}; "
                  f"{e['seconds_per_epoch']} s/epoch; attempts per fold {tries}; "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
            if "threshold" in e:
                nested = e["threshold"]["nested"]

                def pooled(name: str, nested: dict = nested) -> float:
                    return nested.get(name, {}).get("mean", float("nan"))

                print(f"seed {seed} {v}: threshold {e['threshold']['threshold']:.2f} chosen on the held-out folds; "
                      f"nested Dice {nested['dice']['mean']:.3f}+-{nested['dice']['sd']:.3f} (thresholds "
                      f"{nested['thresholds']}) vs {nested['dice_at_fixed_threshold']['mean']:.3f} at "
                      f"{nested['fixed_threshold']}; pooled {pooled('pooled_dice'):.3f} vs "
                      f"{pooled('pooled_dice_at_fixed_threshold'):.3f}", flush=True)  # fmt: skip
    lines = [f"# {tag}: {folder.name}, {a.size}px, {a.folds}-fold CV by image, {a.epochs} epochs, seeds {a.seeds}",
             f"# settings {settings}",
             "# variant metric: mean +- sd over seeds of the per-seed fold means"]  # fmt: skip
    for v in a.variants:
        ok = [runs[s]["variants"][v] for s in a.seeds if runs[s]["variants"][v]["status"] == "ok"]
        n_fail = len(a.seeds) - len(ok)
        degenerate = sum(1 for s in a.seeds for f in runs[s]["variants"][v]["folds"] for t in f["attempts"]
                         if t["degenerate"])  # fmt: skip
        lines.append(f"{v}: {len(ok)} seeds ok, {n_fail} failed, {degenerate} degenerate attempts (retried)")
        if not ok:
            continue
        for where in ("at_last_epoch", "at_best_epoch", "at_last_epoch_tta"):
            for k in ok[0][where]:
                vals = [e[where][k]["mean"] for e in ok]
                sd_f = np.mean([e[where][k]["sd"] for e in ok])
                lines.append(f"  {where} {k}: {np.mean(vals):.4f} +- {np.std(vals, ddof=1) if len(vals) > 1 else 0:.4f}"
                             f" over seeds (mean fold sd {sd_f:.4f})")  # fmt: skip
        lines.append(f"  best epochs {[e['best_epoch'] for e in ok]}, s/epoch {[e['seconds_per_epoch'] for e in ok]}")
        calibrated = [e for e in ok if "threshold" in e]
        if calibrated:
            for name in ("dice", "dice_at_fixed_threshold", "pooled_dice", "pooled_dice_at_fixed_threshold"):
                vals = [e["threshold"]["nested"][name]["mean"] for e in calibrated if name in e["threshold"]["nested"]]
                if not vals:
                    continue
                lines.append(f"  threshold from the held-out folds, nested {name}: {np.mean(vals):.4f} +- "
                             f"{np.std(vals, ddof=1) if len(vals) > 1 else 0:.4f} over {len(vals)} seeds")  # fmt: skip
            lines.append(f"  thresholds chosen {[e['threshold']['threshold'] for e in calibrated]}")
    (out / f"{tag}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
