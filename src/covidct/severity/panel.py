"""The per-patient severity panel of a read-out (``covidct.severity.readout``): lobes or zones by score,
lesion types, and the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from covidct.figures import figure, save
from covidct.hounsfield import QC_WINDOW_HU, window
from covidct.lungs.lobes import RegionScheme
from covidct.severity.readout import Readout, total_text
from covidct.severity.scores import TYPE_CONSOLIDATION, TYPE_GGO

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


def panel_title(result: dict) -> str:
    """The panel's title: the patient, its shifted scan date, PO (and its class), PHO and the total."""
    date = f"  scan date {result['study_date']} (shifted)" if result.get("study_date") else ""
    return (
        f"{result['patient_id']}{date}: PO {result['po']:.1f} % ({result['po_severity_class']}), "
        f"PHO {result['pho']:.1f} %, {total_text(result)}"
    ) + (f"\n{result['warning'].upper()}" if result.get("warning") else "")


def severity_panel(readout: Readout, hu: np.ndarray, path: str | Path) -> None:
    """The per-patient severity panel of a read-out (``covidct.severity.readout.read_out``): a coronal slice
    through the lungs' middle and an axial slice through the most infection (else the most lung), with
    the lobes or zones filled by their 0-5 score, the same slices with ground-glass (magenta) and
    consolidation (cyan), and the numbers; the title from ``panel_title``. Radiological convention: the
    patient's right on the image's left; anterior up (axial), superior up (coronal). ``hu`` (z, y, x) on
    the read-out's LPS-aligned isotropic grid."""
    regions, types, result, scheme = readout.regions, readout.types, readout.result, readout.scheme
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
    fig.suptitle(panel_title(result), fontsize=11)
    save(fig, path)
