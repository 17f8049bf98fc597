"""config/README.md documents every configuration key and every column of the patient sheet.

A key counts as documented when its dotted name (``lung_mask.lobes.model``; a key of a list item
``infection.train[].images``) appears in backticks in a table row or in a heading of the README's section
"Every configuration key"; a sheet column when it heads a table row of the section "The patient sheet".
For a key documented in a table row whose schema has a default, the row's default column must show
that default, so a changed default cannot leave the documentation behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG_README = ROOT / "config" / "README.md"
WORKFLOW_SCHEMAS = ROOT / "workflow" / "schemas"


def config_schema() -> dict:
    """The configuration schema the workflow validates against: through ``covidct.config`` (wherever the
    package keeps it), else the workflow's copy."""
    try:
        from covidct import config
    except ImportError:  # pragma: no cover - covidct is installed for the tests
        config = None
    if config is not None:
        if callable(getattr(config, "schema", None)):
            return config.schema()
        for name in ("SCHEMA", "SCHEMA_PATH", "CONFIG_SCHEMA"):
            path = getattr(config, name, None)
            if path is not None and Path(path).is_file():
                return yaml.safe_load(Path(path).read_text())
    return yaml.safe_load((WORKFLOW_SCHEMAS / "config.schema.yaml").read_text())


def patients_schema() -> dict:
    """The patient-sheet schema: beside the configuration schema where ``covidct.config`` names its file,
    else the workflow's."""
    try:
        from covidct import config

        path = next(
            Path(p) for p in (getattr(config, n, None) for n in ("SCHEMA", "SCHEMA_PATH", "CONFIG_SCHEMA")) if p
        )
        beside = path.with_name("patients.schema.yaml")
        if beside.is_file():
            return yaml.safe_load(beside.read_text())
    except (ImportError, StopIteration):
        pass
    return yaml.safe_load((WORKFLOW_SCHEMAS / "patients.schema.yaml").read_text())


def schema_keys(node: dict, prefix: str = "") -> dict[str, dict]:
    """Every key of a schema, dotted, with its schema node; keys of list items as ``name[].key``."""
    keys: dict[str, dict] = {}
    for name, child in (node.get("properties") or {}).items():
        dotted = prefix + name
        keys[dotted] = child
        keys.update(schema_keys(child, dotted + "."))
        items = child.get("items")
        if isinstance(items, dict) and items.get("properties"):
            keys.update(schema_keys(items, dotted + "[]."))
    return keys


def render(value) -> str:
    """A default as config/README.md writes it: YAML flow style (``[64, 128, 128]``, ``true``, ``""``)."""
    if isinstance(value, str):
        return '""' if value == "" else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def table_rows(text: str) -> dict[str, list[str]]:
    """Cells of each table row, by the backticked name in its first cell."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s:|-]+\|$", line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            m = re.fullmatch(r"`([^`]+)`", cells[0])
            if m:
                rows[m.group(1)] = cells
    return rows


def documented(text: str) -> set[str]:
    """Names in backticks in table rows and headings."""
    names = set()
    for line in text.splitlines():
        if line.startswith("|") or line.startswith("#"):
            names.update(re.findall(r"`([^`]+)`", line))
    return names


def section(text: str, title: str) -> str:
    """The part of ``text`` under the level-2 heading ``title``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"config/README.md has no section '## {title}'"
    return match.group(1)


@pytest.fixture(scope="module")
def readme() -> str:
    """The section of config/README.md that documents the configuration keys."""
    return section(CONFIG_README.read_text(), "Every configuration key")


@pytest.fixture(scope="module")
def sheet_section() -> str:
    return section(CONFIG_README.read_text(), "The patient sheet")


def test_every_schema_key_is_documented(readme):
    keys = schema_keys(config_schema())
    assert len(keys) > 50, "the schema walk found too few keys: is this the configuration schema?"
    missing = sorted(k for k in keys if k not in documented(readme))
    assert not missing, f"config/README.md does not document these configuration keys: {', '.join(missing)}"


def test_documented_defaults_are_the_schema_defaults(readme):
    rows = table_rows(readme)
    wrong = []
    for key, node in schema_keys(config_schema()).items():
        if key in rows and "default" in node:
            cell = rows[key][1].strip("`")
            if cell != render(node["default"]):
                wrong.append(f"{key}: README says {cell!r}, schema {render(node['default'])!r}")
    assert not wrong, "config/README.md shows stale defaults:\n" + "\n".join(wrong)


def test_no_documented_key_is_unknown(readme):
    """A table row naming a dotted key the schema does not have (renamed or removed) is stale."""
    keys = schema_keys(config_schema())
    stale = sorted(k for k in table_rows(readme) if k not in keys)
    assert not stale, f"config/README.md documents keys the schema does not have: {', '.join(stale)}"


def test_every_sheet_column_is_documented(sheet_section):
    columns = schema_keys(patients_schema())
    missing = sorted(c for c in columns if c not in table_rows(sheet_section))
    assert not missing, f"config/README.md does not document these patient-sheet columns: {', '.join(missing)}"


def test_render_matches_the_readme_style():
    assert render([64, 128, 128]) == "[64, 128, 128]"
    assert render("") == '""' and render(True) == "true" and render(0.0001) == "0.0001"
    assert render(["dice_ce", "bce"]) == "[dice_ce, bce]" and render({}) == "{}"
