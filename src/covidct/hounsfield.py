"""Hounsfield units: the constants every module shares, and the intensity windows of each use.

A window clips HU to ``[lo, hi]`` and scales linearly to [0, 1] (``window``). Each use has its own,
named here so that one concept has one name:

- ``MODEL_WINDOW_HU`` (-1000..400): the 3D models' input, as the Keras 3D CT example the original
  study followed;
- ``INFECTION_WINDOW_HU`` (-1250..250): the infection U-Net's lung window (level -500, width 1500);
- ``QC_WINDOW_HU`` (-1350..150): the QC pictures' lung window (level -600, width 1500).
"""

from __future__ import annotations

import numpy as np

from covidct import config

#: Air.
HU_AIR = -1000
#: The range a 12-bit CT stores (and the HU volumes are clipped to).
HU_MIN = -1024
HU_MAX = 3071

MODEL_WINDOW_HU = tuple(float(v) for v in config.default("export.hu_window"))  # config ``export.hu_window``
INFECTION_WINDOW_HU = (-1250.0, 250.0)
QC_WINDOW_HU = (-1350.0, 150.0)


def window(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip HU to [lo, hi] and scale linearly to [0, 1] (float32).

    >>> window(np.array([-2000, -1000, -300, 400, 900]), -1000, 400).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    return ((np.clip(hu.astype(np.float32), lo, hi) - lo) / np.float32(hi - lo)).astype(np.float32)
