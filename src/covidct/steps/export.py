"""The step of ``workflow/rules/export.smk``: the model-ready array of a patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct import config
from covidct.errors import CovidctError
from covidct.hounsfield import MODEL_WINDOW_HU
from covidct.io import write_npy
from covidct.models.inputs import DEFAULT_SHAPE, model_array
from covidct.volume import Volume


def export_npy(
    volume: str | Path,
    mask: str | Path,
    out_npy: str | Path,
    patient: str,
    shape=DEFAULT_SHAPE,
    margin_mm: float = config.default("export.margin_mm"),
    hu_window=MODEL_WINDOW_HU,
) -> np.ndarray:
    """Write the model-ready ``.npy`` (depth, height, width) float32 in [0, 1] (``covidct.models.inputs``)."""
    scan, lung = Volume.read(volume), Volume.read(mask)
    if not lung.array.any():
        raise CovidctError("lung mask is empty: nothing to export", patient, mask)
    array = model_array(scan.array, lung.array, scan.spacing, tuple(shape), margin_mm, tuple(hu_window))
    write_npy(out_npy, array)
    return array
