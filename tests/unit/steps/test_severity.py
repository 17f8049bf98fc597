"""The steps of workflow/rules/severity.smk on tiny files: each patient's read-out and panel, the cohort
table and its plots, follow-up dates through the anonymizer."""

from __future__ import annotations

import csv
import json
from datetime import datetime

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from covidct import steps
from covidct.demo.anatomy import make_phantom
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import truth_readout, write_patient
from covidct.errors import CovidctError
from covidct.severity.followup import follow_up_subjects
from helpers import PER_LOBE


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PER_LOBE)


def _write(array: np.ndarray, phantom, path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(v) for v in phantom.spacing))
    image.SetOrigin(tuple(float(v) for v in phantom.origin))
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def files(phantom, tmp_path_factory):
    d = tmp_path_factory.mktemp("readout")
    for name, array in (
        ("volume", phantom.hu),
        ("labels", phantom.lung_labels),
        ("infection", phantom.lesion_mask),
        ("lobes", phantom.lobes),
    ):
        _write(array, phantom, d / f"{name}.nii.gz")
    (d / "hu.json").write_text(json.dumps({"study": {"study_date": "20191103", "study_date_note": "shifted"}}))
    return d


def test_step_writes_the_json_and_the_panel(files, phantom):
    d = files
    common = (d / "volume.nii.gz", d / "labels.nii.gz", d / "infection.nii.gz", d / "hu.json")
    res = steps.severity_readout(*common, d / "p.json", d / "p.png", "lobes01", lobes=str(d / "lobes.nii.gz"))
    saved = json.loads((d / "p.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert saved["patient_id"] == "lobes01" and saved["study_date"] == "20191103"
    assert saved["scheme"] == "lobes" and saved["ctss"] == 12 and saved["regions_from"] == "lobe map lobes.nii.gz"
    png = Image.open(d / "p.png")
    assert png.mode in ("RGB", "RGBA") and png.size[0] > 600
    zones = steps.severity_readout(*common, d / "z.json", d / "z.png", "lobes01", lobes=[])
    assert (
        zones["scheme"] == "zones"
        and zones["ctss"] is None
        and zones["zone_score"] == truth_readout(phantom)["zone_score"]
    )
    assert zones["regions_from"].startswith("six geometric zones")


def test_step_refuses_maps_on_another_grid_and_empty_lungs(files, tmp_path):
    d = files
    other = sitk.ReadImage(str(d / "labels.nii.gz"))
    other.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(other, str(tmp_path / "other.nii.gz"))
    with pytest.raises(CovidctError, match="lung label map is not on the resampled volume's grid") as err:
        steps.severity_readout(
            d / "volume.nii.gz",
            tmp_path / "other.nii.gz",
            d / "infection.nii.gz",
            None,
            tmp_path / "x.json",
            tmp_path / "x.png",
            "p9",
        )
    assert "patient p9" in str(err.value) and "other.nii.gz" in str(err.value)
    empty = sitk.ReadImage(str(d / "labels.nii.gz")) * 0
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    with pytest.raises(CovidctError, match="lung mask is empty"):
        steps.severity_readout(
            d / "volume.nii.gz",
            tmp_path / "empty.nii.gz",
            d / "infection.nii.gz",
            None,
            tmp_path / "x.json",
            tmp_path / "x.png",
            "p9",
        )
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "x.png").exists()


def _readout_json(path, pid, po, date, scheme="lobes", total=7):
    res = {
        "patient_id": pid,
        "study_date": date,
        "scheme": scheme,
        "ctss": total if scheme == "lobes" else None,
        "zone_score": total if scheme == "zones" else None,
        "regions": [],
        "po": po,
        "pho": po / 4,
        "lungs": {"right": {"po": po, "pho": 1.0}, "left": {"po": po, "pho": 2.0}},
        "ggo_percent": po * 0.75,
        "consolidation_percent": po / 4,
        "lesion_types": "hu_bands",
        "po_severity_class": "Low",
    }
    path.write_text(json.dumps(res))
    return path


def test_cohort_table_score_plot_and_follow_up(tmp_path):
    paths = [
        _readout_json(tmp_path / "a1.json", "a1", 30.0, "20200110"),
        _readout_json(tmp_path / "a2.json", "a2", 12.5, "20200131", total=3),
        _readout_json(tmp_path / "b1.json", "b1", 5.0, None, scheme="zones", total=2),
        _readout_json(tmp_path / "c1.json", "c1", 50.0, "20200301"),
    ]
    patients = [
        {"patient_id": "a1", "score": "28", "subject_id": "s1"},
        {"patient_id": "a2", "score": "", "subject_id": "s1"},
        {"patient_id": "b1", "score": "4.5", "subject_id": ""},
        {"patient_id": "c1", "score": "51", "subject_id": "s2"},
    ]
    steps.severity_cohort([str(p) for p in paths], tmp_path / "cohort.csv", patients)
    rows = list(csv.DictReader(open(tmp_path / "cohort.csv")))
    assert [r["patient_id"] for r in rows] == ["a1", "a2", "b1", "c1"]
    assert rows[1]["sheet_score"] == "" and rows[1]["ctss"] == "3" and rows[2]["zone_score"] == "2"
    assert rows[2]["ctss"] == "" and rows[2]["study_date"] == "" and rows[0]["subject_id"] == "s1"
    subjects, undated = follow_up_subjects(rows)
    assert list(subjects) == ["s1"] and undated == []
    assert [(s["patient_id"], s["days"], s["po"], s["ctss"]) for s in subjects["s1"]] == [
        ("a1", 0, 30.0, 7.0),
        ("a2", 21, 12.5, 3.0),
    ]
    steps.severity_vs_score(tmp_path / "cohort.csv", tmp_path / "po.png")
    steps.severity_followup(tmp_path / "cohort.csv", tmp_path / "follow.png")
    assert Image.open(tmp_path / "po.png").size[0] > 200 and Image.open(tmp_path / "follow.png").size[0] > 400


def test_follow_up_scans_keep_their_interval_through_the_anonymizer(tmp_path, monkeypatch):
    """Two scans of one person, 17 days apart: the anonymizer shifts both dates by the person's keyed
    offset, so the HU step's shifted dates are 17 days apart and no real date is left."""
    monkeypatch.setenv("COVIDCT_ANON_KEY", "test-key-0123456789abcdef")
    first = PhantomSpec("fu1", 31, False, 0.0, 6, 20.0, 40, 9.0, person_seed=31)
    second = PhantomSpec("fu2", 32, False, 0.0, 6, 20.0, 40, 9.0, person_seed=31, days_after=17)
    dates = {}
    for spec in (first, second):
        truth = write_patient(spec, tmp_path / "raw" / spec.patient_id, tmp_path / "truth")
        dates[spec.patient_id] = (truth["identity"]["StudyDate"], truth["identity"]["PatientID"])
        steps.anonymize_dicom(
            spec.patient_id, tmp_path / "anon" / spec.patient_id, raw_dir=tmp_path / "raw" / spec.patient_id
        )
        steps.dicom_to_hu(
            tmp_path / "anon" / spec.patient_id,
            tmp_path / f"{spec.patient_id}.nii.gz",
            tmp_path / f"{spec.patient_id}.json",
            spec.patient_id,
        )
    assert dates["fu1"][1] == dates["fu2"][1]  # one person
    real = [datetime.strptime(dates[p][0], "%Y%m%d") for p in ("fu1", "fu2")]
    assert (real[1] - real[0]).days == 17
    shifted = [json.loads((tmp_path / f"{p}.json").read_text())["study"]["study_date"] for p in ("fu1", "fu2")]
    assert shifted[0] != dates["fu1"][0] and shifted[1] != dates["fu2"][0]
    days = [datetime.strptime(d, "%Y%m%d") for d in shifted]
    assert (days[1] - days[0]).days == 17
