"""Model cards: what each trained model learned from, and whether it may read a real patient.

Every model the workflow trains (the infection U-Net, the 3D classifier and scorer) gets a card beside
it (``<model>.card.json`` and a readable ``<model>.card.md``): its training sources (each synthetic or
real, with counts of images, volumes and subjects), its cross-validated or validation figures, its input
(size, input space or HU window), the date it was trained and the code version.

A model trained only on synthetic phantoms has not earned the right to read a real patient: applied to
a patient that the demo did not generate, it is refused (``check_may_read``) unless the user opts in
explicitly (``allow_synthetic``), and then every output of that patient says so
(``SYNTHETIC_WARNING``).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

from covidct import __version__
from covidct.errors import CovidctError
from covidct.io import atomic_path, read_json, write_json

#: What every output of a patient read by a synthetic-only model says.
SYNTHETIC_WARNING = "model trained on synthetic phantoms only: not a measurement of a real patient"
#: A training folder holding this file is synthetic (written with the phantoms).
SYNTHETIC_MARKER = "SYNTHETIC.json"
SOURCE_KINDS = ("synthetic", "real")
#: How a message names the opt-in (the command line says only its flag).
ALLOW_SYNTHETIC = "allow_synthetic_models: true in the config, or --allow-synthetic-model"


def code_version() -> str:
    """covidct's version, with the git commit of the checkout when there is one."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def source_entry(name: str, kind: str, **counts: Any) -> dict:
    """One training source of a card: its name (a folder's name, never a patient's), ``synthetic`` or ``real``,
    and its counts (images, volumes, subjects, slices...).

    >>> source_entry("Imgs", "real", images=50)
    {'name': 'Imgs', 'kind': 'real', 'images': 50}
    """
    if kind not in SOURCE_KINDS:
        raise ValueError(f"source kind {kind!r}: use one of {SOURCE_KINDS}")
    return {"name": name, "kind": kind, **counts}


def is_synthetic_folder(folder: str | Path) -> bool:
    """A training folder written by covidct's phantom generator (it holds ``SYNTHETIC_MARKER``)."""
    return (Path(folder) / SYNTHETIC_MARKER).is_file() or (Path(folder).parent / SYNTHETIC_MARKER).is_file()


def make_card(
    model: str,
    sources: list[dict],
    figures: dict,
    inputs: dict,
    settings: dict | None = None,
    data_sheet: dict | None = None,
    dated: bool = True,
) -> dict:
    """A model card.

    Args:
        model: What the model is (``infection_unet``, ``classifier``, ``scorer``).
        sources: ``source_entry`` dicts.
        figures: Its measured figures, each labelled with how they were measured.
        inputs: What it reads (size, input space or window).
        settings: Training settings worth knowing (variant, epochs...).
        data_sheet: What the data set holds, row by row (``{row: {column: value}}``, e.g. one row per split).
        dated: Say when it was trained; without, the card of the same training is the same file (its code
            version still says which code trained it).
    """
    kinds = {s["kind"] for s in sources}
    card = {
        "model": model,
        "trained_on": "synthetic" if kinds == {"synthetic"} else ("real" if kinds == {"real"} else "mixed"),
        "sources": sources,
        "figures": figures,
        "inputs": inputs,
        "settings": settings or {},
    }
    if data_sheet:
        card["data_sheet"] = data_sheet
    if dated:
        card["trained"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    card["code_version"] = code_version()
    return card


def card_paths(model_path: str | Path) -> tuple[Path, Path]:
    """(JSON, Markdown) card paths beside a model file."""
    model_path = Path(model_path)
    stem = model_path.name.split(".")[0]
    return model_path.with_name(f"{stem}.card.json"), model_path.with_name(f"{stem}.card.md")


def to_markdown(card: dict) -> str:
    """The card as a page a person reads."""
    lines = [f"# Model card: {card['model']}", ""]
    if card["trained_on"] == "synthetic":
        lines += [
            f"**{SYNTHETIC_WARNING}.** It reads only the demo's synthetic patients unless",
            "explicitly allowed.",
            "",
        ]  # noqa: E501
    lines += [f"- trained on: {card['trained_on']} data"]
    lines += [f"- trained: {card['trained']}"] if "trained" in card else []
    lines += [f"- code version: {card['code_version']}", "", "## Training sources", "",
              "| source | kind | counts |", "|---|---|---|"]  # fmt: skip
    for s in card["sources"]:
        counts = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("name", "kind"))
        lines.append(f"| {s['name']} | {s['kind']} | {counts} |")
    lines += ["", "## Figures", ""] + [f"- {k}: {v}" for k, v in card["figures"].items()]
    lines += ["", "## Input", ""] + [f"- {k}: {v}" for k, v in card["inputs"].items()]
    if card["settings"]:
        lines += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in card["settings"].items()]
    if card.get("data_sheet"):
        columns = list(dict.fromkeys(c for row in card["data_sheet"].values() for c in row))
        lines += ["", "## Data sheet", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for name, row in card["data_sheet"].items():
            lines.append(f"| {name} | " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_card(card: dict, out_json: str | Path, out_md: str | Path | None = None) -> None:
    """Write the card's JSON (and its Markdown page)."""
    write_json(out_json, card)
    if out_md is not None:
        with atomic_path(out_md, suffix=".md") as tmp:
            Path(tmp).write_text(to_markdown(card))


def read_card(model_path: str | Path) -> dict | None:
    """The card beside a model, or None when it has none (a model from before cards)."""
    path = card_paths(model_path)[0]
    return read_json(path) if path.is_file() else None


def check_may_read(
    card: dict | None, model_path: str | Path, patient: str, demo_patient: bool, allow_synthetic: bool
) -> str | None:
    """Whether the model may read this patient: None (yes), ``SYNTHETIC_WARNING`` (a synthetic-only model
    allowed explicitly on a patient the demo did not generate: every output must say so).

    Raises:
        CovidctError: a synthetic-only model on a real patient without the opt-in, or a model without a
            card on a real patient (its training data cannot be told).
    """
    if demo_patient:
        return None
    if card is None:
        if allow_synthetic:
            return "model without a card: its training data are unknown"
        raise CovidctError(
            "the model has no model card beside it, so what it was trained on cannot be told; retrain it with "
            f"this version (or allow it explicitly: {ALLOW_SYNTHETIC})",
            patient,
            model_path,
        )
    if card.get("trained_on") != "synthetic":
        return None
    if allow_synthetic:
        return SYNTHETIC_WARNING
    raise CovidctError(
        f"the {card.get('model', 'model')} was trained on synthetic phantoms only and has not earned the right "
        "to read a real patient: train it on real data (the infection U-Net: infection.train sources; the "
        "classifier and scorer: labeled real patients in the patient sheet), or "
        f"allow it explicitly ({ALLOW_SYNTHETIC}), and every output will say so",
        patient,
        model_path,
    )
