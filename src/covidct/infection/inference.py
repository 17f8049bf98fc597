"""Using a trained infection U-Net: patient volumes (infection and lesion types), severity, test folders.

Predictions are resized back to the padded square, cropped, thresholded (the sidecar's threshold)
and kept only inside the lung mask. A lesion-type model also labels each infected voxel ground-glass
(1) or consolidation (2), whichever of the two is likelier. Severity is infected lung volume / lung
volume x 100.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.infection.data import load_image_folder, prepare_slice, restore_slice
from covidct.infection.train import evaluate, predict
from covidct.infection.unet import THRESHOLD, infection_probability, load_model, mask_metrics


def load_unet(path: str | Path, sidecar: str | Path | None = None):
    """The saved U-Net and its sidecar (size, hu_window, threshold, classes); the sidecar is ``sidecar``,
    else the JSON beside the model."""
    from covidct.io import read_json

    return load_model(path), read_json(sidecar if sidecar is not None else Path(path).with_suffix(".json"))


def segment_volume(
    model, sidecar: dict, hu: np.ndarray, lung: np.ndarray, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray | None]:
    """Infection mask (uint8, z/y/x) of an HU volume, predicted slice by slice inside ``lung``, and the
    lesion types of its voxels (1 ground-glass, 2 consolidation, 0 elsewhere; None for a binary model).
    Test-time flips when the sidecar says ``tta``."""
    size, window = int(sidecar["size"]), tuple(sidecar["hu_window"])
    threshold, tta = float(sidecar.get("threshold", THRESHOLD)), bool(sidecar.get("tta", False))
    classes = int(sidecar.get("classes", 1))
    infected = np.zeros(hu.shape, np.uint8)
    types = np.zeros(hu.shape, np.uint8) if classes > 1 else None
    zs = np.nonzero(lung.reshape(len(lung), -1).any(axis=1))[0]
    for start in range(0, len(zs), batch_size):
        chunk = zs[start : start + batch_size]
        x = np.stack([prepare_slice(hu[z], size, window) for z in chunk])[..., None]
        prob = predict(model, x, batch_size, tta=tta)
        p_inf = infection_probability(prob)
        for i, z in enumerate(chunk):
            infected[z] = (restore_slice(p_inf[i], hu.shape[1:]) >= threshold) & (lung[z] > 0)
            if types is not None:
                consolidation = restore_slice(prob[i, ..., 2] - prob[i, ..., 1], hu.shape[1:]) > 0
                types[z] = np.where(infected[z] > 0, np.where(consolidation, 2, 1), 0)
    return infected, types


def severity(infection: np.ndarray, lung: np.ndarray) -> float:
    """Infected lung volume / lung volume x 100 (same grid, so a voxel count ratio)."""
    n_lung = int(np.count_nonzero(lung))
    return 100.0 * int(np.count_nonzero(infection & (lung > 0))) / n_lung if n_lung else 0.0


def evaluate_folder(
    model_path: str | Path,
    images: str | Path,
    masks: str | Path,
    out_json: str | Path,
    threshold: float | None = None,
    labels: str = "binary",
    sidecar: str | Path | None = None,
) -> dict:
    """Per-image and mean Dice, IoU, pixel accuracy, sensitivity, specificity of a saved U-Net.

    Works on any folder pair in the ``Imgs/`` + ``GT/`` layout; images are resized to the model's
    input size. The threshold and test-time flips come from the model's sidecar when there is one
    (``threshold`` overrides). ``labels: types`` masks (0/1/2) add per-class Dice for a lesion-type model.
    """
    from covidct.io import read_json, write_json

    model = load_model(model_path)
    side = Path(sidecar) if sidecar is not None else Path(model_path).with_suffix(".json")
    settings = read_json(side) if side.is_file() else {}
    threshold = float(settings.get("threshold", THRESHOLD)) if threshold is None else float(threshold)
    size = int(model.input_shape[1])
    names, x, y = load_image_folder(images, masks, size, labels)
    prob = predict(model, x, 4, tta=bool(settings.get("tta", False)))
    p_inf = infection_probability(prob)
    per_image = {name: mask_metrics(y[i, ..., 0] > 0, p_inf[i] >= threshold) for i, name in enumerate(names)}
    summary = evaluate(y, prob, threshold)
    keys = ("dice", "iou", "accuracy", "sensitivity", "specificity")
    result = {
        "n_images": len(names),
        "threshold": threshold,
        "tta": bool(settings.get("tta", False)),
        "mean": {k: summary[k] for k in keys},  # evaluate's per-image means of the same masks
        "dice_pooled": summary["dice_pooled"],
        "per_image": per_image,
    }
    if labels == "types" and prob.shape[-1] == 3:
        result["per_class"] = {k: v for k, v in summary.items() if k.startswith(("ground_glass", "consolidation"))}
    write_json(out_json, result)
    return result
