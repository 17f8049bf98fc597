"""One function per rule, file in / file out: the contract between the workflow and the library.

One module per rules file (``covidct.steps.lungs`` holds the steps of ``workflow/rules/lungs.smk``);
every step is importable from here. The rule ``R`` runs ``covidct.steps.R``
(``workflow/scripts/step.py`` through ``covidct.smk.run_rule``), and the names line up:

- each named input ``x`` of the rule is the argument ``x`` (a path, or a list of paths);
- each named output ``y`` is the argument ``out_y``: every file a step writes is a declared output
  passed in;
- each param ``p`` is the argument ``p``, each wildcard ``w`` the argument ``w``;
- ``sheet`` is the patient sheet of the configuration, read inside the job (a raw folder's name may
  carry real identifiers, so it never passes through Snakemake); ``threads`` the rule's threads.

A step reads its inputs, makes one call into the package that owns the concept, and writes its
outputs. A step's module is imported when the step is first used (a Snakemake job loads only the
packages its own rules file needs). ``tests/unit/test_contract.py`` checks every rule's names against
its step's signature and that the step lives in the module of its rules file. The command line
(``covidct <verb>``) calls the same functions.
"""

import importlib

#: The module of every step: the rules file its rule is in (a job imports only its own module: start-up cost).
MODULES = {
    "anonymize_dicom": "anonymize",
    "verify_anonymization": "anonymize",
    "reject_sheet_row": "demo",
    "synth_patient": "demo",
    "export_npy": "export",
    "cross_validate_infection_unet": "infection",
    "evaluate_infection_unet": "infection",
    "segment_infection": "infection",
    "synth_infection_training": "demo",
    "train_infection_unet": "infection",
    "evaluate_lung_mask": "lung_eval",
    "lung_eval_table": "lung_eval",
    "qc_montage": "lungs",
    "segment_lobes": "lungs",
    "segment_lungs": "lungs",
    "build_hdf5": "models",
    "cross_validate": "models",
    "evaluate": "models",
    "predict": "models",
    "summarize": "models",
    "train_classifier": "models",
    "train_scorer": "models",
    "dicom_to_hu": "preprocess",
    "evaluate_native_lung_mask": "clinical",
    "native_masks": "clinical",
    "push_to_pacs": "clinical",
    "verify_dicom_outputs": "clinical",
    "write_dicom_seg": "clinical",
    "write_dicom_sr": "clinical",
    "resample_volume": "preprocess",
    "severity_cohort": "severity",
    "severity_followup": "severity",
    "severity_readout": "severity",
    "severity_vs_score": "severity",
}

__all__ = [
    "anonymize_dicom",
    "build_hdf5",
    "cross_validate",
    "cross_validate_infection_unet",
    "dicom_to_hu",
    "evaluate",
    "evaluate_infection_unet",
    "evaluate_lung_mask",
    "evaluate_native_lung_mask",
    "export_npy",
    "lung_eval_table",
    "native_masks",
    "predict",
    "push_to_pacs",
    "qc_montage",
    "reject_sheet_row",
    "resample_volume",
    "segment_infection",
    "segment_lobes",
    "segment_lungs",
    "severity_cohort",
    "severity_followup",
    "severity_readout",
    "severity_vs_score",
    "summarize",
    "synth_infection_training",
    "synth_patient",
    "train_classifier",
    "train_infection_unet",
    "train_scorer",
    "verify_anonymization",
    "verify_dicom_outputs",
    "write_dicom_seg",
    "write_dicom_sr",
]


def __getattr__(name: str):
    """``covidct.steps.<step>``: the step, its module imported on first use."""
    if name in MODULES:
        return getattr(importlib.import_module(f"covidct.steps.{MODULES[name]}"), name)
    raise AttributeError(f"module 'covidct.steps' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
