"""The steps of ``workflow/rules/infection.smk``: the infection U-Net trained (on the configured sources,
or the synthetic phantoms of ``synth_infection_training``), evaluated on a test set, and run on every
patient."""

from __future__ import annotations

import logging
from pathlib import Path

from covidct import config
from covidct.errors import CovidctError
from covidct.infection.inference import evaluate_folder
from covidct.infection.segment import segment
from covidct.infection.train import train, train_fold
from covidct.io import read_json, write_json
from covidct.modelcard import check_may_read, read_card
from covidct.report.montage import infection_qc_title, lesion_types_text, montage, write_png
from covidct.severity.scores import segmentation_severity
from covidct.volume import Volume

log = logging.getLogger(__name__)


def cross_validate_infection_unet(
    sources_dirs: list[str],
    out_dir: str | Path,
    sources: list[dict],
    infection: dict,
    variant: str,
    fold: str,
    spacing_mm: float = config.default("resample.spacing_mm"),
) -> dict:
    """One fold (``fold``: 1 .. ``infection.folds``) of the cross-validation of one infection U-Net ``variant``
    on the configured ``sources``, as a job of its own: its record, held-out counts and (with
    ``ensemble_folds``) model in the folder ``out_dir`` (``covidct.infection.train.train_fold``)."""
    settings = {k: infection[k] for k in config.INFECTION_TRAINING_KEYS if k not in config.INFECTION_FINAL_ONLY_KEYS}
    return train_fold(sources, out_dir, variant, int(fold) - 1, spacing_mm=spacing_mm, **settings)


def train_infection_unet(
    sources_dirs: list[str],
    out_model: str | Path,
    out_sidecar: str | Path,
    out_metrics: str | Path,
    out_card: str | Path,
    out_card_md: str | Path,
    sources: list[dict],
    infection: dict,
    spacing_mm: float = config.default("resample.spacing_mm"),
    fold_dirs: list[str] | None = None,
) -> dict:
    """The infection U-Net variants' cross-validation on the configured ``sources`` (``sources_dirs``: their
    folders, what the job waits for) read from its folds' folders (``fold_dirs``, one job each:
    ``cross_validate_infection_unet``; without them it runs here, in this process), then the chosen variant
    trained for the chosen epoch count on all of them (or its fold models averaged, with ``ensemble_folds``),
    with the ``infection`` config block."""
    settings = {k: infection[k] for k in config.INFECTION_TRAINING_KEYS}
    return train(sources, out_model, out_metrics, out_sidecar=out_sidecar, out_card=out_card, out_card_md=out_card_md,
                 spacing_mm=spacing_mm, fold_dirs=fold_dirs, **settings)  # fmt: skip


def evaluate_infection_unet(
    model: str | Path,
    sidecar: str | Path,
    out_metrics: str | Path,
    images: str,
    masks: str,
    labels: str = "binary",
    lungs: str | None = None,
) -> dict:
    """Dice/IoU/accuracy/sensitivity/specificity of the U-Net on a test set of images and masks, at the
    threshold (and test-time flips) of its ``sidecar``; per-class Dice for ``labels: types`` masks; inside
    the lungs with ``lungs`` (``auto`` or a folder of lung masks)."""
    return evaluate_folder(model, images, masks, out_metrics, labels=labels, sidecar=sidecar, lungs=lungs)


def segment_infection(
    volume: str | Path,
    mask: str | Path,
    labels: str | Path,
    model: str | Path,
    sidecar: str | Path,
    out_mask: str | Path,
    out_types: str | Path,
    out_json: str | Path,
    out_png: str | Path,
    patient: str,
    card: str | Path | None = None,
    n_slices: int = 8,
    demo_patient: bool = False,
    allow_synthetic: bool = False,
) -> dict:
    """Infection mask of one patient inside its lung mask (``covidct.infection.segment``), its severity
    (``covidct.severity.scores.segmentation_severity``), and a QC overlay PNG. A lesion-type model also
    writes the lesion types (1 ground-glass, 2 consolidation) and their volumes and percent of the lung;
    a binary model writes an all-zero type map (the read-out then uses HU bands). A model trained only on
    synthetic phantoms (its ``card``) reads a patient the demo did not generate only with
    ``allow_synthetic``, and the JSON and the QC title then say so (``covidct.modelcard``)."""
    model_card = read_json(card) if card else read_card(model)
    warning = check_may_read(model_card, model, patient, demo_patient, allow_synthetic)
    scan, lung = Volume.read(volume), Volume.read(mask).array > 0
    if not lung.any():
        raise CovidctError("lung mask is empty: no infection severity", patient, mask)
    found = segment(scan, lung, model, sidecar)
    scan.like(found.infected).write(out_mask)
    scan.like(found.types).write(out_types)
    severity = segmentation_severity(found.infected, lung, scan.voxel_ml, found.types if found.typed else None)
    result = {"patient_id": patient, **severity.figures}
    result.update(infection_unet_sha256=found.model_sha256, variant=found.variant)
    result.update(model_trained_on=(model_card or {}).get("trained_on", "unknown"), warning=warning)
    write_json(out_json, result)
    overlay = montage(scan.array, Volume.read(labels).array, n_slices=n_slices, overlay=found.infected)
    write_png(out_png, overlay, title=infection_qc_title(patient, severity.po, result))
    log.info(
        "patient %s: infection %.1f%% of lung (%.0f of %.0f mL)%s",
        *(patient, severity.po, result["infection_volume_ml"], result["lung_volume_ml"], lesion_types_text(result)),
    )
    return result
