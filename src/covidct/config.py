"""The configuration schema (``workflow/schemas/config.schema.yaml``) as the one source of defaults:
the workflow validates ``config/config.yaml`` against it, and the command line takes its defaults
from it, so a default is written once."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from covidct.errors import CovidctError

#: The schema in the repository checkout covidct is installed from (``pip install -e``).
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@functools.cache
def schema() -> dict:
    """The configuration schema, read once."""
    import yaml

    if not SCHEMA.is_file():
        raise CovidctError(
            "the configuration schema is not found: covidct runs from its repository checkout (pip install -e .)",
            path=SCHEMA,
        )
    return yaml.safe_load(SCHEMA.read_text())


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
