"""GPU throughput of the three networks and of the per-patient chain, in one run on one GPU (meant for a
`gpu=1` job, under 8 min).

1. lungmask R231 (the real architecture, random weights: time only) over one 300-slice CT: 256x256
   slices in batches of lung_mask.batch_size (20), as lungmask runs them, forward only.
2. The infection U-Net (`build_unet(256, classes=3)`, the default lesion-type head): one epoch over
   487 slices (the default synthetic training set) at batch 4, after one warm-up step.
3. The 3D CNN classifier at 64x128x128: training samples/s at batch 2, after one warm-up step, in float32
   and in the mixed_float16 policy that ``covidct.runtime.setup_keras`` sets on a GPU.
4. The per-patient chain in one process (``covidct.cli.run_chain``, what ``covidct run`` runs) on a
   synthetic 300-slice 512x512 series, with ``backend: lungmask`` (random R231 weights saved to a file
   and passed as the configured weights) and with ``backend: threshold``; and the lungmask mask step
   (``covidct.steps.segment_lungs``) alone on its resampled volume, once CUDA has started.

Keras runs on the framework ``KERAS_BACKEND`` names (TensorFlow by default); the header says which.
Prints one table. Without a GPU it says so and exits with status 2, measuring nothing; `--smoke`
runs the same code on tiny shapes on whatever device there is (a check of the script, not a
measurement).

    python bench/gpu.py [--smoke] [--slices 300] [--unet-slices 487] [--cnn-steps 5] [--no-chain]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from train_throughput import measure  # noqa: E402  (bench/ is on the path: python bench/gpu.py)

NO_GPU_STATUS = 2


def keras_gpus() -> tuple[str, int]:
    """``covidct.runtime.keras_gpus``, TensorFlow's GPUs each allowed to grow its memory as needed (torch
    shares the device)."""
    from covidct.runtime import keras_gpus as framework_gpus

    backend, count = framework_gpus()
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    return backend, count


def time_r231(slices: int, size: int, batch: int, device: str) -> float:
    """Seconds of lungmask R231's forward pass over ``slices`` slices of ``size`` pixels."""
    import torch
    from lungmask.resunet import UNet

    torch.manual_seed(0)
    model = UNet(n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False)
    model = model.to(device).eval()
    volume = torch.rand(slices, 1, size, size)

    def run() -> None:
        with torch.no_grad():
            for i in range(0, slices, batch):
                model(volume[i : i + batch].to(device)).argmax(1).cpu()
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        model(volume[:batch].to(device))  # warm-up: kernels chosen, memory allocated
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def time_unet_epoch(n_slices: int, size: int, batch: int) -> float:
    """Seconds of one training epoch of the infection U-Net over ``n_slices`` random slices."""
    import keras
    import numpy as np

    from covidct.infection.unet import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet(size=size, classes=3)
    rng = np.random.default_rng(0)
    x = rng.random((n_slices, size, size, 1), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 3, (n_slices, size, size)), 3).astype(np.float32)
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # warm-up: fit's graph building
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return time.perf_counter() - t0


def time_chain(work: Path, slices: int, thickness: float, matrix: int) -> dict[str, float]:
    """Seconds of ``run_chain`` on one synthetic series with each lung-mask backend, and of the lungmask
    mask step alone on the resampled volume it wrote (CUDA started by the chain before it)."""
    import torch
    from lungmask.resunet import UNet

    from covidct import steps
    from covidct.cli import run_chain
    from covidct.demo.spec import PhantomSpec
    from covidct.demo.writer import write_patient

    # bench/per_patient.py's series at 300 slices of 1 mm and 512 px of 0.7 mm (the mask runs on the volume
    # resampled to resample.spacing_mm, 200 slices of 1.5 mm)
    spec = PhantomSpec("gpu300", 4242, True, 30.0, slices, thickness, matrix, 0.7 * 512 / matrix)
    raw = work / "raw" / spec.patient_id
    write_patient(spec, raw, work / "truth")
    torch.manual_seed(0)
    weights = work / "r231_random.pth"
    net = UNet(n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False)
    with torch.no_grad():  # random weights mark no lung, and the chain stops at an empty mask: a bias towards
        net.last.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))  # "right lung" everywhere lets every step run
    torch.save(net.state_dict(), weights)
    os.environ.setdefault("COVIDCT_ANON_KEY", "benchmark-key-not-secret")
    out: dict[str, float] = {}
    for backend in ("lungmask", "threshold"):
        t0 = time.perf_counter()
        p = run_chain(raw, work / backend, spec.patient_id, backend=backend, weights=str(weights))
        out[backend] = time.perf_counter() - t0
    mask = work / "again"
    t0 = time.perf_counter()
    steps.segment_lungs(
        p["resampled"],
        mask / "mask.nii.gz",
        mask / "labels.nii.gz",
        mask / "mask.json",
        spec.patient_id,
        backend="lungmask",
        weights=str(weights),
    )
    out["mask_step"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on any device: checks the script only")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--r231-batch", type=int, default=20)
    ap.add_argument("--unet-slices", type=int, default=487)
    ap.add_argument("--unet-batch", type=int, default=4)
    ap.add_argument("--cnn-batch", type=int, default=2)
    ap.add_argument("--cnn-steps", type=int, default=5)
    ap.add_argument("--no-chain", action="store_true", help="leave the per-patient chain out")
    ap.add_argument("--work", type=Path, default=None, help="the chain's folder (default: a temporary one)")
    a = ap.parse_args()
    import torch

    torch_cuda = torch.cuda.is_available()
    # Keras's framework (TensorFlow takes seconds to import) is asked only when torch sees a GPU, or for --smoke
    backend, keras_gpus_seen = keras_gpus() if torch_cuda or a.smoke else ("not asked", 0)
    if not a.smoke and not (torch_cuda and keras_gpus_seen):
        print(
            f"no GPU visible (torch.cuda.is_available(): {torch_cuda}; Keras ({backend}) GPUs: "
            f"{keras_gpus_seen if torch_cuda else 'not asked'}): nothing measured. Run this in a job with one GPU "
            "(resources gpu=1), or with --smoke to check the script.",
            file=sys.stderr,
        )
        sys.exit(NO_GPU_STATUS)
    if a.smoke:
        slices, r231_size, unet_slices, unet_size, cnn_shape, cnn_steps = 4, 64, 4, 32, (16, 32, 32), 1
        chain_slices, chain_thickness, chain_matrix = 20, 3.0, 128
    else:
        slices, r231_size, unet_slices, unet_size, cnn_shape, cnn_steps = (
            a.slices,
            256,
            a.unet_slices,
            256,
            (64, 128, 128),
            a.cnn_steps,
        )
        chain_slices, chain_thickness, chain_matrix = a.slices, 1.0, 512
    device = "cuda" if torch_cuda else "cpu"
    name = torch.cuda.get_device_name(0) if torch_cuda else f"CPU ({os.cpu_count()} cores)"
    smoke = "; SMOKE: tiny shapes, not a measurement" if a.smoke else ""
    print(f"device: {name}; torch CUDA {torch_cuda}; Keras on {backend}, its GPUs {keras_gpus_seen}{smoke}")
    rows = []
    r231 = time_r231(slices, r231_size, a.r231_batch, device)
    rows.append((f"lungmask R231, {slices} slices {r231_size} px, batch {a.r231_batch}", f"{r231:.2f} s per CT"))
    epoch = time_unet_epoch(unet_slices, unet_size, a.unet_batch)
    rows.append(
        (
            f"infection U-Net epoch, {unet_slices} slices {unet_size} px, batch {a.unet_batch}",
            f"{epoch:.1f} s ({unet_slices / epoch:.1f} slices/s)",
        )
    )
    for policy in ("float32", "mixed_float16") if torch_cuda else ("float32",):
        sps = measure(cnn_shape, a.cnn_batch, cnn_steps, policy)  # bench/train_throughput.py's step loop
        rows.append(
            (f"3D CNN training, {'x'.join(map(str, cnn_shape))}, batch {a.cnn_batch}, {policy}", f"{sps:.2f} samples/s")
        )
    if not a.no_chain:
        with tempfile.TemporaryDirectory() as tmp:
            chain = time_chain(a.work or Path(tmp), chain_slices, chain_thickness, chain_matrix)
        what = f"per-patient chain (run_chain), {chain_slices} slices {chain_matrix}x{chain_matrix}"
        rows.append((f"{what}, backend lungmask", f"{chain['lungmask']:.1f} s"))
        rows.append((f"{what}, backend threshold", f"{chain['threshold']:.1f} s"))
        rows.append(("its lungmask mask step alone (steps.segment_lungs, CUDA started)", f"{chain['mask_step']:.1f} s"))
    width = max(len(what) for what, _ in rows)
    print(f"{'what':<{width}}  result")
    for what, result in rows:
        print(f"{what:<{width}}  {result}")


if __name__ == "__main__":
    main()
