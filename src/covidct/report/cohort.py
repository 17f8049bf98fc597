"""The cohort's distribution for the report: patients by label, severity class and CTSI, per split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from covidct.io import atomic_path
from covidct.report.plots import bar_counts
from covidct.severity import SEVERITY_CLASSES, ctsi, severity_class
from covidct.split import SPLITS, read_split_table


def cohort_summary(
    split_table: str | Path,
    n_unlabeled: int,
    out_csv: str | Path,
    out_label: str | Path,
    out_severity: str | Path,
    out_ctsi: str | Path,
) -> None:
    """The cohort's distribution: patients by label, severity class and CTSI, per split."""
    t = read_split_table(split_table)
    pos = t[t["label"] == "1"]
    scored = pos[pos["score"] != ""]
    by_label, by_class, by_ctsi = {}, {}, {}
    for split in SPLITS:
        s = t[t["split"] == split]
        by_label[split] = {"negative": int((s["label"] == "0").sum()), "COVID-19": int((s["label"] == "1").sum())}
        sc = scored[scored["split"] == split]["score"].astype(float)
        by_class[split] = dict.fromkeys(SEVERITY_CLASSES, 0)
        by_ctsi[split] = {str(i): 0 for i in range(26)}
        for v in sc:
            by_class[split][SEVERITY_CLASSES[severity_class(v)]] += 1
            by_ctsi[split][str(ctsi(v))] += 1
    rows = []
    for kind, table in (("label", by_label), ("severity_class", by_class), ("ctsi", by_ctsi)):
        for split, counts in table.items():
            rows += [{"variable": kind, "value": k, "split": split, "patients": v} for k, v in counts.items()]
    rows.append({"variable": "label", "value": "unlabeled", "split": "none", "patients": int(n_unlabeled)})
    with atomic_path(out_csv, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    bar_counts(by_label, out_label, "Patients by label", "label")
    bar_counts(by_class, out_severity, "COVID-19 patients by severity class", "severity class")
    bar_counts(by_ctsi, out_ctsi, "COVID-19 patients by CTSI", "CTSI")
