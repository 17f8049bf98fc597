"""Quality-control montage: axial slices with the lung-mask contour."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from covidct.hounsfield import window
from covidct.io import atomic_path

QC_WINDOW_HU = (-1350.0, 150.0)  # lung window: level -600, width 1500
CONTOUR_RGB = {1: (255, 60, 60), 2: (60, 220, 60), 3: (255, 200, 0)}
TITLE_LINE_PX = 12


def montage(
    hu: np.ndarray, labels: np.ndarray, n_slices: int = 12, columns: int = 4, overlay: np.ndarray | None = None
) -> np.ndarray:
    """RGB montage of axial slices evenly spread over the lung, superior first.

    Args:
        hu: (z, y, x) HU volume on an LPS-aligned grid (shown in radiological
            convention: patient right on the image left, anterior up).
        labels: Lung labels (1 right, red contour; 2 left, green; 3 unknown side, yellow).
        n_slices: Slices shown.
        columns: Slices per row.
        overlay: Optional binary mask blended in magenta (e.g. infection).

    Returns:
        uint8 array (H, W, 3).
    """
    zs = np.nonzero((labels > 0).any(axis=(1, 2)))[0]
    if zs.size == 0:
        zs = np.arange(hu.shape[0])
    picks = np.unique(np.linspace(zs.min(), zs.max(), n_slices).round().astype(int))[::-1]
    tiles = []
    for z in picks:
        gray = (window(hu[z], *QC_WINDOW_HU) * 255).astype(np.uint8)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        if overlay is not None:
            sel = overlay[z] > 0
            rgb[sel] = (0.5 * rgb[sel] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
        for value, colour in CONTOUR_RGB.items():
            region = labels[z] == value
            edge = region & ~ndimage.binary_erosion(region)
            rgb[edge] = colour
        tiles.append(rgb)
    rows = -(-len(tiles) // columns)
    h, w = tiles[0].shape[:2]
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return out


def write_png(path, rgb: np.ndarray, title: str | None = None) -> None:
    """Write an RGB array as PNG, atomically, with an optional title bar (one line per ``\\n``)."""
    img = Image.fromarray(rgb)
    if title:
        lines = title.split("\n")
        bar = Image.new("RGB", (img.width, TITLE_LINE_PX * len(lines) + 6), (0, 0, 0))
        draw = ImageDraw.Draw(bar)
        for i, line in enumerate(lines):  # QC flags after the first line, in amber
            draw.text((4, 3 + TITLE_LINE_PX * i), line, fill=(255, 255, 255) if i == 0 else (255, 190, 0))
        full = Image.new("RGB", (img.width, img.height + bar.height))
        full.paste(bar, (0, 0))
        full.paste(img, (0, bar.height))
        img = full
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def lung_qc_title(patient: str, provenance: dict | None = None) -> str:
    """The title of a lung mask's QC montage: the patient, then (from the mask's provenance) the lung
    volume, the backend and the QC flags, one per line."""
    title = f"{patient}"
    if provenance:
        title += f"  lungs {provenance.get('lung_volume_ml', 0) / 1000:.2f} L ({provenance.get('backend')})"
        flags = provenance.get("qc", {}).get("flags")
        if flags is not None:
            title += "  QC: " + ("ok" if not flags else f"{len(flags)} flag(s)\n" + "\n".join(flags))
    return title


def lesion_types_text(seg: dict) -> str:
    """The lesion types of an infection result (``covidct.severity.scores.segmentation_severity``) for a
    title or a log line; "" without a lesion-type map."""
    if seg.get("lesion_types") != "model":
        return ""
    return f", ground-glass {seg['seg_ggo_percent']:.1f}%, consolidation {seg['seg_consolidation_percent']:.1f}%"


def infection_qc_title(patient: str, po: float, seg: dict) -> str:
    """The title of an infection QC montage: infected percent of the lung (``po``), its class, the lesion types."""
    title = f"{patient}  infection {po:.1f}% of lung ({seg['seg_severity_class']}){lesion_types_text(seg)}"
    return title + (f"\n{seg['warning'].upper()}" if seg.get("warning") else "")
