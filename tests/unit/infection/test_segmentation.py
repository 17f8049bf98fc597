"""Infection segmentation: metrics by hand, the U-Net (normalized, two heads), folder loading (binary and
lesion-type masks, in the input space), a short training that learns, segment-eval on a saved model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from covidct.errors import CovidctError
from covidct.infection.data import load_image_folder
from covidct.infection.inputs import CLIP, INPUT_SPACE
from covidct.infection.unet import build_unet, load_model, mask_metrics, mean_metrics
from covidct.io import write_json
from covidct.testing.slices import chest_slice, export_8bit
from helpers import require_shared_data


def test_mask_metrics_by_hand():
    truth = np.zeros((4, 4), np.uint8)
    truth[0, :] = 1  # 4 lesion pixels
    pred = np.zeros((4, 4), np.uint8)
    pred[0, :2] = 1  # 2 TP
    pred[3, 3] = 1  # 1 FP; 2 FN; 11 TN
    m = mask_metrics(truth, pred)
    assert m["dice"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert m["iou"] == pytest.approx(2 / 5)
    assert m["accuracy"] == pytest.approx(13 / 16)
    assert m["sensitivity"] == pytest.approx(2 / 4)
    assert m["specificity"] == pytest.approx(11 / 12)


def test_mask_metrics_empty_cases():
    empty = np.zeros((3, 3))
    full = np.ones((3, 3))
    assert mask_metrics(empty, empty) == {
        "dice": 1.0,
        "iou": 1.0,
        "accuracy": 1.0,
        "sensitivity": 1.0,
        "specificity": 1.0,
    }
    m = mask_metrics(full, empty)  # everything missed
    assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["sensitivity"] == 0.0 and m["accuracy"] == 0.0
    m = mask_metrics(empty, full)  # all false positives
    assert m["dice"] == 0.0 and m["specificity"] == 0.0
    assert mean_metrics([full, empty], [full, full])["dice"] == pytest.approx(0.5)


def test_unet_architecture_matches_the_study_with_normalization():
    model = build_unet(256, 32, "bce")
    assert model.input_shape == (None, 256, 256, 1) and model.output_shape == (None, 256, 256, 1)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256, 512, 512,
                                          256, 256, 128, 128, 64, 64, 32, 32, 1]  # fmt: skip
    assert sum(layer.__class__.__name__ == "Conv2DTranspose" for layer in model.layers) == 4
    # every 3x3 convolution is normalized (BatchNorm by default) before its ReLU
    assert sum(layer.__class__.__name__ == "BatchNormalization" for layer in model.layers) == 18
    assert model.layers[-1].activation.__name__ == "sigmoid"
    plain = build_unet(64, 4, "dice", norm="none")
    assert not any("Normalization" in layer.__class__.__name__ for layer in plain.layers)
    group = build_unet(64, 4, "dice", norm="group")
    assert sum(layer.__class__.__name__ == "GroupNormalization" for layer in group.layers) == 18
    types = build_unet(64, 4, "dice_ce", classes=3)
    assert types.output_shape == (None, 64, 64, 3) and types.layers[-1].activation.__name__ == "softmax"
    with pytest.raises(ValueError, match="unknown U-Net loss"):
        build_unet(64, 4, "focal")
    with pytest.raises(ValueError, match="output classes"):
        build_unet(64, 4, "dice", classes=2)


def test_losses_on_known_outputs(tmp_path):
    """Soft Dice pooled over the batch, cross-entropy, and their sum; a saved model loads with its loss."""
    import keras

    from covidct.infection.unet import losses

    fns = losses()
    y = np.zeros((2, 4, 4, 1), np.float32)
    y[0, :2] = 1  # 8 lesion pixels in the batch
    perfect, empty = y.copy(), np.zeros_like(y)
    assert float(fns["dice"](y, perfect)) == pytest.approx(0.0, abs=1e-6)
    # nothing predicted: 1 - smooth / (8 + smooth)
    assert float(fns["dice"](y, empty)) == pytest.approx(1 - 1 / 9, abs=1e-6)
    half = np.full_like(y, 0.5)
    assert float(fns["bce"](y, half)) == pytest.approx(np.log(2), abs=1e-4)
    assert float(fns["dice_ce"](y, half)) == pytest.approx(float(fns["bce"](y, half)) + float(fns["dice"](y, half)))
    # softmax head: Dice over the foreground classes only (1 and 2), averaged
    onehot = np.eye(3, dtype=np.float32)[np.array([[0, 1], [2, 2]])][None]
    assert float(fns["dice"](onehot, onehot)) == pytest.approx(0.0, abs=1e-6)
    model = build_unet(32, 2, "dice_ce", classes=3)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype(np.float32)
    assert np.allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-5)
    assert keras.saving.get_registered_name(fns["dice_ce"]) == "covidct>dice_ce_loss"


def test_load_covid_semiseg_folder():
    root = require_shared_data("covid_semiseg", "train")
    names, x, y = load_image_folder(root / "Imgs", root / "GT", size=128)
    assert len(names) == 50 and x.shape == (50, 128, 128, 1) and y.shape == (50, 128, 128, 1)
    assert set(np.unique(y)) == {0, 1}
    assert x.min() >= CLIP[0] and x.max() <= CLIP[1]  # calibrated: aerated lung near 0, soft tissue near 1
    assert abs(float(np.median(x[y == 0]))) < 0.25
    assert 0.005 < y.mean() < 0.3  # infection is a minority of pixels


def test_load_lesion_type_masks_and_refuse_wrong_labels(tmp_path):
    """train_multiclass's palette PNGs hold 0/1/2; their union is the binary set's infection."""
    multi = require_shared_data("covid_semiseg", "train_multiclass")
    binary = require_shared_data("covid_semiseg", "train")
    names, _, y = load_image_folder(multi / "Imgs", multi / "GT", size=64, labels="types")
    _, _, yb = load_image_folder(binary / "Imgs", binary / "GT", size=64)
    assert set(np.unique(y)) == {0, 1, 2} and len(names) == 50
    assert np.array_equal(y > 0, yb > 0)
    # a binary 0/255 mask is not a lesion-type mask
    with pytest.raises(CovidctError, match="lesion-type mask .* found values"):
        load_image_folder(binary / "Imgs", binary / "GT", size=64, labels="types")
    with pytest.raises(CovidctError, match="unknown mask labels"):
        load_image_folder(binary / "Imgs", binary / "GT", size=64, labels="ggo")


def _synthetic_slices(n: int, seed: int):
    """8-bit exports of synthetic chest slices with 1-3 ground-glass lesions (masks 0/255), in three lung windows."""
    windows = ((-1250, 250), (-1100, 100), (-1000, 0))
    images, masks = [], []
    for i in range(n):
        s = chest_slice(120, 150, seed=seed + i, n_lesions=1 + i % 3)
        images.append(export_8bit(s.hu, *windows[i % 3]))
        masks.append(s.lesions.astype(np.uint8) * 255)
    return images, masks


def test_short_training_learns_and_segment_eval_cli(tmp_path):
    """A small U-Net trained on slices in the input space finds the lesions of held-out exports; segment-eval
    scores the saved model on the masks' own grid, over the whole image or inside the lungs."""
    import keras

    keras.utils.set_random_seed(0)
    images, masks = _synthetic_slices(48, seed=0)
    for d in ("Imgs", "GT"):
        (tmp_path / d).mkdir()
    for i, (img, mask) in enumerate(zip(images, masks)):
        Image.fromarray(img).save(tmp_path / "Imgs" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "GT" / f"{i}.png")
    names, x, y = load_image_folder(tmp_path / "Imgs", tmp_path / "GT", size=64)
    order = np.argsort([int(n) for n in names])
    x, y = x[order], (y[order] > 0).astype(np.float32)
    model = build_unet(64, 8, "dice_ce", learning_rate=1e-3)
    model.fit(x[:40], y[:40], batch_size=8, epochs=25, verbose=0)
    pred = np.asarray(model.predict(x[40:], verbose=0)) >= 0.5
    dice = mean_metrics(list(y[40:, ..., 0]), list(pred[..., 0]))["dice"]
    empty = mean_metrics(list(y[40:, ..., 0]), [np.zeros_like(p[..., 0]) for p in pred])["dice"]
    assert empty == 0.0 and dice > 0.6, dice
    # evaluate the saved model on the held-out folder pair, through the command line
    model.save(tmp_path / "unet.keras")
    write_json(tmp_path / "unet.json", {"size": 64, "input_space": INPUT_SPACE, "threshold": 0.5, "classes": 1})
    held = tmp_path / "held"
    for d in ("Imgs", "GT"):
        (held / d).mkdir(parents=True)
        for i in range(40, 48):
            (held / d / f"{i}.png").write_bytes((tmp_path / d / f"{i}.png").read_bytes())
    results = {}
    for lungs in (None, "auto"):
        cmd = [
            sys.executable,
            "-m",
            "covidct.cli",
            "segment-eval",
            "--model",
            str(tmp_path / "unet.keras"),
            "--images",
            str(held / "Imgs"),
            "--masks",
            str(held / "GT"),
            "--out",
            str(tmp_path / f"{lungs}.json"),
        ]
        res = subprocess.run(cmd + (["--lungs", lungs] if lungs else []), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        results[lungs] = json.loads((tmp_path / f"{lungs}.json").read_text())  # fmt: skip
    result = results[None]
    assert result["n_images"] == 8 and set(result["per_image"]) == {str(i) for i in range(40, 48)}
    assert result["mean"]["dice"] == pytest.approx(dice, abs=0.1)  # scored on the 120 x 150 masks
    assert results["auto"]["restricted_to_lungs"] == "2D lung finder"
    assert results["auto"]["mean"]["specificity"] >= result["mean"]["specificity"]
