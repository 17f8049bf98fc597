"""Severity of COVID-19 lung involvement, one home for every severity figure:

- ``scores``: the study's severity classes and CTSI, Pan et al.'s 0-5 lobe score, and the two
  tallies every read-out shares: PO (percent of the lung opacified) and the lesion-type volumes
  (ground-glass, consolidation). Nothing else computes them.
- ``readout``: the clinical read-out of one scan (per lobe or zone, per lung, PO, PHO, lesion types).
- ``panel``: the per-patient severity panel (PNG).
- ``cohort``: the cohort table of read-outs and the plot of PO against the sheet's score.
- ``followup``: each subject's scores over its (shifted) scan dates.

The names of ``scores`` are importable from here (``from covidct.severity import severity_class``).
"""

from covidct.severity.scores import (
    LOBE_SCORE_MAX,
    SEVERITY_BOUNDS,
    SEVERITY_CLASSES,
    ctsi,
    lobe_score,
    severity_class,
    severity_classes,
)

__all__ = [
    "LOBE_SCORE_MAX",
    "SEVERITY_BOUNDS",
    "SEVERITY_CLASSES",
    "ctsi",
    "lobe_score",
    "severity_class",
    "severity_classes",
]
