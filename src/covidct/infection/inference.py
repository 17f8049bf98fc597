"""Using a trained infection U-Net: patient volumes (infection and lesion types), severity, test folders.

Slices reach the network through the input space (``covidct.infection.inputs``: the volume's lung box,
its anchors); predictions are brought back onto the slice's grid, thresholded (the sidecar's
threshold) and kept only inside the lung mask. A lesion-type model also labels each infected voxel
ground-glass (1) or consolidation (2), whichever of the two is likelier. Severity is infected lung
volume / lung volume x 100.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.infection.data import frame_of_image, image_pairs, label_map, read_gray
from covidct.infection.inputs import INPUT_SPACE, frame_volume, from_input, to_input
from covidct.infection.train import evaluate_lists, predict
from covidct.infection.unet import THRESHOLD, infection_probability, load_model, mask_metrics
from covidct.io import read_json, write_json
from covidct.severity.scores import percent_opacity as severity  # noqa: F401 (PO has one home)


def check_sidecar(settings: dict, path: str | Path) -> dict:
    """A model's sidecar, refused when its input space is not this version's (a model trained on other
    inputs would read every patient wrong)."""
    space = settings.get("input_space")
    if space != INPUT_SPACE:
        raise CovidctError(
            f"this infection U-Net was trained on another input space ({space or 'whole slices, standardized'}); "
            f"this version feeds {INPUT_SPACE['name']} v{INPUT_SPACE['version']}: retrain it "
            f"(train_infection_unet)",
            path=path,
        )
    return settings


def load_unet(path: str | Path, sidecar: str | Path | None = None):
    """The saved U-Net and its sidecar (size, input space, threshold, classes); the sidecar is ``sidecar``,
    else the JSON beside the model."""
    side = Path(sidecar) if sidecar is not None else Path(path).with_suffix(".json")
    return load_model(path), check_sidecar(read_json(side), side)


#: Slices framed and handed to one ``predict`` call: Keras pays a fixed cost per call (0.1-0.2 s on CPU),
#: and 64 slices at 256 px are 17 MB of input.
PREDICT_CHUNK = 64


def segment_volume(
    model, sidecar: dict, hu: np.ndarray, lung: np.ndarray, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray | None]:
    """Infection mask (uint8, z/y/x) of an HU volume, predicted slice by slice inside ``lung`` (``batch_size``
    slices per network batch), and the lesion types of its voxels (1 ground-glass, 2 consolidation, 0
    elsewhere; None for a binary model). Every slice is framed by the whole volume's lungs (one box, one
    pair of anchors). Test-time flips when the sidecar says ``tta``."""
    size = int(sidecar["size"])
    threshold, tta = float(sidecar.get("threshold", THRESHOLD)), bool(sidecar.get("tta", False))
    classes = int(sidecar.get("classes", 1))
    lung = np.asarray(lung) > 0
    infected = np.zeros(hu.shape, np.uint8)
    types = np.zeros(hu.shape, np.uint8) if classes > 1 else None
    zs = np.nonzero(lung.reshape(len(lung), -1).any(axis=1))[0]
    if zs.size == 0:
        return infected, types
    frame = frame_volume(hu, lung)
    for start in range(0, len(zs), PREDICT_CHUNK):
        chunk = zs[start : start + PREDICT_CHUNK]
        x = np.stack([to_input(hu[z], frame, size) for z in chunk])[..., None]
        prob = predict(model, x, batch_size, tta=tta)
        p_inf = infection_probability(prob)
        for i, z in enumerate(chunk):
            infected[z] = (from_input(p_inf[i], frame) >= threshold) & lung[z]
            if types is not None:
                consolidation = from_input(prob[i, ..., 2] - prob[i, ..., 1], frame) > 0
                types[z] = np.where(infected[z] > 0, np.where(consolidation, 2, 1), 0)
    return infected, types


def evaluate_folder(
    model_path: str | Path,
    images: str | Path,
    masks: str | Path,
    out_json: str | Path,
    threshold: float | None = None,
    labels: str = "binary",
    sidecar: str | Path | None = None,
    lungs: str | Path | None = None,
) -> dict:
    """Per-image and mean Dice, IoU, pixel accuracy, sensitivity, specificity of a saved U-Net.

    Works on any folder pair in the ``Imgs/`` + ``GT/`` layout. Each image goes through the input space
    (its lungs found, cropped, calibrated) and the prediction is scored on the mask's own grid. With
    ``lungs`` the prediction is kept inside the lungs first, as on a patient: ``auto`` (the 2D lung
    finder's region) or a folder of lung masks (> 0, the images' stems). The threshold and test-time
    flips come from the model's sidecar (``threshold`` overrides). ``labels: types`` masks (0/1/2) add
    per-class Dice for a lesion-type model.
    """
    side = Path(sidecar) if sidecar is not None else Path(model_path).with_suffix(".json")
    settings = check_sidecar(read_json(side), side) if side.is_file() else {}
    if not settings:
        raise CovidctError("no sidecar JSON beside the model (size, input space, threshold)", path=side)
    model = load_model(model_path)
    threshold = float(settings.get("threshold", THRESHOLD)) if threshold is None else float(threshold)
    size, tta = int(settings["size"]), bool(settings.get("tta", False))
    lung_masks = None
    if lungs not in (None, "", "auto"):
        lung_masks = {name: path for name, _, path in image_pairs(images, lungs)}
    names, truths, preds, probs = [], [], [], []
    for name, img_path, mask_path in image_pairs(images, masks):
        image = read_gray(img_path).astype(np.float32)
        truth = label_map(read_gray(mask_path, labels=True), labels, mask_path, png=True)
        frame, region = frame_of_image(image, img_path)
        prob = predict(model, to_input(image, frame, size)[None, ..., None], 1, tta=tta)[0]
        back = np.stack([from_input(prob[..., c], frame) for c in range(prob.shape[-1])], axis=-1)
        inside = np.ones(image.shape, bool)
        if lungs == "auto":
            inside = region
        elif lung_masks is not None:
            inside = read_gray(lung_masks[name], labels=True) > 0
        back[~inside] = 0.0
        if back.shape[-1] == 3:
            back[~inside, 0] = 1.0  # background
        names.append(name)
        truths.append(truth)
        probs.append(back)
        preds.append(infection_probability(back) >= threshold)
    per_image = {n: mask_metrics(t > 0, p) for n, t, p in zip(names, truths, preds)}
    summary = evaluate_lists(truths, probs, threshold)
    keys = ("dice", "iou", "accuracy", "sensitivity", "specificity")
    result = {
        "n_images": len(names),
        "threshold": threshold,
        "tta": tta,
        "restricted_to_lungs": "2D lung finder" if lungs == "auto" else ("lung masks" if lung_masks else None),
        "mean": {k: summary[k] for k in keys},  # evaluate's per-image means of the same masks
        "dice_pooled": summary["dice_pooled"],
        "per_image": per_image,
    }
    if labels == "types" and probs[0].shape[-1] == 3:
        result["per_class"] = {k: v for k, v in summary.items() if k.startswith(("ground_glass", "consolidation"))}
    write_json(out_json, result)
    return result
