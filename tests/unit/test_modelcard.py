"""Model cards: what a model learned from, and the refusal of a synthetic-only model on a real patient."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidct.demo.cohort import write_infection_training
from covidct.errors import CovidctError
from covidct.infection.data import SliceGroup, describe_sources
from covidct.modelcard import (
    SYNTHETIC_WARNING,
    card_paths,
    check_may_read,
    is_synthetic_folder,
    make_card,
    read_card,
    source_entry,
    write_card,
)


def _card(*kinds: str) -> dict:
    return make_card("infection_unet", [source_entry(f"s{i}", k, images=3) for i, k in enumerate(kinds)], {}, {})


def test_card_says_what_the_model_was_trained_on(tmp_path):
    assert _card("synthetic").get("trained_on") == "synthetic"
    assert _card("real").get("trained_on") == "real"
    assert _card("real", "synthetic").get("trained_on") == "mixed"
    with pytest.raises(ValueError, match="source kind"):
        source_entry("x", "phantom")
    card = _card("synthetic")
    assert card["code_version"].startswith("0.") and card["trained"].endswith("UTC")
    model = tmp_path / "infection_unet.keras"
    write_card(card, *card_paths(model))
    assert read_card(model) == json.loads((tmp_path / "infection_unet.card.json").read_text())
    page = (tmp_path / "infection_unet.card.md").read_text()
    assert SYNTHETIC_WARNING in page and "| s0 | synthetic | images 3 |" in page
    assert read_card(tmp_path / "other.keras") is None


def test_a_synthetic_only_model_refuses_a_real_patient_unless_allowed(tmp_path):
    model = tmp_path / "m.keras"
    synthetic, real = _card("synthetic"), _card("real", "synthetic")
    assert check_may_read(synthetic, model, "demo01", demo_patient=True, allow_synthetic=False) is None
    with pytest.raises(CovidctError, match="trained on synthetic phantoms only") as err:
        check_may_read(synthetic, model, "P0001", demo_patient=False, allow_synthetic=False)
    assert "patient P0001" in str(err.value) and str(model) in str(err.value)
    assert check_may_read(synthetic, model, "P0001", demo_patient=False, allow_synthetic=True) == SYNTHETIC_WARNING
    assert check_may_read(real, model, "P0001", demo_patient=False, allow_synthetic=False) is None
    with pytest.raises(CovidctError, match="no model card"):
        check_may_read(None, model, "P0001", demo_patient=False, allow_synthetic=False)


def test_the_phantom_generator_marks_its_folder_synthetic(tmp_path):
    write_infection_training(tmp_path / "train", n=2, matrix=32, pixel_spacing_mm=10.0)
    assert is_synthetic_folder(tmp_path / "train" / "volumes") and not is_synthetic_folder(tmp_path)
    sources = [
        {"volumes": str(tmp_path / "train" / "volumes"), "masks": str(tmp_path / "train" / "masks")},
        {"images": str(tmp_path / "Imgs"), "masks": str(tmp_path / "GT")},
    ]
    one = np.zeros((1, 8, 8, 1), np.float32)
    groups = [SliceGroup("s1:volumes/a", one, one.astype(np.uint8)), SliceGroup("s2:Imgs/1", one, one.astype(np.uint8))]
    entries = describe_sources(sources, groups)
    assert [e["kind"] for e in entries] == ["synthetic", "real"]
    assert entries[0]["volumes"] == entries[0]["subjects"] == 1 and entries[1]["images"] == 1
