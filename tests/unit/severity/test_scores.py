"""The scores of the severity read-outs: Pan et al.'s lobe score, the study's classes and CTSI, PO and the
lesion-type tallies (computed once, used by the read-out and the infection step)."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.severity import ctsi, lobe_score, severity_class
from covidct.severity.scores import (
    TYPE_CONSOLIDATION,
    TYPE_GGO,
    lesion_tallies,
    percent,
    percent_opacity,
    segmentation_severity,
)


@pytest.mark.parametrize(
    "percent, score",
    [(0, 0), (1e-9, 1), (4.999, 1), (5, 2), (25, 2), (25.001, 3), (50, 3), (50.001, 4), (75, 4), (75.001, 5), (100, 5)],
)
def test_pan_lobe_score_bands(percent, score):
    assert lobe_score(percent) == score


def test_lobe_score_refuses_impossible_percents():
    for bad in (-0.1, 100.1):
        with pytest.raises(ValueError, match="outside 0-100"):
            lobe_score(bad)


def test_po_counts_infected_lung_voxels_only():
    lung = np.zeros((4, 5, 5), np.uint8)
    lung[:, 1:4, 1:4] = 2  # 36 lung voxels, any label value is lung
    infection = np.zeros_like(lung)
    infection[0, 1:4, 1:4] = 1  # 9 inside
    infection[1, 0, :] = 1  # 5 outside the lung: not counted
    assert percent_opacity(infection, lung) == 25.0
    assert percent_opacity(infection, np.zeros_like(lung)) == 0.0
    assert percent(3, 12) == 25.0 and percent(1, 0) == 0.0


def test_lesion_tallies_are_volumes_and_percents_of_the_lung():
    types = np.array([TYPE_GGO] * 3 + [TYPE_CONSOLIDATION] + [0] * 4)
    tallies = lesion_tallies(types, n_lung=16, voxel_ml=0.5)
    assert tallies == {"ggo_ml": 1.5, "ggo_percent": 18.75, "consolidation_ml": 0.5, "consolidation_percent": 6.25}


def test_segmentation_severity_of_a_binary_and_a_lesion_type_model():
    lung = np.ones((2, 10, 10), bool)  # 200 voxels
    infection = np.zeros(lung.shape, np.uint8)
    infection[0, :5, :] = 1  # 50 voxels: 25 %
    types = np.where(infection > 0, TYPE_GGO, 0).astype(np.uint8)
    types[0, 0, :] = TYPE_CONSOLIDATION  # 10 of the 50
    binary = segmentation_severity(infection, lung, 0.2)
    assert binary.po == 25.0
    assert binary.figures == {
        "seg_score": 25.0,
        "seg_severity_class": "Mild",
        "seg_ctsi": 6,
        "infection_volume_ml": 10.0,
        "lung_volume_ml": 40.0,
        "lesion_types": None,
    }
    typed = segmentation_severity(infection, lung, 0.2, types).figures
    assert typed["lesion_types"] == "model" and typed["seg_ggo_percent"] == 20.0
    assert typed["seg_consolidation_ml"] == 2.0 and typed["seg_consolidation_percent"] == 5.0


def test_severity_classes_and_ctsi_at_the_bounds():
    assert [severity_class(s) for s in (0, 19.99, 20, 39.9, 40, 60, 79.9, 80, 100)] == [0, 0, 1, 1, 2, 3, 3, 4, 4]
    assert [ctsi(s) for s in (0, 3.99, 4, 99.9, 100)] == [0, 0, 1, 24, 25]
    with pytest.raises(ValueError):
        severity_class(101)
