"""Severity of COVID-19 lung involvement: the original study's classes of the score (percent of
lung involved): 0-19 Low, 20-39 Mild, 40-59 Moderate, 60-79 Severe, >=80 Critical; the study's
CTSI shortcut (score // 4, 0-25), which is *not* a lobe score; and the radiologists' lobe score of
Pan et al. (Radiology 2020; 295:715-721): each lobe 0-5 by the share of it involved, summed over the
five lobes into the 25-point CT severity score (CTSS).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Severity classes of the original study: lower bounds of Low, Mild, Moderate, Severe, Critical.
SEVERITY_BOUNDS = (0, 20, 40, 60, 80)


SEVERITY_CLASSES = ("Low", "Mild", "Moderate", "Severe", "Critical")


#: Upper bounds (percent of the lobe involved, inclusive) of the lobe scores 2, 3 and 4 of Pan et
#: al. 2020 (0 none, 1 < 5 %, 2 5-25 %, 3 26-50 %, 4 51-75 %, 5 > 75 %), read on a continuous
#: percentage: 1 below 5, 2 from 5 up to 25, 3 above 25 up to 50, 4 above 50 up to 75, 5 above 75.
LOBE_SCORE_MIN_2 = 5.0


LOBE_SCORE_MAX_2_3_4 = (25.0, 50.0, 75.0)


#: The highest lobe (or zone) score.
LOBE_SCORE_MAX = 5


def severity_class(score: float) -> int:
    """Index of the severity class of a score (0 Low .. 4 Critical).

    >>> [severity_class(s) for s in (0, 19.9, 20, 59, 60, 79.99, 80, 100)]
    [0, 0, 1, 2, 3, 3, 4, 4]
    """
    if not 0 <= score <= 100:
        raise ValueError(f"score {score} outside 0-100")
    return int(np.searchsorted(SEVERITY_BOUNDS, score, side="right") - 1)


def ctsi(score: float) -> int:
    """The original study's "CT severity index" shortcut: score // 4 (0-25), from a whole-lung
    percentage. It is not the 25-point CT severity score of the lobes (``lobe_score``, summed).

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


def lobe_score(percent: float) -> int:
    """Pan et al.'s 0-5 score of one lobe (or zone) from the percent of it involved.

    0: nothing involved; 1: below 5 %; 2: 5-25 %; 3: above 25 up to 50 %; 4: above 50 up to 75 %;
    5: above 75 %.

    >>> [lobe_score(p) for p in (0, 0.01, 4.99, 5, 25, 25.01, 50, 50.5, 75, 75.01, 100)]
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    """
    p = float(percent)
    if not 0 <= p <= 100:
        raise ValueError(f"percent involved {p} outside 0-100")
    if p == 0:
        return 0
    if p < LOBE_SCORE_MIN_2:
        return 1
    return 2 + int(np.searchsorted(LOBE_SCORE_MAX_2_3_4, p, side="left"))
