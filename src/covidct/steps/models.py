"""The steps of ``workflow/rules/models.smk``: the data sets, the two 3D models trained and
cross-validated, predictions for every patient, their evaluation and the metrics page."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from covidct import config
from covidct.evaluation.reports import DEMO_WARNING, EvaluationSettings, evaluate_predictions
from covidct.hounsfield import MODEL_WINDOW_HU
from covidct.io import read_json, write_json
from covidct.modelcard import write_card
from covidct.models.card import model_card
from covidct.models.data import build_datasets
from covidct.models.inputs import DEFAULT_SHAPE
from covidct.models.predict import annotate, check_models, predict_arrays, write_predictions
from covidct.models.train import TrainSettings, plot_training, save_model, train_model
from covidct.models.train import cross_validate as cross_validate_models
from covidct.report.cohort import cohort_summary
from covidct.report.metrics_page import write_metrics_page
from covidct.report.plots import evaluation_plots
from covidct.split import read_split_table

log = logging.getLogger(__name__)


def build_hdf5(
    npy: list[str],
    out_train: str | Path,
    out_val: str | Path,
    out_test: str | Path,
    out_split: str | Path,
    patients: list[dict],
    val_fraction: float = config.default("split.val_fraction"),
    test_fraction: float = config.default("split.test_fraction"),
    salt: str = config.default("split.salt"),
    shape=DEFAULT_SHAPE,
    hu_window=MODEL_WINDOW_HU,
    dtype: str = config.default("dataset.dtype"),
) -> dict:
    """Split labeled patients by subject into train/val/test and stream their arrays into three HDF5
    files (``covidct.models.data.build_datasets``; ``npy``: one array per entry of ``patients``)."""
    outputs = (out_train, out_val, out_test)
    return build_datasets(npy, patients, outputs, out_split, val_fraction, test_fraction, salt, shape, hu_window, dtype)


def train_classifier(
    train_set: str | Path,
    val_set: str | Path,
    split: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_card: str | Path,
    out_card_md: str | Path,
    out_training: str | Path,
    out_roc: str | Path,
    train: dict,
    demo_patients: list[str] = (),
) -> dict:
    """Train the COVID-19 classifier with the ``train`` config block (``covidct.models.train``): the
    epoch with the best val AUC, the threshold by Youden's J on val. Its model card (``covidct.models.card``)
    says which of its patients the demo generated (``demo_patients``: synthetic)."""
    settings = TrainSettings.from_config(train)
    trained = train_model("classifier", train_set, val_set, Path(out_model).parent, settings)
    save_model(trained, out_model, out_sidecar, out_history, out_metrics)
    write_card(model_card("classifier", trained, settings, train_set, split, demo_patients), out_card, out_card_md)
    plot_training("classifier", trained, out_training, out_roc)
    return trained.metrics


def train_scorer(
    train_set: str | Path,
    val_set: str | Path,
    split: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_card: str | Path,
    out_card_md: str | Path,
    out_training: str | Path,
    out_scatter: str | Path,
    out_confusion: str | Path,
    train: dict,
    demo_patients: list[str] = (),
) -> dict:
    """Train the severity scorer with the ``train`` config block and its ``scorer`` settings: the epoch
    with the best val MAE; its model card as the classifier's."""
    settings = TrainSettings.from_config(train)
    trained = train_model("scorer", train_set, val_set, Path(out_model).parent, settings)
    save_model(trained, out_model, out_sidecar, out_history, out_metrics)
    write_card(model_card("scorer", trained, settings, train_set, split, demo_patients), out_card, out_card_md)
    plot_training("scorer", trained, out_training, out_scatter, out_confusion)
    return trained.metrics


def predict(
    npy: list[str],
    split: str | Path,
    classifier: str | Path,
    classifier_sidecar: str | Path,
    scorer: str | Path,
    out_csv: str | Path,
    patient_ids: list[str],
    infection: list[str] | None = None,
    severity: list[str] | None = None,
    labeled: list[str] = (),
    classifier_card: str | Path | list | None = None,
    scorer_card: str | Path | list | None = None,
    demo_patients: list[str] = (),
    allow_synthetic: bool = False,
) -> None:
    """Predictions for every patient (labeled or not): probability, label, score, class, CTSI, the
    segmentation severity (``seg_*``) from each patient's infection JSON and the clinical read-out
    (CTSS or zone score, per-region scores, PO, PHO, lesion types, PO class) from each patient's
    severity JSON, when given (``covidct.models.predict``).

    ``split`` is train/val/test from the data sets the models were trained on, ``new`` for a labeled
    patient the models have not seen (``retrain: false``), ``unlabeled`` otherwise.

    A classifier or scorer trained only on synthetic patients (its card; a model from before cards has
    none) reads a patient the demo did not generate only with ``allow_synthetic``, and that patient's row
    then says so in ``warning`` (``covidct.models.predict.check_models``); refused, nothing is written."""
    cards = {
        name: (read_json(card) if card else None, model)
        for name, card, model in (("classifier", classifier_card, classifier), ("scorer", scorer_card, scorer))
    }
    warnings = check_models(cards, patient_ids, demo_patients, allow_synthetic)
    splits = read_split_table(split).set_index("patient_id")["split"].to_dict()
    threshold = float(read_json(classifier_sidecar)["threshold"])
    rows = predict_arrays(((pid, np.load(path)) for pid, path in zip(patient_ids, npy)), classifier, scorer, threshold)
    for row in rows:
        row["warning"] = warnings[row["patient_id"]]
    seg = [(path, read_json(path)) for path in infection or []]
    readouts = [(path, read_json(path)) for path in severity or []]
    write_predictions(annotate(rows, splits, labeled, seg, readouts), out_csv)


def evaluate(
    predictions: str | Path,
    split: str | Path,
    classifier_sidecar: str | Path,
    scorer_sidecar: str | Path,
    out_evaluation: str | Path,
    out_roc: str | Path,
    out_calibration: str | Path,
    out_scatter: str | Path,
    out_confusion: str | Path,
    evaluation: dict | None = None,
    demo: bool = False,
) -> dict:
    """Test-split figures of both models (the headline), val figures apart, with bootstrap intervals by
    subject, calibration, baselines, and "not interpretable" below ``evaluation["min_subjects"]``
    (``covidct.evaluation.reports``); test plots. ``evaluation`` is the config block."""
    e = EvaluationSettings.from_config(evaluation)
    preds, table = pd.read_csv(predictions, dtype={"patient_id": str}), read_split_table(split)
    threshold, reg = float(read_json(classifier_sidecar)["threshold"]), read_json(scorer_sidecar)
    positives_only = bool(reg.get("positives_only", TrainSettings().positives_only))
    result = evaluate_predictions(
        *(preds, table, threshold, positives_only, float(reg["train_mean"])),
        *(e.bootstrap, e.seed, e.min_subjects, e.confidence, e.calibration_bins),
    )
    result.update({"demo": demo, **({"warning": DEMO_WARNING} if demo else {})})
    write_json(out_evaluation, result)
    evaluation_plots(result, preds, table, positives_only, out_roc, out_calibration, out_scatter, out_confusion)
    c, r = result["classifier"]["test"], result["scorer"]["test"]
    log.info(
        "evaluation: test classifier %s; scorer %s", c["reason"] or "interpretable", r["reason"] or "interpretable"
    )
    return result


def cross_validate(
    train_set: str | Path,
    val_set: str | Path,
    split: str | Path,
    out_cv: str | Path,
    folds: int,
    salt: str,
    train: dict,
    evaluation: dict | None = None,
) -> dict:
    """k-fold cross-validation of both models over train + val by subject (``covidct.models.train.cross_validate``)."""
    e, settings = EvaluationSettings.from_config(evaluation), TrainSettings.from_config(train)
    return cross_validate_models(train_set, val_set, split, out_cv, folds, salt, e.bootstrap, e.min_subjects, settings)


def summarize(
    evaluation: str | Path,
    classifier: str | Path,
    scorer: str | Path,
    infection: str | Path,
    split: str | Path,
    out_metrics: str | Path,
    out_cohort: str | Path,
    out_label: str | Path,
    out_severity: str | Path,
    out_ctsi: str | Path,
    n_unlabeled: int = 0,
    cross_validation: str | Path | list | None = None,
    classifier_card: str | Path | list | None = None,
    scorer_card: str | Path | list | None = None,
    infection_card: str | Path | list | None = None,
) -> None:
    """The metrics page of the report (``covidct.report.metrics_page``), plus the cohort summary
    (``covidct.report.cohort``).

    It leads with the test split's figures and their confidence intervals (or "not interpretable
    (n=...)"), with the baselines beside them; then cross-validation when it was run; then the
    validation figures, apart, as the split that chose checkpoints and threshold. ``classifier``,
    ``scorer`` and ``infection`` are the training metrics of the three models; ``cross_validation``
    the cross-validation results, or nothing (None or an empty list) when it was not run; the ``*_card``
    inputs the models' cards (a model trained before cards has none: an empty list).
    """
    cohort_summary(split, n_unlabeled, out_cohort, out_label, out_severity, out_ctsi)
    models = [read_json(path) for path in (evaluation, classifier, scorer, infection)]
    cards = [read_json(path) for path in (classifier_card, scorer_card, infection_card) if path]
    write_metrics_page(out_metrics, *models, read_json(cross_validation) if cross_validation else None, cards)
