"""Training throughput (samples/s) of the 3D CNN at the real input shape, per batch size.

Runs a few optimizer steps of the original study's network (Conv3D 64-64-128-256, Dense 512)
on random data of shape 64x128x128 for the classifier, after one warm-up step, and prints
samples/s. On a GPU the mixed-precision policy is measured too.

    python bench/train_throughput.py [--batches 2 4 8] [--steps 3] [--shape 64 128 128]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(shape, batch: int, steps: int, policy: str) -> float:
    import keras
    import numpy as np

    from covidct.models.cnn3d import build_classifier

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = build_classifier(shape)
    x = np.random.default_rng(0).random((batch, *shape, 1), dtype=np.float32)
    y = (np.arange(batch) % 2).astype(np.float32)
    model.train_on_batch(x, y)  # warm-up: graph building
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128])
    a = ap.parse_args()
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    policies = ["float32", "mixed_float16"] if gpu else ["float32"]
    device = (
        "GPU "
        + tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get("device_name", "")
        if gpu
        else f"CPU ({os.cpu_count()} cores)"
    )
    print(f"device: {device}; shape {tuple(a.shape)}; {a.steps} timed steps after 1 warm-up step")
    print(f"{'batch':>5} {'policy':>14} {'samples/s':>10} {'s/step':>8}")
    for policy in policies:
        for batch in a.batches:
            sps = measure(tuple(a.shape), batch, a.steps, policy)
            print(f"{batch:>5} {policy:>14} {sps:>10.2f} {batch / sps:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
