"""The cohort of severity read-outs: the table of every patient's read-out beside the sheet's subject,
scan date and score (``results/severity/cohort.csv``), and the plot of PO against the sheet's score."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from covidct.figures import figure, save
from covidct.io import atomic_path
from covidct.severity.readout import READOUT_COLUMNS, readout_row

#: Columns of the cohort table of read-outs (``results/severity/cohort.csv``) before the read-out's own.
COHORT_KEYS = ["patient_id", "subject_id", "study_date", "sheet_score"]


def cohort_rows(readouts: Sequence[dict], patients: Sequence[dict]) -> list[dict]:
    """One row per read-out (its JSON): the patient, the sheet's subject and score, the read-out's
    shifted study date and its READOUT_COLUMNS. ``patients``: the sheet's rows (patient_id, score,
    subject_id)."""
    sheet = {p["patient_id"]: p for p in patients}
    rows = []
    for result in readouts:
        row = sheet.get(result["patient_id"], {})
        rows.append(
            {
                "patient_id": result["patient_id"],
                "subject_id": row.get("subject_id", ""),
                "study_date": result.get("study_date") or "",
                "sheet_score": row.get("score", ""),
                **readout_row(result),
            }
        )
    return rows


def write_cohort_table(rows: Sequence[dict], path: str | Path) -> None:
    """The cohort table as CSV (COHORT_KEYS, then READOUT_COLUMNS; empty where None), atomically."""
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COHORT_KEYS + READOUT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def read_cohort_table(path: str | Path) -> list[dict]:
    """The rows of a cohort table (strings, as written)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def po_vs_score(sheet_scores: Sequence[float], po: Sequence[float], path: str | Path, labels: Sequence[str]) -> None:
    """Scatter of the read-out's PO against the sheet's score (percent of lung involved), with the
    identity line, Pearson r and mean absolute difference in the title."""
    x, y = np.asarray(sheet_scores, float), np.asarray(po, float)
    fig = figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.scatter(x, y, s=18)
    for xi, yi, label in zip(x, y, labels):
        ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=6)
    ax.plot([0, 100], [0, 100], "k--", lw=0.8)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("sheet score (% of lung involved)")
    ax.set_ylabel("PO (% of lung opacified, read-out)")
    stats = f"n={len(x)}"
    if len(x) >= 2 and x.std() > 0 and y.std() > 0:
        stats += f", r={np.corrcoef(x, y)[0, 1]:.2f}"
    if len(x):
        stats += f", mean |PO - score|={np.abs(y - x).mean():.1f}"
    ax.set_title(f"PO vs the sheet's score ({stats})", fontsize=9)
    save(fig, path)


def plot_po_vs_score(rows: Sequence[dict], path: str | Path) -> None:
    """The cohort plot of PO against the sheet's score, for the rows (cohort table rows) that have one."""
    scored = [r for r in rows if r["sheet_score"].strip()]
    po_vs_score(
        [float(r["sheet_score"]) for r in scored],
        [float(r["po"]) for r in scored],
        path,
        [r["patient_id"] for r in scored],
    )
