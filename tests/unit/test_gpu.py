"""Device placement in a job with one GPU (resources gpu=1): torch and TensorFlow both see it and run
on it. Skipped without CUDA (MONAI's skip_if_no_cuda), never deleted; bench/gpu.py says why it
measures nothing without a GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO

torch = pytest.importorskip("torch")

skip_if_no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


@skip_if_no_cuda
def test_torch_runs_on_the_gpu():
    x = torch.ones(4, 4, device="cuda")
    y = (x @ x).sum()
    assert y.device.type == "cuda" and y.item() == 64.0


@skip_if_no_cuda
def test_tensorflow_runs_on_the_gpu():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    assert gpus, "torch sees CUDA but TensorFlow sees no GPU: check the CUDA libraries TensorFlow loads"
    with tf.device("/GPU:0"):
        y = tf.reduce_sum(tf.ones((4, 4)) @ tf.ones((4, 4)))
    assert "GPU" in y.device and float(y) == 64.0


@skip_if_no_cuda
def test_lungmask_network_lands_on_the_gpu():
    from lungmask.resunet import UNet

    model = UNet(n_classes=3, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False).cuda()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 64, 64, device="cuda"))
    assert out.shape == (1, 3, 64, 64) and out.device.type == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the bench would measure")
def test_gpu_bench_without_a_gpu_says_so_and_measures_nothing():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no GPU visible" in proc.stderr and "Traceback" not in proc.stderr
    assert "s per CT" not in proc.stdout
