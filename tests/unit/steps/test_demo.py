"""The steps of workflow/rules/demo.smk: a demo patient only under its demo id and truth names, a refused
sheet row fails with its message, the U-Net's synthetic training source."""

from __future__ import annotations

import pytest

from covidct import steps
from covidct.errors import CovidctError


def test_synth_patient_refuses_other_ids_and_truth_names(tmp_path):
    truth = [tmp_path / f"demo01{s}" for s in (".json", "_lung.nii.gz", "_lesion.nii.gz", "_lobes.nii.gz")]
    with pytest.raises(CovidctError, match="not a demo cohort patient") as err:
        steps.synth_patient("nobody", tmp_path / "dicom", *truth)
    assert "patient nobody" in str(err.value)
    with pytest.raises(CovidctError, match="the truth files must be named"):
        steps.synth_patient("demo01", tmp_path / "dicom", truth[0], truth[2], truth[1], truth[3])
    assert not (tmp_path / "dicom").exists()


def test_a_refused_row_fails_with_its_message(tmp_path):
    with pytest.raises(CovidctError, match="line 3: patient_id is not safe"):
        steps.reject_sheet_row(tmp_path / "row3.txt", "line 3: patient_id is not safe", "3")
    assert not (tmp_path / "row3.txt").exists()


def test_synthetic_infection_training_source(tmp_path):
    steps.synth_infection_training(tmp_path / "train", 2)
    for folder in ("volumes", "masks", "lungs"):
        assert len(list((tmp_path / "train" / folder).glob("*.nii.gz"))) == 2, folder
    assert not list(tmp_path.glob(".*tmp*"))
