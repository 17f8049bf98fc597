"""What a training says while it runs: one progress line per epoch with an ETA, and a warning up front
when a CPU-only training will be long."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from covidct import runtime
from covidct.runtime import Progress, duration


def test_eta_is_epochs_left_times_the_mean_epoch_time(caplog):
    progress = Progress("U-Net", 4, gpu=False, cheaper="infection.size 128")
    with caplog.at_level(logging.INFO, logger="covidct.runtime"):
        progress.epoch("dice_ce fold 1/2 epoch 1/2", 0.5, "held-out Dice", 0.25, 10.0)
        progress.epoch("dice_ce fold 1/2 epoch 2/2", 0.4, "held-out Dice", None, 30.0)
    first, second = (r.getMessage() for r in caplog.records)
    assert first == (
        "U-Net dice_ce fold 1/2 epoch 1/2: loss 0.5000, held-out Dice 0.2500; 10.0 s; "
        "3 of 4 planned epochs left, ETA 30 s"
    )
    assert second.endswith("held-out Dice n/a; 30.0 s; 2 of 4 planned epochs left, ETA 40 s")
    assert progress.estimate() == 80.0 and duration(2 * 3600 + 60) == "2 h 01 min"


def test_a_long_cpu_training_is_warned_about_after_its_first_epoch(caplog, monkeypatch):
    monkeypatch.setattr(runtime, "LONG_CPU_SECONDS", 100.0)
    with caplog.at_level(logging.INFO, logger="covidct.runtime"):
        Progress("short", 9, gpu=False, cheaper="x").epoch("e1", 1.0, "m", 0.0, 10.0)  # 90 s: no warning
        Progress("on a GPU", 90, gpu=True, cheaper="x").epoch("e1", 1.0, "m", 0.0, 10.0)
        long = Progress("U-Net", 90, gpu=False, cheaper="infection.size 128, infection.folds 3")
        long.epoch("e1", 1.0, "m", 0.0, 10.0)
        long.epoch("e2", 1.0, "m", 0.0, 10.0)  # said once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "U-Net: no GPU is visible and this training is estimated at 15 min 00 s on the CPU (90 epochs x 10 s for "
        "the first); cheaper settings: infection.size 128, infection.folds 3"
    ]


def test_the_cost_is_said_before_the_first_epoch_from_the_settings(caplog, monkeypatch):
    monkeypatch.setattr(runtime, "LONG_CPU_SECONDS", 100.0)
    with caplog.at_level(logging.INFO, logger="covidct.runtime"):
        progress = Progress("classifier", 30, gpu=False, cheaper="fewer train.epochs")
        progress.forecast(60.0, "3 training patients x 20 s per patient and epoch, measured")
        progress.epoch("epoch 1/30", 0.7, "val_auc", 0.5, 1.0)  # faster than reckoned: no second warning
    info, warning, first = (r.getMessage() for r in caplog.records)
    assert info == (
        "classifier: 30 epochs planned, about 30 min 00 s on the CPU (3 training patients x 20 s per patient "
        "and epoch, measured)"
    )
    assert warning.startswith("classifier: no GPU is visible and this training is estimated at 30 min 00 s on the CPU")
    assert warning.endswith("cheaper settings: fewer train.epochs") and first.startswith("classifier epoch 1/30: ")


def test_gpu_visible_asks_the_framework_keras_runs_on():
    """Under KERAS_BACKEND=torch the GPU question goes to torch and TensorFlow is never imported (a GPU
    machine with PyTorch but no TensorFlow can train); under the default it goes to TensorFlow."""
    code = (
        "import sys, torch; from covidct import runtime; "
        "print(runtime.gpu_visible() == torch.cuda.is_available(), 'tensorflow' in sys.modules)"
    )
    env_torch = {**os.environ, "KERAS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", code], env=env_torch, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]
    env_tf = {**env_torch, "KERAS_BACKEND": "tensorflow"}
    code_tf = "import sys; from covidct import runtime; runtime.gpu_visible(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code_tf], env=env_tf, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True"], out.stderr[-2000:]
