"""Pictures of the severity read-out (``covidct.readout``): the per-patient severity panel, the cohort
plot of PO against the sheet's score, and each subject's scores over its scan dates (follow-up)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from covidct.figures import figure, save
from covidct.hounsfield import QC_WINDOW_HU, window
from covidct.lungs.lobes import RegionScheme
from covidct.readout import TYPE_CONSOLIDATION, TYPE_GGO

#: Fill colour of a region by its 0-5 score (0: no fill), a yellow-to-red ramp.
SCORE_COLOURS = ("#00000000", "#fee08b", "#fdae61", "#f46d43", "#d73027", "#a50026")


#: Lesion types: ground-glass magenta, consolidation cyan (as the infection QC overlay).
TYPE_COLOURS = {TYPE_GGO: (1.0, 0.0, 1.0), TYPE_CONSOLIDATION: (0.0, 0.9, 1.0)}


OVERLAY_ALPHA = 0.5


def _pick(counts: np.ndarray, fallback: np.ndarray) -> int:
    """The index with the most of ``counts`` (infection), else of ``fallback`` (lung)."""
    return int(np.argmax(counts)) if counts.max() > 0 else int(np.argmax(fallback))


def _gray(hu2d: np.ndarray) -> np.ndarray:
    g = window(hu2d, *QC_WINDOW_HU)
    return np.repeat(g[..., None], 3, axis=2)


def _score_image(hu2d: np.ndarray, regions2d: np.ndarray, scores: dict[int, int]) -> np.ndarray:
    rgb = _gray(hu2d)
    for code, score in scores.items():
        if score == 0:
            continue
        sel = regions2d == code
        colour = np.array(to_rgba(SCORE_COLOURS[score])[:3])
        rgb[sel] = (1 - OVERLAY_ALPHA) * rgb[sel] + OVERLAY_ALPHA * colour
    return rgb


def _type_image(hu2d: np.ndarray, types2d: np.ndarray) -> np.ndarray:
    rgb = _gray(hu2d)
    for code, colour in TYPE_COLOURS.items():
        sel = types2d == code
        rgb[sel] = (1 - OVERLAY_ALPHA) * rgb[sel] + OVERLAY_ALPHA * np.array(colour)
    return rgb


def _outline(ax, regions2d: np.ndarray, scheme: RegionScheme) -> None:
    """Region borders (white) and their names at their centres."""
    for region in scheme.regions:
        sel = regions2d == region.code
        if not sel.any():
            continue
        ax.contour(sel.astype(float), levels=[0.5], colors="white", linewidths=0.6)
        rows, cols = np.nonzero(sel)
        ax.text(cols.mean(), rows.mean(), region.name, color="white", fontsize=7, ha="center", va="center")


def _numbers(result: dict) -> str:
    """The read-out as text lines for the panel."""
    lines = []
    for r in result["regions"]:
        lines.append(f"{r['name']}  {r['volume_ml']:7.0f} mL  {r['infected_percent']:5.1f} %  score {r['score']}")
    if result["scheme"] == "lobes":
        lines.append(f"CTSS (lobes) {result['ctss']} / 25")
    else:
        lines.append(f"zone score {result['zone_score']} / 30")
        lines.append("(six geometric zones, not lobes)")
    lungs = result["lungs"]
    lines += [
        "",
        f"PO  {result['po']:.1f} %  (R {lungs['right']['po']:.1f}, L {lungs['left']['po']:.1f})",
        f"PHO {result['pho']:.1f} %  (R {lungs['right']['pho']:.1f}, L {lungs['left']['pho']:.1f})",
        f"class from PO: {result['po_severity_class']}",
        "",
        f"ground-glass  {result['ggo_ml']:.0f} mL, {result['ggo_percent']:.1f} % of lung",
        f"consolidation {result['consolidation_ml']:.0f} mL, {result['consolidation_percent']:.1f} % of lung",
        "types: "
        + (
            "from the lesion-type map"
            if result["lesion_types"] == "model"
            else f"HU bands (> {result['thresholds_hu']['consolidation_above']:.0f} HU consolidation)"
        ),
        f"lung {result['lung_volume_ml']:.0f} mL",
    ]
    flags = result.get("qc", {}).get("flags", [])
    if flags:
        lines += ["", "QC:"] + [f"  {flag}" for flag in flags]
    return "\n".join(lines)


def severity_panel(
    hu: np.ndarray, regions: np.ndarray, types: np.ndarray, result: dict, scheme: RegionScheme, path, title: str
) -> None:
    """The per-patient severity panel: a coronal slice through the lungs' middle and an axial slice
    through the most infection (else the most lung), with the lobes or zones filled by their 0-5
    score, the same slices with ground-glass (magenta) and consolidation (cyan), and the numbers.
    Radiological convention: the patient's right on the image's left; anterior up (axial), superior
    up (coronal). Arrays (z, y, x) on an LPS-aligned isotropic grid."""
    scores = {r["code"]: r["score"] for r in result["regions"]}
    lung = regions > 0
    infected = types > 0
    depth = lung.sum(axis=(0, 2))
    y = int(round(float((depth * np.arange(depth.size)).sum() / max(depth.sum(), 1))))  # the lungs' middle
    z = _pick(infected.sum(axis=(1, 2)), lung.sum(axis=(1, 2)))
    views = [
        ("coronal", hu[::-1, y, :], regions[::-1, y, :], types[::-1, y, :]),
        ("axial", hu[z], regions[z], types[z]),
    ]
    fig = figure(figsize=(13, 7.5))
    grid = fig.add_gridspec(2, 3, width_ratios=(1, 1, 0.9))
    for col, (name, h, r, t) in enumerate(views):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(_score_image(h, r, scores), interpolation="nearest")
        _outline(ax, r, scheme)
        ax.set_title(f"{name}: {scheme.name} by score (0-5)", fontsize=9)
        ax.axis("off")
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(_type_image(h, t), interpolation="nearest")
        ax.set_title(f"{name}: ground-glass (magenta), consolidation (cyan)", fontsize=9)
        ax.axis("off")
    text = fig.add_subplot(grid[:, 2])
    text.axis("off")
    text.text(0.0, 1.0, _numbers(result), va="top", ha="left", family="monospace", fontsize=8.5)
    legend = [Rectangle((0, 0), 1, 1, color=SCORE_COLOURS[s]) for s in range(1, 6)]
    text.legend(legend, [f"score {s}" for s in range(1, 6)], loc="lower left", fontsize=7, ncol=5, frameon=False)
    fig.suptitle(title, fontsize=11)
    save(fig, path)


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


def follow_up(subjects: dict[str, list[dict]], path: str | Path, undated: Sequence[str] = ()) -> None:
    """Each subject's scores over its scan dates: PO and PHO (left), CTSS or zone score (right),
    against days since the subject's first scan (the anonymizer's shifted dates: the intervals are
    exact, the dates are not real).

    Args:
        subjects: subject id -> its scans, dicts with ``days`` (since its first scan), ``po``, ``pho``,
            ``scheme`` and ``ctss`` or ``zone_score``.
        path: The PNG.
        undated: Scans left out for want of a (shifted) date, named in the title.
    """
    fig = figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for subject, scans in sorted(subjects.items()):
        scans = sorted(scans, key=lambda s: s["days"])
        days = [s["days"] for s in scans]
        (line,) = left.plot(days, [s["po"] for s in scans], "-o", label=f"{subject} PO")
        left.plot(days, [s["pho"] for s in scans], ":s", color=line.get_color(), label=f"{subject} PHO")
        totals = [s["ctss"] if s["scheme"] == "lobes" else s["zone_score"] for s in scans]
        markers = ["o" if s["scheme"] == "lobes" else "^" for s in scans]
        right.plot(days, totals, "-", color=line.get_color(), label=subject)
        for d, t, m in zip(days, totals, markers):
            right.plot([d], [t], m, color=line.get_color())
    left.set_xlabel("days since the subject's first scan")
    left.set_ylabel("% of lung")
    left.set_ylim(0, 100)
    left.legend(fontsize=7)
    left.set_title("PO (solid) and PHO (dotted)", fontsize=9)
    right.set_xlabel("days since the subject's first scan")
    right.set_ylabel("CTSS, lobes (o, 0-25) / zone score, zones (^, 0-30)")
    right.set_ylim(0, 30)
    right.legend(fontsize=7)
    right.set_title("lobe / zone severity score", fontsize=9)
    if not subjects:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no dated scans (dates removed by the anonymizer)", ha="center", transform=ax.transAxes)
    note = f"; left out, no shifted date: {', '.join(undated)}" if undated else ""
    fig.suptitle(f"Follow-up scans by subject (dates shifted by the anonymizer, intervals exact){note}", fontsize=9)
    save(fig, path)


#: Columns of the cohort table of read-outs (``results/severity/cohort.csv``) before the read-out's own.
COHORT_KEYS = ["patient_id", "subject_id", "study_date", "sheet_score"]


def follow_up_subjects(rows: Sequence[dict]) -> tuple[dict[str, list[dict]], list[str]]:
    """The subjects with several scans, each scan with its days since the subject's first dated scan.

    Args:
        rows: Cohort table rows (COHORT_KEYS and the read-out's columns; ``study_date`` YYYYMMDD or empty).

    Returns:
        ``(subjects, undated)``: subject id -> its dated scans (dicts with ``patient_id``, ``days``,
        ``po``, ``pho``, ``scheme``, ``ctss``, ``zone_score``), for subjects with at least two scans;
        and the patient ids of their scans without a date.
    """
    from datetime import datetime

    groups: dict[str, list[dict]] = {}
    for row in rows:
        if str(row.get("subject_id", "")).strip():
            groups.setdefault(str(row["subject_id"]), []).append(row)
    subjects, undated = {}, []
    for subject, scans in groups.items():
        if len(scans) < 2:
            continue
        dated = []
        for scan in scans:
            date = str(scan.get("study_date") or "").strip()
            if not date:
                undated.append(scan["patient_id"])
                continue
            dated.append((datetime.strptime(date, "%Y%m%d").date(), scan))
        if not dated:
            continue
        first = min(d for d, _ in dated)

        def number(value):
            return None if value in (None, "") else float(value)

        subjects[subject] = [
            {
                "patient_id": scan["patient_id"],
                "days": (d - first).days,
                "po": float(scan["po"]),
                "pho": float(scan["pho"]),
                "scheme": scan["region_scheme"],
                "ctss": number(scan["ctss"]),
                "zone_score": number(scan["zone_score"]),
            }
            for d, scan in sorted(dated, key=lambda item: item[0])
        ]
    return subjects, sorted(undated)
