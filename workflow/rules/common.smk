import hashlib
import hmac
import os
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from covidct.config import INFECTION_FINAL_ONLY_KEYS
from covidct.sheet import SAFE_ID, SAFE_ID_WORDS, load_patient_sheet

# `--config retrain=false` arrives as the string "false" (Snakemake only parses True/False).
if isinstance(config.get("retrain"), str) and config["retrain"].lower() in ("true", "false"):
    config["retrain"] = config["retrain"].lower() == "true"

validate(config, schema="../schemas/config.schema.yaml")

DEMO_DIR = Path(config["demo"]["dir"])


def load_patients(path):
    """The sheet (``covidct.sheet.load_patient_sheet``: rows with an unsafe patient_id set apart, to fail
    as their own job), validated against the patient sheet schema."""
    sheet, rejected = load_patient_sheet(path)
    validate(sheet.drop(columns="row"), schema="../schemas/patients.schema.yaml")
    return sheet, rejected


patients, rejected_rows = load_patients(config["patients"])
PATIENTS = list(patients.index)
LABELED = list(patients.index[patients["label"] != ""])
UNLABELED = list(patients.index[patients["label"] == ""])
DICOM_DIRS = patients["dicom_dir"].to_dict()  # plain dict: input functions run once per job
# Patients with a lung reference (sheet column lung_reference, optional): their masks are evaluated.
LUNG_REFERENCES = (
    {pid: ref.strip() for pid, ref in patients["lung_reference"].items() if ref.strip()}
    if "lung_reference" in patients.columns
    else {}
)
LUNG_REFERENCED = list(LUNG_REFERENCES)


wildcard_constraints:
    patient=SAFE_ID,
    row=r"[0-9]+",


def _demo_ids():
    from covidct.demo.cohort import DEMO_COHORT

    return {spec.patient_id for spec in DEMO_COHORT}


DEMO_IDS = _demo_ids()


def is_demo_patient(patient):
    """Demo patients are ids of the built-in synthetic cohort whose DICOM folder is the one
    `synth_patient` generates; only they may use the public demo key."""
    return patient in DEMO_IDS and Path(DICOM_DIRS[patient]) == DEMO_DIR / "dicom" / patient


def _digest_key():
    """The anonymization key when one is configured (a keyed hash cannot be reversed by trying
    record numbers); without a key real patients are refused anyway."""
    from covidct.deid.keys import load_key
    from covidct.errors import CovidctError

    try:
        return load_key(config["anonymize"]["key_file"] or None)
    except CovidctError:
        return b"covidct-no-key"


DIGEST_KEY = _digest_key()


def get_raw_dicom_digest(wildcards):
    """A keyed hash of the patient's raw folder path. The path itself (which may hold real names
    or IDs) is read from the sheet inside the job, so it never appears in Snakemake's output or
    in .snakemake/metadata; the hash still re-runs the patient when the path changes."""
    if wildcards.patient not in DICOM_DIRS:
        raise ValueError(f"patient {wildcards.patient} is not in the patient sheet {config['patients']}")
    return hmac.new(DIGEST_KEY, DICOM_DIRS[wildcards.patient].encode(), hashlib.sha256).hexdigest()[:16]


def get_lung_reference_digest(wildcards):
    """A keyed hash of the patient's lung reference path (read from the sheet inside the job)."""
    if wildcards.patient not in LUNG_REFERENCES:
        raise ValueError(f"patient {wildcards.patient} has no lung_reference in the patient sheet {config['patients']}")
    return hmac.new(DIGEST_KEY, LUNG_REFERENCES[wildcards.patient].encode(), hashlib.sha256).hexdigest()[:16]


def get_demo_input(wildcards):
    """Demo patients depend on their generated DICOM folder; real patients on nothing."""
    if is_demo_patient(wildcards.patient):
        return DICOM_DIRS[wildcards.patient]
    return []


def get_series_override(wildcards):
    return config["hu"]["series"].get(wildcards.patient, "")


def get_threshold_params(wildcards):
    return dict(config["lung_mask"]["threshold"])


def get_labeled_npys(wildcards):
    """Arrays of the labeled patients (the only ones that go into training data)."""
    return expand("results/npy/{patient}.npy", patient=LABELED)


def get_labeled_patients(wildcards):
    """Label, score and pinned split of each labeled patient (a change re-runs the data sets)."""
    cols = ["patient_id", "label", "score"] + [c for c in ("split", "subject_id") if c in patients.columns]
    return patients.loc[LABELED, cols].to_dict("records")


INFECTION_DEMO_DIR = str(DEMO_DIR / "infection_train")
# Training sources of the infection U-Net; without any, synthetic phantoms (never demo patients).
# The phantoms' masks hold lesion types (1 ground-glass, 2 consolidation): the U-Net gets a lesion-type head.
INFECTION_SOURCES = [dict(src) for src in config["infection"]["train"]] or [
    {
        "volumes": f"{INFECTION_DEMO_DIR}/volumes",
        "masks": f"{INFECTION_DEMO_DIR}/masks",
        "lungs": f"{INFECTION_DEMO_DIR}/lungs",
        "labels": "types",
    }
]


# The folds of the U-Net's cross-validation, one job each (cross_validate_infection_unet), and the minutes each
# training run may take on a cluster: 6 h for all of them together (variants x folds + the final run).
INFECTION_FOLD_DIRS = [
    f"results/models/infection_cv/{variant}_fold{k}"
    for variant in config["infection"]["variants"]
    for k in range(1, config["infection"]["folds"] + 1)
]
INFECTION_RUN_MINUTES = max(30, 360 // (len(INFECTION_FOLD_DIRS) + 1))
# What a fold's training depends on: the infection block less what only the choice among the folds reads
# (covidct.config.INFECTION_FINAL_ONLY_KEYS, which the final training's step also uses) and the test set:
# adding a variant or changing the threshold rule re-runs no fold.
INFECTION_FOLD_PARAMS = {
    key: value
    for key, value in config["infection"].items()
    if key not in INFECTION_FINAL_ONLY_KEYS and key != "test"
}


def get_infection_source_dirs(wildcards):
    """The folders the infection U-Net trains on (the generated one when none is configured)."""
    if not config["infection"]["train"]:
        return [INFECTION_DEMO_DIR]
    keys = ("images", "volumes", "masks", "lungs", "exclude")
    return [src[key] for src in INFECTION_SOURCES for key in keys if key in src]


# The lobe model of the severity read-out; without one, six geometric zones are scored.
LOBE_MODEL = config["lung_mask"]["lobes"]["model"] if config["lung_mask"]["lobes"]["model"] != "none" else None
# The cohort plot of PO against the sheet's score needs scores; the follow-up plot a subject with two scans.
HAS_SHEET_SCORES = bool((patients["score"].str.strip() != "").any())
_SUBJECTS = patients["subject_id"].str.strip() if "subject_id" in patients.columns else pd.Series([], dtype=str)
HAS_FOLLOW_UP = bool((_SUBJECTS[_SUBJECTS != ""].value_counts() >= 2).any())


def get_lobe_map(wildcards):
    """The patient's lobe map when a lobe model is configured; else nothing (six zones)."""
    return f"results/lobes/{wildcards.patient}.nii.gz" if LOBE_MODEL else []


# Clinical outputs (workflow/rules/clinical.smk): native-grid masks, DICOM SEG and SR; the push to a research PACS.
CLINICAL = config["clinical"]["enabled"]
PACS_PUSH = config["pacs"]["push"]["enabled"]


def get_lobe_provenance(wildcards):
    """The lobe model's provenance JSON (weights' SHA-256 for the SEG) when a lobe model is configured."""
    return f"results/lobes/{wildcards.patient}.json" if LOBE_MODEL else []


def get_severity_patients(wildcards):
    """The sheet's score and subject of every patient, for the cohort table of the read-outs."""
    cols = ["patient_id", "score"] + (["subject_id"] if "subject_id" in patients.columns else [])
    return patients.loc[PATIENTS, cols].to_dict("records")


RETRAIN = config["retrain"]
TRAINED_FILES = ["results/dataset/split.tsv", "results/dataset/test.h5", "results/models/classifier.keras", "results/models/classifier.json",
                 "results/models/scorer.keras", "results/models/scorer.json", "results/metrics/classifier.json",
                 "results/metrics/scorer.json"]
if not RETRAIN and LABELED:
    _missing = [f for f in TRAINED_FILES if not os.path.exists(f)]
    if _missing:
        raise ValueError(
            f"retrain: false predicts with the models already trained, but {', '.join(_missing)} "
            "is missing: run once with retrain: true"
        )


def get_final_output():
    """Per-patient outputs of every patient in the sheet, plus a failing marker per rejected row,
    then the models, predictions and metrics when there are labeled patients."""
    outputs = expand("results/npy/{patient}.npy", patient=PATIENTS)
    outputs += expand("results/qc/{patient}.png", patient=PATIENTS)
    outputs += expand("results/verify/{patient}.json", patient=PATIENTS)
    outputs += expand("results/rejected/row{row}.txt", row=rejected_rows["row"].tolist())
    outputs += expand("results/infection_mask/{patient}.json", patient=PATIENTS)
    outputs += expand("results/severity/{patient}.json", patient=PATIENTS)
    if PATIENTS:
        outputs.append("results/severity/cohort.csv")
    if PATIENTS and HAS_SHEET_SCORES:
        outputs.append("results/plots/cohort_po_vs_score.png")
    if HAS_FOLLOW_UP:
        outputs.append("results/plots/cohort_followup.png")
    if config["infection"]["test"].get("images"):
        outputs.append("results/metrics/infection_unet_test.json")
    if LUNG_REFERENCED:
        outputs.append("results/metrics/lung_eval.csv")
    if CLINICAL:
        outputs += expand("results/dicom/{patient}/verify.json", patient=PATIENTS)
        outputs += expand("results/native/{patient}/lung_eval.json", patient=LUNG_REFERENCED)
    if CLINICAL and PACS_PUSH:
        outputs += expand("results/pacs/{patient}.json", patient=PATIENTS)
    if LABELED:
        outputs += ["results/predictions.csv", "results/metrics/evaluation.json", "results/metrics/summary.html"]
        if config["evaluation"]["folds"] and RETRAIN:
            outputs.append("results/metrics/cross_validation.json")
    return outputs


# The demo's generated patients (synthetic): a model card says how many a model learned from, and a
# synthetic-only model reads no other patient unless allow_synthetic_models.
DEMO_PATIENTS = [p for p in PATIENTS if is_demo_patient(p)]
DEMO_LABELED = [p for p in LABELED if is_demo_patient(p)]


def get_model_card(model):
    """An input function: the model card of a 3D model (``classifier``, ``scorer``). With ``retrain: false`` a
    model trained before cards has none: it then reads only the demo's patients unless allow_synthetic_models."""
    path = f"results/models/{model}.card.json"

    def card(wildcards):
        return path if RETRAIN or os.path.exists(path) else []

    return card


# The demo report says its numbers only show that the pipeline runs.
IS_DEMO_COHORT = bool(LABELED) and all(is_demo_patient(p) for p in LABELED)


def get_cross_validation(wildcards):
    """The cross-validation results the metrics page shows, when ``evaluation.folds`` asks for them."""
    if config["evaluation"]["folds"] and (RETRAIN or os.path.exists("results/metrics/cross_validation.json")):
        return "results/metrics/cross_validation.json"
    return []


def get_rejected_message(wildcards):
    return (
        f"patient sheet {config['patients']} line {wildcards.row}: patient_id is not a safe pseudonymous "
        f"identifier (allowed: {SAFE_ID_WORDS}); this row is not processed"
    )


def input_size_mb(input):
    """The size (MB) of a job's local input files, as ``input.size_mb`` gives it, by one stat each.

    ``input.size_mb`` starts an asyncio loop per job: a third of a 1,000-patient dry run. A missing
    input raises FileNotFoundError, which Snakemake turns into a resource "to be determined" and
    evaluates again when the job's inputs exist, as it does for ``input.size_mb``."""
    return sum(os.path.getsize(f) for f in input) / 2**20


def get_mem_mb(base_mb, per_input_mb=0.0):
    """A resource function: memory (MB) of a job, ``base_mb`` plus ``per_input_mb`` per MB of its
    inputs (as Snakemake sizes them), doubled on each retry."""

    def mem_mb(wildcards, input, attempt):
        return int((base_mb + (per_input_mb * input_size_mb(input) if per_input_mb else 0)) * 2 ** (attempt - 1))

    return mem_mb


def get_runtime(base_min, per_input_mb=0.0):
    """A resource function: runtime (minutes) of a job, ``base_min`` plus ``per_input_mb`` minutes
    per MB of its inputs, doubled on each retry."""

    def runtime(wildcards, input, attempt):
        return int((base_min + (per_input_mb * input_size_mb(input) if per_input_mb else 0)) * 2 ** (attempt - 1))

    return runtime


def get_cpus(wildcards, threads):
    """CPUs per task on a cluster: the rule's threads (the SLURM executor asks for cpus_per_task)."""
    return threads
