"""The lung mask entry point: one result type for every backend, chosen by name from a registry."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.errors import CovidctError
from covidct.lungs.segment import BACKENDS, LungMaskSettings, LungSegmentation, segment
from covidct.volume import Volume


def _volume(hu):
    return Volume(hu, (5.0, 5.0, 5.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_the_threshold_backend_gives_labels_and_provenance(phantom):
    hu, truth = phantom
    found = segment(_volume(hu), "p1", LungMaskSettings(backend="threshold"))
    assert isinstance(found, LungSegmentation) and found.labels.dtype == np.uint8
    assert found.labels.shape == hu.shape and set(np.unique(found.mask)) == {0, 1}
    prov = found.provenance
    assert prov["patient"] == "p1" and prov["backend"] == "threshold" and "flags" in prov["qc"]
    assert prov["params"]["lung_max_hu"] == -320 and prov["left_right_known"] is True
    assert {"lung_volume_ml", "versions", "seconds"} <= set(prov)


def test_an_unknown_backend_names_the_ones_there_are():
    assert set(BACKENDS) == {"threshold", "lungmask"}
    with pytest.raises(CovidctError, match="unknown lung_mask.backend 'magic': use 'threshold' or 'lungmask'"):
        segment(_volume(np.zeros((4, 4, 4), np.int16)), "p1", LungMaskSettings(backend="magic"))
