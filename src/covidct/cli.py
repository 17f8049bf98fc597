"""``covidct <verb>``: each step on one patient, without Snakemake.

A table of verbs (``VERBS``): each names the function of ``covidct.steps`` it runs (the very function
the workflow's rule runs) and its arguments, which carry the step's argument names; defaults come
from the configuration schema (``covidct.config``), so they are written once. ``run`` and ``predict``
chain the per-patient steps.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidct import __version__, config, forked, steps
from covidct.clinical.pacs import PullSettings, pull_new_studies
from covidct.deid.keys import KEY_FILE_SETTING, load_key
from covidct.demo.cohort import DEMO_COHORT, write_cohort
from covidct.errors import CovidctError, raw_placeholder
from covidct.infection.inference import evaluate_folder
from covidct.io import read_json
from covidct.modelcard import ALLOW_SYNTHETIC, check_may_read, read_card
from covidct.models.predict import COLUMNS, add_segmentation, check_models, predict_arrays
from covidct.severity.readout import readout_row, total_text
from covidct.sheet import SAFE_ID, SAFE_ID_WORDS, SHEET_DICOM_DIR

#: What ``covidct --help`` says, in a user's words.
DESCRIPTION = """\
covidct reads a chest CT exported as DICOM and gives back, for one patient at a time: anonymized
images, a lung mask with its volume and quality checks, and (with a trained infection model) the
infection mask and a severity read-out.

Most users start with 'covidct run'; the other commands each do one step, for when you need only that.
The anonymization key comes from --key-file or the environment variable COVIDCT_ANON_KEY.
--patient is a pseudonym you choose (letters, digits, '_' and '-'), never the patient's name."""

EPILOG = """\
first steps:
  covidct run /path/to/dicom_folder out/ --patient P0001 --key-file ~/covidct.key
  covidct run /path/to/dicom_folder out/ --patient P0001 --key-file ~/covidct.key \\
      --infection-model results/models/infection_unet.keras
  covidct <command> --help     (what a command needs, with an example)"""


@dataclass(frozen=True)
class Arg:
    """One argument of a verb.

    Attributes:
        name: The step argument it fills (positional on the command line unless ``flag``).
        help: What it is.
        flag: An option ``--name-with-dashes`` rather than a positional argument.
        type: Converter of the command-line text.
        config: Dotted configuration key whose schema default (and choices) it takes.
        default: Default when there is no ``config`` key.
        nargs, metavar, required, action: As argparse's.
    """

    name: str
    help: str
    flag: bool = False
    type: Callable[[str], Any] | None = str
    config: str | None = None
    default: Any = None
    nargs: int | str | None = None
    metavar: Any = None
    required: bool = False
    action: str | None = None

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        kwargs: dict[str, Any] = {"help": self.help}
        if self.action:
            kwargs["action"] = self.action
        else:
            kwargs.update(type=self.type, nargs=self.nargs, metavar=self.metavar)
        if self.flag:
            default = config.default(self.config) if self.config else self.default
            kwargs["default"] = default
            if self.config and config.choices(self.config):
                kwargs["choices"] = config.choices(self.config)
            if default is not None and not self.action:
                kwargs["help"] += f" (default: {default})"
            if self.required:
                kwargs["required"] = True
            parser.add_argument("--" + self.name.replace("_", "-"), dest=self.name, **kwargs)
        else:
            parser.add_argument(self.name, **kwargs)


@dataclass(frozen=True)
class Verb:
    """One subcommand: ``run(**arguments)`` calls a step (or chains them) and returns what to print.

    ``run`` is a function, or the name of the step it calls (``covidct.steps.<name>``, imported when the
    verb runs).
    """

    name: str
    help: str
    run: Callable[..., Any] | str
    args: tuple[Arg, ...] = field(default_factory=tuple)
    example: str = ""

    @property
    def function(self) -> Callable[..., Any]:
        """What the verb calls."""
        return getattr(steps, self.run) if isinstance(self.run, str) else self.run


def setting(key: str, name: str | None = None, metavar: Any = None) -> Arg:
    """The flag of a configuration key, built from the schema: named after the key's last part, its help
    the key's description, its type, number of values, choices and default the schema's."""
    spec = config.argument(key)
    return Arg(
        name or key.rsplit(".", 1)[-1],
        spec["help"],
        flag=True,
        type=spec["type"],
        config=key,
        nargs=spec["nargs"],
        metavar=metavar,
        action=spec["action"],
    )


PATIENT = Arg(
    "patient",
    f"the pseudonym you give this patient ({SAFE_ID_WORDS}; never the real name or ID): it names every "
    "output and message",
    flag=True,
    required=True,
)
KEY_FILE = Arg("key_file", "file holding the anonymization key (else $COVIDCT_ANON_KEY)", flag=True)
INFECTION_MODEL = Arg(
    "infection_model",
    "a trained infection U-Net (.keras, its .json beside it): adds the infection mask and the severity read-out",
    flag=True,
    type=Path,
)
ALLOW_SYNTHETIC_MODEL = Arg(
    "allow_synthetic_model",
    "let a model trained on synthetic phantoms only read this patient (refused otherwise); every output then says so",
    flag=True,
    action="store_true",
    default=False,
)
SPACING = setting("resample.spacing_mm")
BACKEND = setting("lung_mask.backend")
WEIGHTS = setting("lung_mask.weights")


def _beside(path: str | Path, suffix: str) -> Path:
    """A file beside ``path`` with the same stem: ``x.nii.gz`` -> ``x<suffix>``."""
    path = Path(path)
    return path.with_name(path.name.split(".")[0] + suffix)


def _synth(out_dir: Path, patients: list[str] | None = None) -> Path:
    return write_cohort(out_dir, [s for s in DEMO_COHORT if not patients or s.patient_id in patients])


def _hu(dicom: Path, out_volume: Path, patient: str, out_info: Path | None = None, **kwargs: Any) -> str:
    info = steps.dicom_to_hu(dicom, out_volume, out_info or _beside(out_volume, ".json"), patient, **kwargs)
    return f"{patient}: HU volume {info['shape_zyx']} (z, y, x), spacing {info['spacing_xyz_mm']} mm"


def _segment(volume: Path, out_mask: Path, patient: str, **kwargs: Any) -> str:
    prov = steps.segment_lungs(
        volume, out_mask, _beside(out_mask, "_labels.nii.gz"), _beside(out_mask, ".json"), patient, **kwargs
    )
    flags = prov.get("qc", {}).get("flags", [])
    return f"{patient}: lungs {prov.get('lung_volume_ml', 0):.0f} mL; QC flags: {'; '.join(flags) or 'none'}"


def _lobes(volume: Path, out_lobes: Path, patient: str, **kwargs: Any) -> str:
    prov = steps.segment_lobes(volume, out_lobes, _beside(out_lobes, ".json"), patient, **kwargs)
    return f"{patient}: lobes ({prov['model']}) " + ", ".join(
        f"{k} {v:.0f} mL" for k, v in prov["lobe_volumes_ml"].items()
    )


def _severity(
    volume: Path,
    labels: Path,
    infection: Path,
    out_json: Path,
    patient: str,
    out_png: Path | None = None,
    **kwargs: Any,
) -> str:
    result = steps.severity_readout(
        volume,
        labels,
        infection,
        kwargs.pop("hu_info", None),
        out_json,
        out_png or _beside(out_json, ".png"),
        patient,
        **kwargs,
    )
    total = f"CTSS {result['ctss']}/25" if result["scheme"] == "lobes" else f"zone score {result['zone_score']}/30"
    regions = " ".join(f"{r['name']}={r['score']}" for r in result["regions"])
    return (
        f"{patient}: {total} ({regions}); PO {result['po']:.1f} % ({result['po_severity_class']}), "
        f"PHO {result['pho']:.1f} %, ground-glass {result['ggo_percent']:.1f} %, "
        f"consolidation {result['consolidation_percent']:.1f} % of the lung"
    )


def _lung_eval(labels: Path, reference: Path, out_json: Path, patient: str, **kwargs: Any) -> str:
    kwargs["contour_shift_mm"] = tuple(kwargs.get("contour_shift_mm") or (0.0, 0.0))
    result = steps.evaluate_lung_mask(labels, out_json, patient, reference=reference, **kwargs)
    rows = [(name, row) for name, row in result["lungs"].items()]
    if "lungs_with_lesions" in result:
        rows.append(("with lesions", result["lungs_with_lesions"]))
    return "\n".join(
        f"{name}\tdice={r['dice']}\thd95_mm={r['hd95_mm']}\tvolume_diff_ml={r['volume_diff_ml']}" for name, r in rows
    )


def _segment_eval(
    model: Path,
    images: Path,
    masks: Path,
    out: Path,
    threshold: float | None = None,
    labels: str = "binary",
    lungs: str | None = None,
) -> str:
    result = evaluate_folder(model, images, masks, out, threshold, labels=labels, lungs=lungs)
    per_class = "".join(f" {k}={v:.4f}" for k, v in result.get("per_class", {}).items())
    return " ".join(f"{k}={v:.4f}" for k, v in result["mean"].items()) + per_class + f" (n={result['n_images']})"


def run_chain(
    raw_dir: Path,
    out_dir: Path,
    patient: str,
    key_file: str | None = None,
    backend: str = config.default("lung_mask.backend"),
    weights: str | None = config.default("lung_mask.weights"),
    spacing_mm: float = config.default("resample.spacing_mm"),
    shape: list[int] | None = None,
) -> dict[str, Path]:
    """The per-patient chain on one raw folder, as the workflow runs it, outputs under ``out_dir``.

    Returns:
        The paths of the main outputs.
    """
    out, pid = Path(out_dir), patient
    p = {
        "dicom": out / "anonymized" / pid,
        "summary": out / "anonymized" / f"{pid}.json",
        "report": out / "verify" / f"{pid}.json",
        "hu": out / "hu" / f"{pid}.nii.gz",
        "info": out / "hu" / f"{pid}.json",
        "resampled": out / "resampled" / f"{pid}.nii.gz",
        "mask": out / "lung_mask" / f"{pid}.nii.gz",
        "labels": out / "lung_mask" / f"{pid}_labels.nii.gz",
        "provenance": out / "lung_mask" / f"{pid}.json",
        "npy": out / "npy" / f"{pid}.npy",
        "qc": out / "qc" / f"{pid}.png",
    }
    workers = forked.workers()
    steps.anonymize_dicom(pid, p["dicom"], p["summary"], raw_dir=raw_dir, key_file=key_file, threads=workers)
    steps.verify_anonymization(p["dicom"], p["report"], pid, raw_dir=raw_dir, threads=workers)
    steps.dicom_to_hu(
        p["dicom"],
        p["hu"],
        p["info"],
        pid,
        anonymize_summary=p["summary"],
        threads=workers,
        out_resampled=p["resampled"],
        spacing_mm=spacing_mm,
    )
    steps.segment_lungs(
        p["resampled"], p["mask"], p["labels"], p["provenance"], pid, backend=backend, weights=weights, threads=workers
    )
    steps.export_npy(p["resampled"], p["mask"], p["npy"], pid, shape=shape or config.default("export.shape"))
    steps.qc_montage(p["resampled"], p["labels"], p["qc"], pid, provenance=p["provenance"])
    return p


def check_infection_model(model: Path, patient: str, allow_synthetic: bool) -> None:
    """Refuse an infection U-Net before any output is written: the model or its sidecar JSON missing, or a
    model the patient may not be read by (``covidct.modelcard.check_may_read``; a command-line patient is
    never one the demo generated)."""
    for path in (model, model.with_suffix(".json")):
        if not path.is_file():
            raise CovidctError("infection model not found (the .keras file and its .json beside it)", patient, path)
    check_may_read(read_card(model), model, patient, False, allow_synthetic)


def infection_chain(p: dict[str, Path], out: Path, patient: str, model: Path, allow_synthetic: bool = False) -> dict:
    """The infection U-Net and the six-zone severity read-out after ``run_chain`` (its paths ``p``, to
    which the new outputs are added), as the workflow's ``segment_infection`` and ``severity_readout``
    rules run them.

    Returns:
        ``{"infection": the infection step's result, "severity": the read-out}``.
    """
    p.update(
        infection=out / "infection_mask" / f"{patient}.nii.gz",
        types=out / "infection_mask" / f"{patient}_types.nii.gz",
        infection_info=out / "infection_mask" / f"{patient}.json",
        infection_qc=out / "qc" / f"{patient}_infection.png",
        severity=out / "severity" / f"{patient}.json",
        severity_panel=out / "severity" / f"{patient}.png",
    )
    seg = steps.segment_infection(
        p["resampled"],
        p["mask"],
        p["labels"],
        model,
        model.with_suffix(".json"),
        p["infection"],
        p["types"],
        p["infection_info"],
        p["infection_qc"],
        patient,
        allow_synthetic=allow_synthetic,
    )
    readout = steps.severity_readout(
        p["resampled"],
        p["labels"],
        p["infection"],
        p["info"],
        p["severity"],
        p["severity_panel"],
        patient,
        types=p["types"],
        infection_info=p["infection_info"],
    )
    return {"infection": seg, "severity": readout}


def run_summary(patient: str, out_dir: Path, p: dict[str, Path], read: dict | None) -> str:
    """What ``covidct run`` prints at the end: lung volume and QC flags, the infection figures when the
    U-Net ran (else what was skipped), and where the files are."""
    lungs = read_json(p["provenance"])
    flags = "; ".join(lungs.get("qc", {}).get("flags", [])) or "none"
    lines = [
        f"{patient}: done, outputs under {out_dir}",
        f"  lungs: {lungs.get('lung_volume_ml', 0):.0f} mL; QC flags: {flags}",
    ]
    if read:
        r = read["severity"]
        lines.append(
            f"  infection: PO {r['po']:.1f} % of the lung ({r['po_severity_class']}), {total_text(r)}, "
            f"PHO {r['pho']:.1f} %, ground-glass {r['ggo_percent']:.1f} %, "
            f"consolidation {r['consolidation_percent']:.1f} %"
        )
        if r.get("warning"):
            lines.append(f"  WARNING: {r['warning']}")
    else:
        lines.append("  skipped: infection mask and severity read-out (give --infection-model to run them)")
    lines.append(f"  QC picture: {p['qc']}")
    if read:
        lines += [
            f"  infection mask: {p['infection']} (lesion types: {p['types']})",
            f"  infection overlay: {p['infection_qc']}",
            f"  severity panel: {p['severity_panel']} (figures in {p['severity']})",
        ]
    lines.append(f"  anonymized images: {p['dicom']} (checked: {p['report']})")
    return "\n".join(lines)


def _run(
    raw_dir: Path,
    out_dir: Path,
    patient: str,
    infection_model: Path | None = None,
    allow_synthetic_model: bool = False,
    **kwargs: Any,
) -> str:
    if infection_model is not None:
        check_infection_model(infection_model, patient, allow_synthetic_model)
    p = run_chain(raw_dir, out_dir, patient, **kwargs)
    read = (
        infection_chain(p, Path(out_dir), patient, infection_model, allow_synthetic_model) if infection_model else None
    )
    return run_summary(patient, out_dir, p, read)


def predict_one(
    raw_dir: Path,
    patient: str,
    models: Path,
    out_dir: Path | None = None,
    allow_synthetic_model: bool = False,
    **kwargs: Any,
) -> dict:
    """The per-patient chain plus both 3D models (and the infection U-Net and the severity read-out,
    six zones, when ``models`` holds the U-Net) on one new patient: one row of ``predictions.csv``,
    split ``new``. A model trained on synthetic patients only (its card) is refused before anything is
    read unless ``allow_synthetic_model``, and the row's ``warning`` then says so."""
    paths = {name: Path(models) / f"{name}.{ext}" for name, ext in (("classifier", "keras"), ("scorer", "keras"))}
    for model in (*paths.values(), Path(models) / "classifier.json"):
        if not model.is_file():
            raise CovidctError("model not found: train first (snakemake) or pass --models", path=model)
    cards = {name: (read_card(path), path) for name, path in paths.items()}
    warning = check_models(cards, [patient], (), allow_synthetic_model)[patient]
    if (Path(models) / "infection_unet.keras").is_file():
        check_infection_model(Path(models) / "infection_unet.keras", patient, allow_synthetic_model)
    sidecar = read_json(Path(models) / "classifier.json")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out_dir) if out_dir else Path(tmp)
        p = run_chain(raw_dir, out, patient, shape=sidecar["shape"], **kwargs)
        row = predict_arrays(
            [(patient, np.load(p["npy"]))], paths["classifier"], paths["scorer"], float(sidecar["threshold"])
        )[0]
        row["warning"] = warning
        unet = Path(models) / "infection_unet.keras"
        if unet.is_file():
            read = infection_chain(p, out, patient, unet, allow_synthetic_model)
            add_segmentation(row, read["infection"])
            row.update(readout_row(read["severity"]))
    row["split"] = "new"
    return row


def _predict(**kwargs: Any) -> str:
    row = predict_one(**kwargs)
    return "\n".join(f"{col}\t{row.get(col, '')}" for col in COLUMNS)


def _verify(dicom: Path, out_report: Path, patient: str, raw_dir: Path) -> str:
    steps.verify_anonymization(dicom, out_report, patient, raw_dir=raw_dir, threads=forked.workers())
    return f"{patient}: verification passed, report {out_report}"


def _pacs_pull(url: str, sheet: Path, raw_dir: str, key_file: str | None, modality: str, study_date: str) -> str:

    result = pull_new_studies(PullSettings(url, raw_dir, modality, study_date), sheet, load_key(key_file or None))
    return f"{result['found']} studies found, {len(result['new'])} new: {' '.join(result['new']) or '-'}"


VERBS: tuple[Verb, ...] = (
    Verb(
        "synth",
        "write the synthetic demo cohort (DICOM + patient sheet + truth)",
        _synth,
        (Arg("out_dir", "output folder", type=Path), Arg("patients", "only these demo ids", flag=True, nargs="*")),
        example="covidct synth demo_out/ --patients demo01 demo02",
    ),
    Verb(
        "anonymize",
        "anonymize one patient's DICOM folder (PS3.15 Basic Profile)",
        "anonymize_dicom",
        (
            Arg("raw_dir", "the patient's raw DICOM folder (only read)", type=Path),
            Arg("out_dicom", "the anonymized folder", type=Path),
            PATIENT,
            KEY_FILE,
            setting("anonymize.dates"),
            Arg("out_summary", "also write the summary JSON (counts, what was skipped) here", flag=True, type=Path),
        ),
        example=(
            "covidct anonymize /path/to/dicom_folder out/P0001 --patient P0001 --key-file "
            "~/covidct.key --out-summary out/P0001.json"
        ),
    ),
    Verb(
        "verify",
        "check an anonymized folder against the original",
        _verify,
        (
            Arg("raw_dir", "the original folder", type=Path),
            Arg("dicom", "the anonymized folder", type=Path),
            Arg("out_report", "the report JSON", type=Path),
            PATIENT,
        ),
        example="covidct verify /path/to/dicom_folder out/P0001 out/P0001_verify.json --patient P0001",
    ),
    Verb(
        "hu",
        "DICOM folder to a HU NIfTI volume",
        _hu,
        (
            Arg("dicom", "the (anonymized) DICOM folder", type=Path),
            Arg("out_volume", "the HU volume (.nii.gz)", type=Path),
            PATIENT,
            Arg("out_info", "series-choice JSON (default: beside the volume)", flag=True, type=Path),
            Arg("series_uid", "use this series instead of choosing one", flag=True),
            setting("hu.min_slices"),
            setting("hu.max_slices"),
            Arg(
                "anonymize_summary",
                "the anonymizer's summary JSON, whose skip list goes into the info",
                flag=True,
                type=Path,
            ),
        ),
        example="covidct hu out/P0001 out/P0001_hu.nii.gz --patient P0001 --anonymize-summary out/P0001.json",
    ),
    Verb(
        "resample",
        "resample a volume to isotropic spacing",
        "resample_volume",
        (Arg("volume", "input volume", type=Path), Arg("out_volume", "output volume", type=Path), SPACING),
        example="covidct resample out/P0001_hu.nii.gz out/P0001_1.5mm.nii.gz --spacing-mm 1.5",
    ),
    Verb(
        "segment",
        "lung mask (threshold or lungmask R231); labels and provenance JSON beside it",
        _segment,
        (
            Arg("volume", "the resampled HU volume", type=Path),
            Arg("out_mask", "the binary lung mask (.nii.gz)", type=Path),
            PATIENT,
            BACKEND,
            WEIGHTS,
            setting("lung_mask.force_cpu"),
            setting("lung_mask.batch_size"),
        ),
        example="covidct segment out/P0001_1.5mm.nii.gz out/P0001_mask.nii.gz --patient P0001",
    ),
    Verb(
        "export",
        "model-ready .npy from a volume and its lung mask",
        "export_npy",
        (
            Arg("volume", "the resampled HU volume", type=Path),
            Arg("mask", "its lung mask", type=Path),
            Arg("out_npy", "the array (.npy)", type=Path),
            PATIENT,
            setting("export.shape", metavar=("D", "H", "W")),
            setting("export.margin_mm"),
            setting("export.hu_window", metavar=("LO", "HI")),
        ),
        example="covidct export out/P0001_1.5mm.nii.gz out/P0001_mask.nii.gz out/P0001.npy --patient P0001",
    ),
    Verb(
        "qc",
        "QC montage PNG of a lung mask",
        "qc_montage",
        (
            Arg("volume", "the resampled HU volume", type=Path),
            Arg("labels", "the lung label map", type=Path),
            Arg("out_png", "the montage (.png)", type=Path),
            PATIENT,
            setting("qc.n_slices"),
            Arg("provenance", "the mask's provenance JSON (volume and QC flags in the title)", flag=True, type=Path),
        ),
        example=("covidct qc out/P0001_1.5mm.nii.gz out/P0001_mask_labels.nii.gz out/P0001_qc.png --patient P0001"),
    ),
    Verb(
        "run",
        "the whole chain on one patient's DICOM folder: anonymized images, HU volume, lung mask, QC "
        "picture and, with --infection-model, the infection mask and severity read-out",
        _run,
        (
            Arg("raw_dir", "the patient's DICOM folder as exported (only read)", type=Path),
            Arg("out_dir", "output folder", type=Path),
            PATIENT,
            KEY_FILE,
            INFECTION_MODEL,
            ALLOW_SYNTHETIC_MODEL,
            BACKEND,
            WEIGHTS,
            SPACING,
            setting("export.shape", metavar=("D", "H", "W")),
        ),
        example=(
            "covidct run /path/to/dicom_folder out/ --patient P0001 --key-file ~/covidct.key "
            "--infection-model results/models/infection_unet.keras"
        ),
    ),
    Verb(
        "predict",
        "the whole per-patient chain plus both models on one new patient",
        _predict,
        (
            Arg("raw_dir", "the patient's raw DICOM folder", type=Path),
            PATIENT,
            Arg(
                "models",
                "folder with classifier.keras, scorer.keras and optionally infection_unet.keras",
                flag=True,
                type=Path,
                default=Path("results/models"),
            ),
            Arg("out_dir", "keep the intermediate files here (default: a temporary folder)", flag=True, type=Path),
            KEY_FILE,
            ALLOW_SYNTHETIC_MODEL,
            BACKEND,
            WEIGHTS,
            SPACING,
        ),
        example=(
            "covidct predict /path/to/dicom_folder --patient P0001 --key-file ~/covidct.key --models results/models"
        ),
    ),
    Verb(
        "lobes",
        "lobe map from lungmask's LTRCLobes (alone or fused with R231); provenance JSON beside it",
        _lobes,
        (
            Arg("volume", "the resampled HU volume", type=Path),
            Arg("out_lobes", "the lobe map (.nii.gz; 1 LUL, 2 LLL, 3 RUL, 4 RML, 5 RLL)", type=Path),
            PATIENT,
            Arg("model", "lobe model", flag=True, default="LTRCLobes_R231", type=str),
            Arg("weights", "LTRCLobes weights file (default: the torch hub cache; never downloaded)", flag=True),
            Arg("r231_weights", "R231 weights for LTRCLobes_R231 (default: the torch hub cache)", flag=True),
            setting("lung_mask.force_cpu"),
            setting("lung_mask.batch_size"),
        ),
        example="covidct lobes out/resampled/P0001.nii.gz out/lobes/P0001.nii.gz --patient P0001",
    ),
    Verb(
        "severity",
        "severity read-out: lobe (or six-zone) scores, CTSS or zone score, PO, PHO, lesion types, panel PNG",
        _severity,
        (
            Arg("volume", "the resampled HU volume", type=Path),
            Arg("labels", "the lung label map (1 right, 2 left)", type=Path),
            Arg("infection", "the infection mask on the same grid", type=Path),
            Arg("out_json", "the read-out JSON", type=Path),
            PATIENT,
            Arg("out_png", "the severity panel (default: beside the JSON)", flag=True, type=Path),
            Arg("lobes", "a lobe map on the same grid (default: six geometric zones)", flag=True, type=Path),
            Arg(
                "types", "a lesion-type map, 1 ground-glass, 2 consolidation (default: HU bands)", flag=True, type=Path
            ),
            Arg("hu_info", "the HU step's JSON (its shifted study date goes into the read-out)", flag=True, type=Path),
            setting("severity.high_opacity_hu"),
            setting("severity.consolidation_above_hu"),
            setting("severity.min_lesion_ml"),
        ),
        example=(
            "covidct severity out/resampled/P0001.nii.gz out/lung_mask/P0001_labels.nii.gz "
            "out/infection_mask/P0001.nii.gz out/P0001_severity.json --patient P0001"
        ),
    ),
    Verb(
        "lung-eval",
        "Dice/HD95/volume of a lung mask against a reference (RTSTRUCT or label map)",
        _lung_eval,
        (
            Arg("labels", "the mask's label map (<patient>_labels.nii.gz; a binary mask works)", type=Path),
            Arg(
                "reference",
                "RTSTRUCT file (or a folder with one) or a NIfTI label map (1 right, 2 left lung)",
                type=Path,
            ),
            Arg("out_json", "the result JSON", type=Path),
            PATIENT,
            Arg("right_roi", "regular expression of the right lung ROI name (full match, any case)", flag=True),
            Arg("left_roi", "regular expression of the left lung ROI name", flag=True),
            setting("lung_eval.lesion_roi"),
            setting("lung_eval.contour_shift_mm", metavar=("DX", "DY")),
        ),
        example=(
            "covidct lung-eval out/lung_mask/P0001_labels.nii.gz /path/to/RS.dcm "
            "out/P0001_lung_eval.json --patient P0001"
        ),
    ),
    Verb(
        "segment-eval",
        "Dice/IoU/accuracy/sensitivity/specificity of an infection U-Net",
        _segment_eval,
        (
            Arg("model", "the U-Net (.keras)", flag=True, type=Path, required=True),
            Arg("images", "folder of slices (e.g. Imgs/)", flag=True, type=Path, required=True),
            Arg("masks", "folder of masks with the same stems (e.g. GT/)", flag=True, type=Path, required=True),
            Arg("out", "metrics JSON", flag=True, type=Path, required=True),
            Arg("threshold", "probability threshold (default: the model's sidecar, else 0.5)", flag=True, type=float),
            Arg(
                "labels",
                "masks: binary (> 0 infection) or types (0/1/2, adds per-class Dice)",
                flag=True,
                default="binary",
            ),
            Arg(
                "lungs",
                "keep predictions inside the lungs, as on a patient: 'auto' (lungs found on each image) or a "
                "folder of lung masks with the images' stems (default: the whole image is scored)",
                flag=True,
            ),
        ),
        example=(
            "covidct segment-eval --model results/models/infection_unet.keras --images Imgs/ "
            "--masks GT/ --out metrics.json"
        ),
    ),
    Verb(
        "pacs-pull",
        "retrieve the studies of a PACS (DICOMweb) that the sheet does not list into the raw folder layout",
        _pacs_pull,
        (
            Arg("url", "DICOMweb base URL of the clinical PACS", flag=True, config="pacs.pull.url"),
            Arg("sheet", "the patient sheet the rows are appended to", flag=True, type=Path, config="patients"),
            Arg("raw_dir", "folder the studies are written into", flag=True, config="pacs.pull.raw_dir"),
            KEY_FILE,
            Arg("modality", "ModalitiesInStudy of the query", flag=True, config="pacs.pull.modality"),
            Arg("study_date", "StudyDate range of the query, e.g. 20200301-", flag=True, config="pacs.pull.study_date"),
        ),
        example=(
            "covidct pacs-pull --url http://pacs.example:8042/dicom-web --sheet "
            "config/patients.tsv --key-file ~/covidct.key"
        ),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, built from ``VERBS``; each verb's help ends with its example."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="covidct", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw)
    parser.add_argument("--version", action="version", version=f"covidct {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="verb", required=True, title="commands", metavar="<command>")
    for verb in VERBS:
        p = sub.add_parser(
            verb.name, help=verb.help, description=verb.help, epilog=f"example:\n  {verb.example}", formatter_class=raw
        )
        for arg in verb.args:
            arg.add_to(p)
    return parser


def in_user_words(message: str, args: dict[str, Any]) -> str:
    """A message of the library told in the words the user typed: the raw folder the workflow names
    ``<dicom_dir of P>`` (a sheet's path may carry identifiers) is the path given on the command line,
    ``anonymize.key_file in the config`` is ``--key-file``, the config's opt-in is the flag."""
    words = {KEY_FILE_SETTING: "--key-file", ALLOW_SYNTHETIC: "--allow-synthetic-model"}
    if args.get("raw_dir") and args.get("patient"):
        words[raw_placeholder(args["patient"])] = str(args["raw_dir"])
        words[SHEET_DICOM_DIR] = "the DICOM folder"
    for workflow, user in words.items():
        message = message.replace(workflow, user)
    return message


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``covidct`` command."""
    args = vars(build_parser().parse_args(argv))
    name, verbose = args.pop("verb"), args.pop("verbose")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    verb = next(v for v in VERBS if v.name == name)
    if args.get("patient") is not None and not re.fullmatch(SAFE_ID, args["patient"]):
        print(
            f"covidct {name}: error: --patient must be a pseudonym of {SAFE_ID_WORDS} only (no spaces, dots or "
            "slashes), such as P0001; never the patient's name",
            file=sys.stderr,
        )
        return 1
    try:
        result = verb.function(**args)
    except CovidctError as exc:
        print(f"covidct {name}: error: {in_user_words(str(exc), args)}", file=sys.stderr)
        return 1
    if isinstance(result, (str, Path)):
        print(result)
    elif isinstance(result, dict) and name == "anonymize":
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
