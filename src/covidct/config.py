"""The configuration schema as the one source of defaults: the workflow validates ``config/config.yaml``
against it (``workflow/schemas/config.schema.yaml``), and the library, its steps and the command line
take their defaults from it, so a default is written once. The schema travels with the package
(``covidct/schemas/config.schema.yaml``, package data; in the repository a link to the workflow's file),
so an installed covidct reads it without a checkout."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from covidct.errors import CovidctError

#: The schema, shipped with the package.
SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
#: libyaml's loader where PyYAML has it: the schema is read in every job (defaults of the steps'
#: arguments), 0.03-0.07 s instead of 0.36-0.39 s with the pure-Python loader (same result).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: The keys of the ``infection`` config block that set the U-Net's training (``covidct.infection.train.train``).
INFECTION_TRAINING_KEYS = (
    "size",
    "base_filters",
    "norm",
    "variants",
    "folds",
    "epochs",
    "warmup_epochs",
    "batch_size",
    "learning_rate",
    "retries",
    "seed",
    "augment",
    "tta",
    "max_slices_per_volume",
    "ensemble_folds",
    "threshold_from_cv",
)


#: The training keys a cross-validation fold does not use (the final training does): the workflow leaves them
#: out of the fold jobs' params (``INFECTION_FOLD_PARAMS``), so a new variant or threshold rule re-runs no fold.
INFECTION_FINAL_ONLY_KEYS = ("variants", "threshold_from_cv")


@functools.cache
def schema() -> dict:
    """The configuration schema, read once."""
    if not SCHEMA.is_file():
        raise CovidctError(
            "the configuration schema is not found: this covidct installation is incomplete", path=SCHEMA
        )
    return yaml.load(SCHEMA.read_text(), Loader=_LOADER)


def _node(key: str) -> dict:
    node = schema()
    for part in key.split("."):
        try:
            node = node["properties"][part]
        except KeyError:
            raise KeyError(f"no configuration key {key} in {SCHEMA.name}") from None
    return node


def default(key: str) -> Any:
    """The default of a dotted configuration key.

    >>> default("resample.spacing_mm"), default("export.shape")
    (1.5, [64, 128, 128])
    """
    node = _node(key)
    if "default" not in node:
        raise KeyError(f"configuration key {key} has no default in {SCHEMA.name}")
    return node["default"]


def choices(key: str) -> list | None:
    """The allowed values of a dotted configuration key (its ``enum``), if any.

    >>> choices("lung_mask.backend")
    ['threshold', 'lungmask']
    """
    return _node(key).get("enum")


def describe(key: str) -> str:
    """The description of a dotted configuration key."""
    return str(_node(key).get("description", ""))


#: Python types of the schema's scalar types.
TYPES = {"number": float, "integer": int, "string": str}


def argument(key: str) -> dict:
    """How a command-line flag takes a dotted configuration key, from its schema: ``help`` (the
    description), ``type`` (of each value), ``nargs`` (an array of fixed length: that many values),
    ``action`` (``store_true`` for a boolean).

    >>> argument("export.shape")["nargs"], argument("lung_mask.force_cpu")["action"]
    (3, 'store_true')
    """
    node = _node(key)
    kind, nargs, action = node.get("type"), None, None
    if kind == "array":
        nargs = node["minItems"] if node.get("minItems") == node.get("maxItems") else "+"
        kind = node.get("items", {}).get("type", "string")
    if kind == "boolean":
        action, kind = "store_true", None
    return {"help": describe(key), "type": TYPES.get(kind), "nargs": nargs, "action": action}
