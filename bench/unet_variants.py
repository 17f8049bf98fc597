"""The three U-Net training variants of the second study on COVID-SemiSeg (50 slices in ../shared).

A fixed 40/10 split by image (seeded), the pipeline's training loop
(``covidct.segmentation.train_unet``: per-image flips, rot90, zoom, rotation, contrast),
validation Dice/IoU/pixel accuracy at threshold 0.5, and training time per epoch.

Two val Dice figures per variant: that of the best epoch (the checkpoint the pipeline
keeps; chosen on these same 10 slices, so optimistic) and that of the last epoch (a fixed
schedule, no selection on val).

    python bench/unet_variants.py [--size 256] [--base 32] [--epochs 40]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SEMISEG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "covid_semiseg" / "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--variants", nargs="+", default=["bce", "bce_iou", "dice"])
    a = ap.parse_args()
    import numpy as np

    from covidct.segmentation import load_image_folder, train_unet

    names, x, y = load_image_folder(SEMISEG / "Imgs", SEMISEG / "GT", a.size)
    order = np.random.default_rng(0).permutation(len(names))
    tr, va = order[:40], order[40:]
    print(
        f"COVID-SemiSeg: {len(tr)} train / {len(va)} val slices at {a.size}x{a.size}, base filters {a.base}, "
        f"{a.epochs} epochs, batch {a.batch}, augment {not a.no_augment}"
    )
    print(
        f"{'variant':>8} {'s/epoch':>8} {'best ep':>7} {'best Dice':>9} {'IoU':>6} {'acc':>6} {'last Dice':>9}",
        flush=True,
    )
    for variant in a.variants:
        t0 = time.perf_counter()
        _, history, best = train_unet(
            x[tr], y[tr], x[va], y[va], variant, a.epochs, a.batch, a.base, augment=not a.no_augment
        )
        per_epoch = (time.perf_counter() - t0) / len(history)
        print(
            f"{variant:>8} {per_epoch:>8.1f} {best['epoch']:>7} {best['val_dice']:>9.3f} {best['val_iou']:>6.3f} "
            f"{best['val_accuracy']:>6.3f} {history[-1]['val_dice']:>9.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
