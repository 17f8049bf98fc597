"""The steps of workflow/rules/lung_eval.smk: a reference read from the sheet is never named by its path;
the cohort table of lung masks against references."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from covidct import steps
from covidct.errors import CovidctError


def test_a_missing_reference_from_the_sheet_is_not_named(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 4, 4), np.uint8)), str(tmp_path / "labels.nii.gz"))
    sheet = tmp_path / "p.tsv"
    missing = tmp_path / "DOE_JOHN_MRN123" / "RS.dcm"
    sheet.write_text(f"patient_id\tdicom_dir\tlung_reference\np1\traw\t{missing}\np2\traw\t\n")
    with pytest.raises(CovidctError) as err:
        steps.evaluate_lung_mask(tmp_path / "labels.nii.gz", tmp_path / "e.json", "p1", sheet=sheet)
    assert "<lung_reference of p1>" in str(err.value) and "DOE_JOHN" not in str(err.value)
    with pytest.raises(CovidctError, match="the sheet's lung_reference is empty"):
        steps.evaluate_lung_mask(tmp_path / "labels.nii.gz", tmp_path / "e.json", "p2", sheet=sheet)


def test_the_cohort_table(tmp_path):
    both = {"dice": 0.97, "hd95_mm": 3.0, "volume_ml": 4960.0, "reference_ml": 5000.0, "volume_diff_ml": -40.0}
    result = {"patient": "p1", "reference": "rtstruct", "lungs": {"right": both, "left": both, "both": both}}
    (tmp_path / "p1.json").write_text(json.dumps(result))
    steps.lung_eval_table([tmp_path / "p1.json"], tmp_path / "t.csv")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert len(rows) == 1 and rows[0]["patient_id"] == "p1" and rows[0]["dice"] == "0.97"
    assert rows[0]["dice_with_lesions"] == "" and rows[0]["volume_diff_ml"] == "-40.0"
