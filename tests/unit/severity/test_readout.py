"""The clinical severity read-out: Pan et al.'s lobe scores, CTSS and zone score, PO and PHO, lesion
types, on hand-built volumes (exact counts) and on phantoms with lobes and lesions placed per lobe
(exact against the phantom's truth). The step, its panel and the cohort: tests/unit/steps/test_severity.py."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.demo.anatomy import make_phantom
from covidct.demo.writer import truth_readout
from covidct.lungs.lobes import (
    LOBE_LLL,
    LOBE_LUL,
    LOBE_RLL,
    LOBE_RML,
    LOBE_RUL,
    ZONE_LL,
    ZONE_LM,
    ZONE_LU,
    ZONE_RL,
    ZONE_RM,
    ZONE_RU,
    geometric_zones,
    lobes_in_lung,
)
from covidct.severity.readout import READOUT_COLUMNS, TYPE_CONSOLIDATION, TYPE_GGO, readout_row, severity_readout
from helpers import PER_LOBE

SPACING = (2.0, 2.0, 2.0)
VOXEL_ML = 0.008


def _boxes():
    """Two box lungs (right at low x, 1; left at high x, 2), 30 slices of 10 x 10 voxels each, the
    right split into three lobes of 10 slices (lower, middle, upper from z=0), the left into two of 15."""
    labels = np.zeros((30, 12, 26), np.uint8)
    labels[:, 1:11, 1:11] = 1
    labels[:, 1:11, 15:25] = 2
    lobes = np.zeros_like(labels)
    right, left = labels == 1, labels == 2
    z = np.arange(30)[:, None, None]
    lobes[right & (z < 10)] = LOBE_RLL
    lobes[right & (z >= 10) & (z < 20)] = LOBE_RML
    lobes[right & (z >= 20)] = LOBE_RUL
    lobes[left & (z < 15)] = LOBE_LLL
    lobes[left & (z >= 15)] = LOBE_LUL
    hu = np.full(labels.shape, -1000, np.int16)
    hu[labels > 0] = -850
    return hu, labels, lobes


def _fill(mask: np.ndarray, region: np.ndarray, n: int, hu: np.ndarray | None = None, value: int = 0) -> None:
    """Set the first ``n`` voxels (C order) of ``region`` in ``mask`` (and their HU to ``value``)."""
    idx = np.flatnonzero(region)[:n]
    mask.flat[idx] = 1
    if hu is not None:
        hu.flat[idx] = value


def test_a_trace_of_scattered_voxels_does_not_score_a_region():
    """A region scores only when a connected lesion of at least ``min_lesion_ml`` reaches into it; its
    infected percent and the PO still count every voxel."""
    hu, labels, lobes = _boxes()
    infection = np.zeros(labels.shape, np.uint8)
    rul = np.argwhere(lobes == LOBE_RUL)
    for z, y, x in rul[::23][:40]:  # 40 isolated voxels (0.32 mL) scattered over the right upper lobe
        infection[z, y, x] = 1
    lll = np.argwhere(lobes == LOBE_LLL)
    infection[tuple(lll[:70].T)] = 1  # 70 connected voxels, 0.56 mL: a lesion
    res = severity_readout(hu, labels, infection, SPACING, lobes=lobes).result
    by = {x["name"]: x for x in res["regions"]}
    assert by["RUL"]["infected_ml"] == 0.3 and by["RUL"]["score"] == 0 and by["RUL"]["traces_only"]
    assert by["LLL"]["score"] == 1 and not by["LLL"]["traces_only"]
    assert res["ctss"] == 1 and res["min_lesion_ml"] == 0.5
    assert res["infected_ml"] == pytest.approx(110 * VOXEL_ML, abs=0.05)  # PO counts the traces too
    assert severity_readout(hu, labels, infection, SPACING, lobes=lobes, min_lesion_ml=0).result["ctss"] == 2


def test_lobe_scores_ctss_po_pho_and_types_are_exact_on_counted_voxels():
    hu, labels, lobes = _boxes()
    infection = np.zeros(labels.shape, np.uint8)
    # each lobe holds 1000 voxels (right) or 1500 (left)
    _fill(infection, lobes == LOBE_RUL, 0)  # 0 %: 0
    _fill(infection, lobes == LOBE_RML, 49, hu, -600)  # 4.9 %: 1
    _fill(infection, lobes == LOBE_RLL, 250, hu, -500)  # 25 %: 2 (5-25 %)
    _fill(infection, lobes == LOBE_LUL, 376, hu, -100)  # 25.07 %: 3
    _fill(infection, lobes == LOBE_LLL, 1126, hu, -650)  # 75.07 %: 5
    hu[(lobes == LOBE_LLL) & (infection > 0) & (np.arange(30)[:, None, None] == 0)] = 20  # its first slice: dense
    dense_lll = int(np.count_nonzero((lobes == LOBE_LLL) & (infection > 0) & (hu > -200)))
    assert dense_lll == 100
    infection[0, 0, 0] = 1  # outside the lung: ignored, counted
    r = severity_readout(hu, labels, infection, SPACING, lobes=lobes, min_lesion_ml=0)  # every voxel scores
    res = r.result
    assert res["scheme"] == "lobes" and res["zone_score"] is None
    got = {x["name"]: (x["volume_ml"], x["infected_percent"], x["score"]) for x in res["regions"]}
    assert got == {
        "RUL": (8.0, 0.0, 0),
        "RML": (8.0, 4.9, 1),
        "RLL": (8.0, 25.0, 2),
        "LUL": (12.0, 25.07, 3),
        "LLL": (12.0, 75.07, 5),
    }
    assert [x["name"] for x in res["regions"]] == ["RUL", "RML", "RLL", "LUL", "LLL"]
    assert res["ctss"] == 0 + 1 + 2 + 3 + 5
    n_inf = 49 + 250 + 376 + 1126
    assert res["po"] == round(100 * n_inf / 6000, 2) and res["lung_volume_ml"] == 48.0
    assert res["lungs"]["right"]["po"] == round(100 * 299 / 3000, 2)
    assert res["lungs"]["left"]["po"] == round(100 * 1502 / 3000, 2)
    # high opacity: LUL's -100 HU voxels and LLL's dense first slice
    assert res["lungs"]["right"]["pho"] == 0.0 and res["lungs"]["left"]["pho"] == round(100 * (376 + 100) / 3000, 2)
    assert res["pho"] == round(100 * 476 / 6000, 2)
    assert res["consolidation_percent"] == res["pho"] and res["lesion_types"] == "hu_bands"
    assert res["ggo_percent"] == round(100 * (n_inf - 476) / 6000, 2)
    assert res["ggo_ml"] == round((n_inf - 476) * VOXEL_ML, 1)
    assert res["po_severity_class"] == "Mild"  # 30.0 %
    assert res["qc"]["infection_outside_lung_voxels"] == 1 and res["qc"]["flags"] == []
    assert r.types[0, 0, 0] == 0 and np.count_nonzero(r.types == TYPE_CONSOLIDATION) == 476
    row = readout_row(res)
    assert set(row) == set(READOUT_COLUMNS) and row["score_LLL"] == 5 and row["score_RUZ"] is None
    assert row["ctss"] == 11 and row["po_left"] == res["lungs"]["left"]["po"]


def test_a_lesion_type_map_overrides_the_hu_bands():
    hu, labels, lobes = _boxes()
    infection = np.zeros(labels.shape, np.uint8)
    _fill(infection, labels == 1, 300, hu, -500)
    types = np.zeros(labels.shape, np.uint8)
    idx = np.flatnonzero(infection)
    types.flat[idx[:100]] = TYPE_CONSOLIDATION  # typed consolidation at -500 HU
    types.flat[idx[100:250]] = TYPE_GGO
    types.flat[np.flatnonzero(labels == 2)[:50]] = TYPE_CONSOLIDATION  # outside the infection: ignored
    res = severity_readout(hu, labels, infection, SPACING, lobes=lobes, types=types).result
    assert res["lesion_types"] == "model" and res["qc"]["infected_voxels_typed_by_hu"] == 50
    assert res["consolidation_ml"] == round(100 * VOXEL_ML, 1) and res["ggo_ml"] == round(200 * VOXEL_ML, 1)
    assert res["pho"] == 0.0  # PHO stays an HU measure


def test_zones_are_thirds_of_each_lungs_height_and_never_called_lobes():
    hu, labels, _ = _boxes()
    labels[:6, :, 15:25] = 0  # the left lung starts 6 slices higher: its own thirds (8 slices each)
    zones = geometric_zones(labels)
    z = np.arange(30)
    right = {code: sorted(set(z[(zones == code).any(axis=(1, 2))])) for code in (ZONE_RL, ZONE_RM, ZONE_RU)}
    assert right == {ZONE_RL: list(range(0, 10)), ZONE_RM: list(range(10, 20)), ZONE_RU: list(range(20, 30))}
    left = {code: sorted(set(z[(zones == code).any(axis=(1, 2))])) for code in (ZONE_LL, ZONE_LM, ZONE_LU)}
    assert left == {ZONE_LL: list(range(6, 14)), ZONE_LM: list(range(14, 22)), ZONE_LU: list(range(22, 30))}
    infection = np.zeros(labels.shape, np.uint8)
    infection[25:, :, :] = labels[25:, :, :] > 0  # the top 5 slices of both lungs
    res = severity_readout(hu, labels, infection, SPACING).result
    assert res["scheme"] == "zones" and res["ctss"] is None
    got = {x["name"]: x["score"] for x in res["regions"]}
    assert got == {"RUZ": 3, "RMZ": 0, "RLZ": 0, "LUZ": 4, "LMZ": 0, "LLZ": 0}  # 50 % and 62.5 %
    assert res["zone_score"] == 7 and all("zone" in x["label"] for x in res["regions"])


def test_lung_voxels_without_a_lobe_of_their_side_take_the_nearest():
    _, labels, lobes = _boxes()
    model = lobes.copy()
    model[12:14, 1:11, 1:11] = 0  # the model left out two slices of the RML
    model[25:, 1:3, 1:11] = LOBE_LUL  # and put a left lobe into the right lung
    model[:, 11, 1:11] = LOBE_RLL  # lobe voxels outside the lung mask: neighbours only
    filled, stats = lobes_in_lung(labels, model, SPACING)
    np.testing.assert_array_equal(filled, lobes)
    assert stats["reassigned_voxels"] == 200 + 100 and stats["missing"] == []
    assert stats["reassigned_percent"] == 5.0


def test_a_lobe_map_missing_a_lobe_falls_back_to_zones_with_a_flag():
    hu, labels, lobes = _boxes()
    lobes[lobes == LOBE_RML] = 0  # neighbours fill it with RUL and RLL: no RML left
    res = severity_readout(hu, labels, np.zeros_like(labels), SPACING, lobes=lobes).result
    assert res["scheme"] == "zones" and res["ctss"] is None and res["zone_score"] == 0
    assert res["qc"]["flags"] == ["the lobe map has no RML in the lung mask: six zones used"]


def test_lung_voxels_of_unknown_side_are_given_one_by_position():
    hu, labels, _ = _boxes()
    labels[labels > 0] = 3
    res = severity_readout(hu, labels, np.zeros_like(labels), SPACING).result
    assert res["lungs"]["right"]["volume_ml"] == 24.0 and res["lungs"]["left"]["volume_ml"] == 24.0
    assert "6000 lung voxels of unknown side were given a side by position" in res["qc"]["flags"]


# --- phantoms with lobes and lesions placed per lobe -------------------------------------------


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PER_LOBE)


def test_the_read_out_of_the_truth_maps_is_the_truth(phantom):
    """Given the phantom's own lobes and lesions, every number equals the truth counted on its grid."""
    truth = truth_readout(phantom)
    assert [v["score"] for v in truth["lobes"].values()] == [1, 2, 4, 0, 5]
    assert truth["ctss"] == 12
    lobes = severity_readout(phantom.hu, phantom.lung_labels, phantom.lesion_mask, phantom.spacing, phantom.lobes)
    zones = severity_readout(phantom.hu, phantom.lung_labels, phantom.lesion_mask, phantom.spacing)
    for readout, key, total in ((lobes, "lobes", "ctss"), (zones, "zones", "zone_score")):
        res = readout.result
        assert res[total] == truth[total]
        for region in res["regions"]:
            assert region["score"] == truth[key][region["name"]]["score"], region["name"]
            assert region["infected_percent"] == pytest.approx(truth[key][region["name"]]["percent"], abs=0.005)
        assert res["po"] == pytest.approx(truth["po"], abs=0.005) and res["pho"] == pytest.approx(
            truth["pho"], abs=0.005
        )
        for side in ("right", "left"):
            assert res["lungs"][side]["po"] == pytest.approx(truth["lungs"][side]["po"], abs=0.005)
            assert res["lungs"][side]["pho"] == pytest.approx(truth["lungs"][side]["pho"], abs=0.005)
    assert lobes.result["po"] == pytest.approx(phantom.score, abs=0.005)
    # HU-band types against the phantom's lesion kinds: vessels crossing ground-glass are the difference
    assert lobes.result["consolidation_percent"] == pytest.approx(truth["consolidation_percent"], abs=1.0)


# --- the cohort, follow-up scans --------------------------------------------------------------
