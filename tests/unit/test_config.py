"""The configuration schema, the one source of defaults: shipped with the package, read by the library,
its steps and the command line."""

from __future__ import annotations

import inspect

import yaml

from covidct import config, steps
from covidct.evaluation.reports import EvaluationSettings
from covidct.lungs.segment import LungMaskSettings
from covidct.models.train import TrainSettings
from helpers import REPO


def test_the_schema_travels_with_the_package_and_is_the_workflows():
    assert config.SCHEMA.parent.name == "schemas" and config.SCHEMA.parent.parent.name == "covidct"
    workflow = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert yaml.safe_load(workflow.read_text()) == config.schema()


def test_flags_are_built_from_the_schema():
    assert config.argument("resample.spacing_mm") == {
        "help": config.describe("resample.spacing_mm"),
        "type": float,
        "nargs": None,
        "action": None,
    }
    assert config.argument("export.hu_window")["nargs"] == 2 and config.argument("export.hu_window")["type"] is float
    assert config.argument("hu.min_slices")["type"] is int and config.argument("anonymize.dates")["type"] is str
    assert config.argument("lung_mask.force_cpu") == {
        "help": config.describe("lung_mask.force_cpu"),
        "type": None,
        "nargs": None,
        "action": "store_true",
    }


def test_settings_records_default_to_the_schema():
    train = TrainSettings()
    assert train.epochs == config.default("train.epochs") and list(train.filters) == config.default("train.filters")
    assert train.loss == config.default("train.scorer.loss")
    assert TrainSettings.from_config({"epochs": 2, "scorer": {"loss": "mse"}}) == TrainSettings(epochs=2, loss="mse")
    assert EvaluationSettings().bootstrap == config.default("evaluation.bootstrap") == 2000
    assert LungMaskSettings().backend == config.default("lung_mask.backend")


def test_step_defaults_are_the_schemas():
    """A step's default for a config-driven argument is the schema's (the rule always gives it)."""
    checks = {
        ("dicom_to_hu", "max_slices"): "hu.max_slices",
        ("segment_lungs", "batch_size"): "lung_mask.batch_size",
        ("qc_montage", "n_slices"): "qc.n_slices",
        ("build_hdf5", "salt"): "split.salt",
        ("export_npy", "margin_mm"): "export.margin_mm",
    }
    for (step, arg), key in checks.items():
        assert inspect.signature(getattr(steps, step)).parameters[arg].default == config.default(key), (step, arg)
    shape = inspect.signature(steps.export_npy).parameters["shape"].default
    assert list(shape) == config.default("export.shape")
