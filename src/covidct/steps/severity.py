"""The steps of ``workflow/rules/severity.smk``: each patient's clinical read-out and its panel, the
cohort table of read-outs and its plots."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from covidct.io import read_json, write_json
from covidct.severity.cohort import cohort_rows, plot_po_vs_score, read_cohort_table, write_cohort_table
from covidct.severity.followup import follow_up, follow_up_subjects
from covidct.severity.panel import severity_panel
from covidct.severity.readout import (
    CONSOLIDATION_ABOVE_HU,
    HIGH_OPACITY_HU,
    MIN_LESION_ML,
    ReadoutSettings,
    read_out,
    total_text,
)
from covidct.volume import Volume

log = logging.getLogger(__name__)


def severity_readout(
    volume: str | Path,
    labels: str | Path,
    infection: str | Path,
    hu_info: str | Path | None,
    out_json: str | Path,
    out_png: str | Path,
    patient: str,
    lobes: str | Path | list | None = None,
    types: str | Path | list | None = None,
    infection_info: str | Path | None = None,
    high_opacity_hu: float = HIGH_OPACITY_HU,
    consolidation_above_hu: float = CONSOLIDATION_ABOVE_HU,
    min_lesion_ml: float = MIN_LESION_ML,
) -> dict:
    """The clinical severity read-out of one patient (``covidct.severity.readout``): per lobe (``lobes``, a
    lobe model's map) or per geometric zone (no ``lobes``) volume, infected percent and 0-5 score, CTSS or
    zone score, PO and PHO per lung and total, ground-glass and consolidation (from ``types``, a
    lesion-type map 1 ground-glass / 2 consolidation, else HU bands), the severity class of the PO;
    the JSON (with the anonymizer's shifted study date from ``hu_info``, the HU step's JSON, when
    given) and the severity panel PNG.
    All maps lie on the resampled volume's grid; ``lobes``/``types`` may be empty lists (none). When the
    infection step's JSON (``infection_info``) says its model has no lesion-type head, ``types`` is ignored."""
    started = time.perf_counter()
    scan = Volume.read(volume)
    maps = {"lobes": Volume.read(lobes) if lobes else None, "types": Volume.read(types) if types else None}
    seg = read_json(infection_info) if infection_info else {}
    typed = not infection_info or seg.get("lesion_types") == "model"
    study = read_json(hu_info).get("study", {}) if hu_info else {}
    settings = ReadoutSettings(high_opacity_hu, consolidation_above_hu, min_lesion_ml)
    readout = read_out(
        scan, Volume.read(labels), Volume.read(infection), patient, **maps, typed=typed, study=study, settings=settings
    )
    readout.result["warning"] = seg.get("warning")  # a synthetic-only infection model (covidct.modelcard)
    severity_panel(readout, scan.array, out_png)
    result = {**readout.result, "step_seconds": round(time.perf_counter() - started, 2)}
    write_json(out_json, result)
    flags = "; ".join(result["qc"]["flags"]) or "none"
    log.info(
        "patient %s: %s, PO %.1f %%, PHO %.1f %%, %s; QC flags: %s",
        *(patient, readout.scheme.name, result["po"], result["pho"], total_text(result), flags),
    )
    return result


def severity_cohort(readouts: list[str], out_csv: str | Path, patients: list[dict]) -> None:
    """The cohort table of the severity read-outs (``results/severity/cohort.csv``): per patient its
    subject, shifted study date, the sheet's score and the read-out's columns. ``patients``: the
    sheet's rows (patient_id, score, subject_id)."""
    write_cohort_table(cohort_rows([read_json(path) for path in readouts], patients), out_csv)


def severity_vs_score(table: str | Path, out_png: str | Path) -> None:
    """The cohort plot of PO against the sheet's score, for the patients that have one."""
    plot_po_vs_score(read_cohort_table(table), out_png)


def severity_followup(table: str | Path, out_png: str | Path) -> None:
    """Each subject's scores over its (shifted) scan dates, for the subjects with several scans."""
    subjects, undated = follow_up_subjects(read_cohort_table(table))
    if not subjects:
        log.warning("no subject has a dated scan (dates removed by the anonymizer?): the plot says so")
    follow_up(subjects, out_png, undated)
