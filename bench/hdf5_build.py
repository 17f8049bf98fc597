"""HDF5 build: MB/s and peak memory of `covidct.steps.build_hdf5` (the rule's step), N synthetic patients, 64x128x128.

Writes N random-but-lung-like float32 arrays as .npy (as export_npy does), then builds
train.h5/val.h5/test.h5 in a child process and reports its wall time, input MB/s and peak RSS.
Peak RSS for two N shows whether memory grows with the cohort.

    python bench/hdf5_build.py [--n 50 200] [--work /tmp/covidct-hdf5-bench]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = """
import json, sys, time
from covidct.steps import build_hdf5
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
build_hdf5(**args)
print(time.perf_counter() - t0)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--work", type=Path, default=Path("/tmp/covidct-hdf5-bench"))
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128])
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    shape = tuple(a.shape)
    rng = np.random.default_rng(0)
    npys = []
    for i in range(max(a.n)):
        path = a.work / f"p{i:04d}.npy"
        if not path.exists():
            arr = np.zeros(shape, np.float32)  # air outside the lung, lung-like texture inside
            arr[8:-8, 16:-16, 16:-16] = np.clip(
                rng.normal(0.11, 0.05, (shape[0] - 16, shape[1] - 32, shape[2] - 32)), 0, 1
            )
            np.save(path, arr)
        npys.append(str(path))
    print(f"{'N':>5} {'seconds':>8} {'input MB':>9} {'MB/s':>7} {'peak RSS MB':>12} {'train.h5 MB':>12}")
    for n in a.n:
        patients = [
            {"patient_id": f"p{i:04d}", "label": str(i % 2), "score": str(float(i % 90)), "split": ""} for i in range(n)
        ]
        args = {
            "npy": npys[:n],
            "patients": patients,
            "out_train": str(a.work / f"train{n}.h5"),
            "out_val": str(a.work / f"val{n}.h5"),
            "out_test": str(a.work / f"test{n}.h5"),
            "out_split": str(a.work / f"split{n}.tsv"),
            "shape": list(shape),
        }
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, check=True
        )
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        seconds = float(out.stdout.strip().splitlines()[-1])
        mb = n * np.prod(shape) * 4 / 1e6
        size = (a.work / f"train{n}.h5").stat().st_size / 1e6
        note = "" if peak_mb > before / 1024 else " (max so far)"
        print(f"{n:>5} {seconds:>8.1f} {mb:>9.0f} {mb / seconds:>7.1f} {peak_mb:>12.0f}{note} {size:>12.1f}")


if __name__ == "__main__":
    main()
