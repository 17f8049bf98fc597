"""The three U-Net training variants of the second study on COVID-SemiSeg (50 slices in ../shared):
a fixed 40/10 split by image, random flips and 90-degree rotations as augmentation,
validation Dice/IoU/pixel accuracy (threshold 0.5) of the epoch with the best val Dice,
and training time per epoch on this machine.

    python bench/unet_variants.py [--size 256] [--base 32] [--epochs 60]
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
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--variants", nargs="+", default=["bce", "bce_iou", "dice"])
    a = ap.parse_args()
    import keras
    import numpy as np

    from covidct.segmentation import build_unet, load_image_folder, mean_metrics

    names, x, y = load_image_folder(SEMISEG / "Imgs", SEMISEG / "GT", a.size)
    order = np.random.default_rng(0).permutation(len(names))
    tr, va = order[:40], order[40:]
    y = y.astype(np.float32)
    rng = np.random.default_rng(1)
    print(f"COVID-SemiSeg: {len(tr)} train / {len(va)} val slices at {a.size}x{a.size}, base filters {a.base}, "
          f"{a.epochs} epochs")
    print(f"{'variant':>8} {'s/epoch':>8} {'best epoch':>10} {'val Dice':>9} {'val IoU':>8} {'val acc':>8}")
    for variant in a.variants:
        keras.utils.set_random_seed(0)
        model = build_unet(a.size, a.base, variant)
        best = (-1.0, 0, {})
        t0 = time.perf_counter()
        for epoch in range(a.epochs):
            k = rng.integers(0, 4)
            flip = rng.random() < 0.5
            xa, ya = np.rot90(x[tr], k, axes=(1, 2)), np.rot90(y[tr], k, axes=(1, 2))
            if flip:
                xa, ya = xa[:, :, ::-1], ya[:, :, ::-1]
            model.fit(np.ascontiguousarray(xa), np.ascontiguousarray(ya), batch_size=4, epochs=1, verbose=0)
            pred = np.asarray(model.predict(x[va], verbose=0)) >= 0.5
            m = mean_metrics(list(y[va, ..., 0]), list(pred[..., 0]))
            if m["dice"] > best[0]:
                best = (m["dice"], epoch + 1, m)
        per_epoch = (time.perf_counter() - t0) / a.epochs
        m = best[2]
        print(f"{variant:>8} {per_epoch:>8.1f} {best[1]:>10} {m['dice']:>9.3f} {m['iou']:>8.3f} {m['accuracy']:>8.3f}",
              flush=True)


if __name__ == "__main__":
    main()
