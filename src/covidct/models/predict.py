"""Predictions of both models for patients' model-ready arrays; ``predictions.csv`` also carries the
infection U-Net's segmentation severity (SEG_COLUMNS) and the clinical read-out (``covidct.severity.readout``:
READOUT_COLUMNS, lobe or zone scores, PO, PHO, lesion types, the PO's severity class).

A classifier or scorer trained only on the demo's synthetic patients reads no other patient unless allowed
(``check_models``, ``covidct.modelcard``); allowed, the row's ``warning`` says so, beside the U-Net's."""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.io import atomic_path, sha256_file
from covidct.modelcard import check_may_read
from covidct.models.cnn3d import load_model
from covidct.severity import SEVERITY_CLASSES, ctsi, severity_class
from covidct.severity.readout import READOUT_COLUMNS, readout_row

#: Columns taken as they are from the infection U-Net's per-patient JSON (``steps.segment_infection``).
SEG_COLUMNS = ["seg_score", "seg_severity_class", "seg_ctsi", "infection_unet_sha256", "warning"]
COLUMNS = [
    "patient_id",
    "split",
    "covid_probability",
    "covid_label",
    "score",
    "severity_class",
    "ctsi",
    "seg_score",
    "seg_severity_class",
    "seg_ctsi",
    *READOUT_COLUMNS,
    "classifier_sha256",
    "scorer_sha256",
    "infection_unet_sha256",
    "warning",
]


def join_warnings(*warnings: str | None) -> str | None:
    """One ``warning`` cell from several (each once, in order), or None when there is none.

    >>> join_warnings(None, "a", "", "b", "a")
    'a; b'
    """
    kept = list(dict.fromkeys(w for w in warnings if w))
    return "; ".join(kept) if kept else None


def check_models(
    cards: dict[str, tuple[dict | None, str | Path]],
    patient_ids: Sequence[str],
    demo_patients: Collection[str],
    allow_synthetic: bool,
) -> dict[str, str | None]:
    """Whether the 3D models may read each patient (``covidct.modelcard.check_may_read``), before any is read.

    Args:
        cards: ``{model name: (its card or None, the model's path)}``.
        patient_ids: The patients to predict.
        demo_patients: The patients the demo generated (any model may read them).
        allow_synthetic: The explicit opt-in (``allow_synthetic_models``, ``--allow-synthetic-model``).

    Returns:
        Each patient's warning: None, or the models that read it on the opt-in and why
        (``classifier, scorer: <SYNTHETIC_WARNING>``).

    Raises:
        CovidctError: the first patient a model may not read, naming the patient and the model.
    """
    demo = set(demo_patients)
    out = {}
    for pid in patient_ids:
        said: dict[str, list[str]] = {}
        for name, (card, path) in cards.items():
            warning = check_may_read(card, path, pid, pid in demo, allow_synthetic)
            if warning:
                said.setdefault(warning, []).append(name)
        out[pid] = join_warnings(*(f"{', '.join(names)}: {w}" for w, names in said.items()))
    return out


def add_segmentation(row: dict, seg: dict) -> dict:
    """A prediction row with the infection U-Net's SEG_COLUMNS of the patient's infection JSON; the
    U-Net's warning joins the row's own (``join_warnings``)."""
    warning = join_warnings(row.get("warning"), seg.get("warning"))
    row.update({k: seg.get(k) for k in SEG_COLUMNS})
    row["warning"] = warning
    return row


def predict_arrays(
    items: Iterable[tuple[str, np.ndarray]], classifier: str | Path, scorer: str | Path, threshold: float
) -> list[dict]:
    """Run the classifier and the scorer on each array.

    Args:
        items: ``(patient_id, array (D, H, W))`` pairs.
        classifier: ``classifier.keras``.
        scorer: ``scorer.keras``.
        threshold: The classifier's decision threshold (chosen on val, in its sidecar JSON).

    Returns:
        One dict per patient with the COLUMNS but SEG_COLUMNS and READOUT_COLUMNS (split left empty).
    """
    clf, reg = load_model(classifier), load_model(scorer)
    shas = sha256_file(classifier), sha256_file(scorer)
    rows = []
    for pid, array in items:
        x = np.asarray(array, dtype=np.float32)[None, ..., None]
        if x.shape[1:4] != tuple(clf.input_shape[1:4]):
            raise CovidctError(f"array shape {x.shape[1:4]} differs from the model input {clf.input_shape[1:4]}", pid)
        prob = float(np.asarray(clf(x, training=False)).reshape(-1)[0])
        score = float(np.clip(np.asarray(reg(x, training=False)).reshape(-1)[0], 0.0, 100.0))
        rows.append(
            {
                "patient_id": pid,
                "split": "",
                "covid_probability": round(prob, 4),
                "covid_label": int(prob >= threshold),
                "score": round(score, 2),
                "severity_class": SEVERITY_CLASSES[severity_class(score)],
                "ctsi": ctsi(score),
                "classifier_sha256": shas[0],
                "scorer_sha256": shas[1],
            }
        )
    return rows


def write_predictions(rows: list[dict], path: str | Path) -> None:
    """Write the predictions table as CSV, atomically."""
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def annotate(
    rows: list[dict],
    splits: dict[str, str],
    labeled: Sequence[str],
    infection: Sequence[tuple[str | Path, dict]] = (),
    severity: Sequence[tuple[str | Path, dict]] = (),
) -> list[dict]:
    """Prediction rows (``predict_arrays``, same order as ``infection`` and ``severity``) completed: the
    split (``splits``' train/val/test; ``new`` for a labeled patient the models have not seen,
    ``unlabeled`` otherwise), the segmentation severity (SEG_COLUMNS of each infection JSON) and the
    clinical read-out (READOUT_COLUMNS of each severity JSON), given as (path, content) pairs.

    Raises:
        CovidctError: a JSON of another patient.
    """
    for row in rows:
        row["split"] = splits.get(row["patient_id"], "unlabeled" if row["patient_id"] not in labeled else "new")
    for row, (path, seg) in zip(rows, infection):
        if seg["patient_id"] != row["patient_id"]:
            raise CovidctError(f"infection result {path} is for another patient", row["patient_id"])
        add_segmentation(row, seg)
    for row, (path, result) in zip(rows, severity):
        if result["patient_id"] != row["patient_id"]:
            raise CovidctError(f"severity read-out {path} is for another patient", row["patient_id"])
        row.update(readout_row(result))
    return rows
