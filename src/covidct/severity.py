"""Severity of COVID-19 lung involvement: the original study's classes of the score (percent of
lung involved): 0-19 Low, 20-39 Mild, 40-59 Moderate, 60-79 Severe, >=80 Critical, and its CTSI
shortcut (score // 4, 0-25)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Severity classes of the original study: lower bounds of Low, Mild, Moderate, Severe, Critical.
SEVERITY_BOUNDS = (0, 20, 40, 60, 80)


SEVERITY_CLASSES = ("Low", "Mild", "Moderate", "Severe", "Critical")


def severity_class(score: float) -> int:
    """Index of the severity class of a score (0 Low .. 4 Critical).

    >>> [severity_class(s) for s in (0, 19.9, 20, 59, 60, 79.99, 80, 100)]
    [0, 0, 1, 2, 3, 3, 4, 4]
    """
    if not 0 <= score <= 100:
        raise ValueError(f"score {score} outside 0-100")
    return int(np.searchsorted(SEVERITY_BOUNDS, score, side="right") - 1)


def ctsi(score: float) -> int:
    """CT severity index of the original study: score // 4 (0-25).

    >>> [ctsi(s) for s in (0, 3.9, 4, 50, 100)]
    [0, 0, 1, 12, 25]
    """
    return int(float(score) // 4)


def severity_classes(scores: Sequence[float]) -> np.ndarray:
    """Severity class index (0 Low .. 4 Critical) of each score, scores clipped to 0-100.

    >>> severity_classes([-3, 19.9, 20, 150]).tolist()
    [0, 0, 1, 4]
    """
    return np.array([severity_class(float(np.clip(s, 0, 100))) for s in scores], dtype=int)
