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
outputs. ``tests/unit/test_contract.py`` checks every rule's names against its step's signature and
that the step lives in the module of its rules file. The command line (``covidct <verb>``) calls the
same functions.
"""

from covidct.steps.anonymize import anonymize_dicom, verify_anonymization
from covidct.steps.demo import reject_sheet_row, synth_patient
from covidct.steps.export import export_npy
from covidct.steps.infection import (
    evaluate_infection_unet,
    segment_infection,
    synth_infection_training,
    train_infection_unet,
)
from covidct.steps.lungs import evaluate_lung_mask, lung_eval_table, qc_montage, segment_lobes, segment_lungs
from covidct.steps.models import (
    build_hdf5,
    cross_validate,
    evaluate,
    predict,
    summarize,
    train_classifier,
    train_scorer,
)
from covidct.steps.preprocess import dicom_to_hu, resample_volume
from covidct.steps.severity import severity_cohort, severity_followup, severity_readout, severity_vs_score

__all__ = [
    "anonymize_dicom",
    "build_hdf5",
    "cross_validate",
    "dicom_to_hu",
    "evaluate",
    "evaluate_infection_unet",
    "evaluate_lung_mask",
    "export_npy",
    "lung_eval_table",
    "predict",
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
]
