"""The built-in demo cohort (ten patients, their pinned splits) and its patient sheet; the
synthetic training volumes of the infection U-Net (other seeds, never demo patients)."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from covidct.demo.anatomy import make_phantom, true_score
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import label_image, truth_paths, write_patient
from covidct.errors import CovidctError
from covidct.io import atomic_dir, atomic_path, write_json, write_volume
from covidct.modelcard import SYNTHETIC_MARKER

log = logging.getLogger(__name__)


DEMO_COHORT: tuple[PhantomSpec, ...] = (
    PhantomSpec("demo01", 1101, True, 8.0, 60, 5.0, 176, 2.2),
    PhantomSpec("demo02", 1102, True, 27.0, 52, 6.0, 192, 2.0, flip_x=True, padding=-2048, rescale_intercept=-1024),
    PhantomSpec("demo03", 1103, False, 0.0, 70, 4.5, 168, 2.3, descending=True, unsigned=True),
    PhantomSpec("demo04", 1104, True, 44.0, 64, 5.0, 184, 2.1, localizer=True),
    PhantomSpec("demo05", 1105, False, 0.0, 48, 6.0, 180, 2.15, flip_x=True, descending=True),
    PhantomSpec("demo06", 1106, True, 63.0, 66, 4.8, 172, 2.25, descending=True, padding=-2000),
    PhantomSpec("demo07", 1107, True, 84.0, 56, 5.5, 188, 2.05, unsigned=True, rescale_slope=0.5),
    PhantomSpec("demo08", 1108, False, 0.0, 62, 5.0, 168, 2.3, padding=-2048, rescale_intercept=-1024),
    PhantomSpec("demo09", 1109, True, 35.0, 44, 6.0, 176, 2.2, flip_x=True, unsigned=True),
    PhantomSpec("demo10", 1110, False, 0.0, 58, 5.0, 192, 2.0, descending=True),
)


#: The demo sheet pins its splits: with 10 patients a hashed 70/15/15 split could leave val or
#: test empty or one-class; pinned, each holds one COVID-19 and one negative patient.
DEMO_SPLITS = {
    **{f"demo{i:02d}": "train" for i in (1, 2, 3, 6, 7, 10)},
    "demo04": "test",
    "demo05": "test",
    "demo08": "val",
    "demo09": "val",
}


SHEET_COLUMNS = ("patient_id", "dicom_dir", "label", "score", "split")


def sheet_rows(
    specs: Iterable[PhantomSpec],
    dicom_root: str,
    scores: Mapping[str, float] | None = None,
    splits: Mapping[str, str] | None = None,
) -> list[dict]:
    """Rows of the patient sheet for a synthetic cohort.

    Args:
        specs: The patients.
        dicom_root: Folder holding one DICOM folder per patient (as it should appear in the sheet).
        scores: True scores by patient id, if already known; otherwise computed with ``true_score``.
        splits: Pinned splits by patient id; with it every row has a ``split`` ("" = hashed).

    Returns:
        Dicts with patient_id, dicom_dir (``f"{dicom_root}/{pid}"``), label ("1"/"0"),
        score (true score with 2 decimals; "0" for negatives) and, with ``splits``, split.
    """
    rows = []
    root = str(dicom_root).rstrip("/")
    for spec in specs:
        if spec.covid:
            score = scores[spec.patient_id] if scores and spec.patient_id in scores else true_score(spec)
            score_text = f"{score:.2f}"
        else:
            score_text = "0"
        rows.append(
            {
                "patient_id": spec.patient_id,
                "dicom_dir": f"{root}/{spec.patient_id}",
                "label": "1" if spec.covid else "0",
                "score": score_text,
            }
        )
        if splits is not None:
            rows[-1]["split"] = splits.get(spec.patient_id, "")
    return rows


def write_cohort(
    out_dir: Path, specs: Iterable[PhantomSpec] = DEMO_COHORT, sheet_dicom_root: str | None = None
) -> Path:
    """Generate a synthetic cohort: ``dicom/<pid>/``, ``truth/<pid>.*`` and ``patients.tsv``.

    Args:
        out_dir: Output folder.
        specs: The patients (default: the built-in demo cohort).
        sheet_dicom_root: How the DICOM root is written in the sheet (default ``out_dir/dicom``).

    Returns:
        The path of the patient sheet.

    Raises:
        ValueError: duplicate patient ids.
    """
    specs = tuple(specs)
    ids = [s.patient_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate patient ids in the cohort: {sorted({i for i in ids if ids.count(i) > 1})}")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    scores = {}
    for spec in specs:
        truth = write_patient(spec, out_dir / "dicom" / spec.patient_id, out_dir / "truth")
        scores[spec.patient_id] = truth["score"]
    rows = sheet_rows(
        specs, sheet_dicom_root if sheet_dicom_root is not None else str(out_dir / "dicom"), scores, splits=DEMO_SPLITS
    )
    sheet = out_dir / "patients.tsv"
    with atomic_path(sheet) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=SHEET_COLUMNS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    log.info("cohort of %d patients written to %s in %.1f s", len(specs), out_dir, time.perf_counter() - started)
    return sheet


#: Phantoms for the default infection U-Net training set: never demo patients (other seeds),
#: so the demo cohort's segmentation severity is measured on volumes the U-Net has not seen.
#: A healthy volume comes second, so even a small training set shows the U-Net lungs with no lesion at all
#: (without one, a normalized U-Net marks the most lesion-like healthy tissue of a healthy lung).
INFECTION_TRAINING_SCORES: tuple[float, ...] = (5.0, 0.0, 12.0, 20.0, 30.0, 40.0, 55.0, 70.0)


def infection_training_specs(
    n: int = len(INFECTION_TRAINING_SCORES), seed: int = 2100, matrix: int = 176, pixel_spacing_mm: float = 2.2
) -> list[PhantomSpec]:
    """``n`` synthetic training phantoms (48 slices of 5 mm) with lesion loads cycling through
    INFECTION_TRAINING_SCORES."""
    specs = []
    for i in range(n):
        score = INFECTION_TRAINING_SCORES[i % len(INFECTION_TRAINING_SCORES)]
        specs.append(
            PhantomSpec(
                f"inftrain{i + 1:02d}",
                seed + i,
                score > 0,
                score,
                48,
                5.0,
                matrix,
                pixel_spacing_mm,
                flip_x=bool(i % 2),
            )
        )
    return specs


def write_infection_training(
    out_dir: str | Path,
    n: int = len(INFECTION_TRAINING_SCORES),
    seed: int = 2100,
    matrix: int = 176,
    pixel_spacing_mm: float = 2.2,
) -> list[Path]:
    """Write ``volumes/<name>.nii.gz`` (HU), ``masks/<name>.nii.gz`` (lesion types: 0 none, 1 ground-glass,
    2 consolidation) and ``lungs/<name>.nii.gz`` (the lungs, with their lesions) of synthetic phantoms: the
    3D-NIfTI training source used when ``infection.train`` names none (``labels: types``)."""
    out_dir = Path(out_dir)
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out_dir / SYNTHETIC_MARKER, {"synthetic": True, "generator": "covidct.demo", "phantoms": n, "seed": seed}
    )
    for spec in infection_training_specs(n, seed, matrix, pixel_spacing_mm):
        phantom = make_phantom(spec)
        write_volume(out_dir / "volumes" / f"{spec.patient_id}.nii.gz", label_image(phantom.hu, phantom))
        write_volume(out_dir / "masks" / f"{spec.patient_id}.nii.gz", label_image(phantom.lesion_kind, phantom))
        lungs = (phantom.lung_labels > 0).astype(np.uint8)
        write_volume(out_dir / "lungs" / f"{spec.patient_id}.nii.gz", label_image(lungs, phantom))
        written.append(out_dir / "volumes" / f"{spec.patient_id}.nii.gz")
    return written


def write_demo_patient(patient: str, dicom_dir: str | Path, truth: Mapping[str, str | Path]) -> dict:
    """Generate one patient of the demo cohort: its DICOM folder and its truth files.

    Args:
        patient: A demo id (DEMO_COHORT).
        dicom_dir: Its DICOM folder.
        truth: Where the workflow expects the truth files (``json``, ``lung``, ``lesion``, ``lobes``):
            they must be the names ``write_patient`` gives them (``covidct.demo.writer.truth_paths``).

    Raises:
        CovidctError: not a demo id, or truth files named otherwise.
    """
    specs = {spec.patient_id: spec for spec in DEMO_COHORT}
    if patient not in specs:
        raise CovidctError(f"not a demo cohort patient (demo ids: {', '.join(specs)})", patient)
    truth_dir = Path(truth["json"]).parent
    expected = truth_paths(truth_dir, patient)
    if {k: Path(v) for k, v in truth.items()} != expected:
        raise CovidctError(f"the truth files must be named {sorted(map(str, expected.values()))}", patient)
    return write_patient(specs[patient], Path(dicom_dir), truth_dir)


def write_demo_infection_training(out_dir: str | Path, n: int) -> None:
    """The default infection training source, atomically: ``n`` synthetic phantoms (not demo patients)."""
    with atomic_dir(out_dir) as tmp:
        write_infection_training(tmp, n)
