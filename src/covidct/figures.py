"""Figures without a display: matplotlib's object-oriented ``Figure`` (no pyplot state, no global
backend switched on import), saved as PNG atomically. Every plot of the library is drawn on one."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from covidct.io import atomic_path

#: Resolution of every saved figure.
DPI = 100


def figure(**kwargs) -> Figure:
    """A new figure (``matplotlib.figure.Figure`` keywords, e.g. ``figsize``)."""
    return Figure(**kwargs)


def save(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as a PNG at ``path``, atomically, cropped to what is drawn."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
