"""Workflow tests: lint, dry-run DAG, and the whole per-patient pipeline on tiny synthetic patients."""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import re
import zipfile

import h5py
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image

from covidct.demo.cohort import DEMO_COHORT, DEMO_SPLITS, sheet_rows
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient
from helpers import PER_PATIENT_RULES, REPO, dice, job_counts, snakemake, write_config
from tiny_cohort import KEY, TINY

AGGREGATE_RULES = [
    "build_hdf5",
    "train_classifier",
    "train_scorer",
    "predict",
    "evaluate",
    "summarize",
    "synth_infection_training",
    "train_infection_unet",
    "severity_cohort",
    "severity_vs_score",
]


def test_lint_is_clean():
    res = snakemake(REPO, None, "--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr


def test_committed_demo_sheet_matches_the_generator():
    sheet = (REPO / "config" / "patients.tsv").read_text().splitlines()
    rows = sheet_rows(DEMO_COHORT, "results/demo/dicom", splits=DEMO_SPLITS)
    columns = ("patient_id", "dicom_dir", "label", "score", "split")
    expected = ["\t".join(columns)] + ["\t".join(r[k] for k in columns) for r in rows]
    assert sheet == expected


def test_dry_run_demo_has_one_job_per_patient_and_rule(tmp_path):
    res = snakemake(
        tmp_path, REPO / "config" / "config.yaml", "-n", "--config", f"patients={REPO / 'config' / 'patients.tsv'}"
    )
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout + res.stderr)
    n = len(DEMO_COHORT)
    infection = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["infection"]
    assert counts == {
        "all": 1,
        "synth_patient": n,
        **dict.fromkeys(PER_PATIENT_RULES, n),
        **dict.fromkeys(AGGREGATE_RULES, 1),
        # one job per variant and fold of the infection U-Net's cross-validation
        "cross_validate_infection_unet": len(infection["variants"]) * infection["folds"],
    }


def test_lung_reference_adds_the_evaluation_without_showing_its_path(tmp_path):
    """A sheet column lung_reference (optional) adds evaluate_lung_mask for the patients that have one
    and the cohort table; the reference's raw path never reaches Snakemake's output."""
    raw = tmp_path / "Doe_John_MRN1234567" / "RS.dcm"
    sheet = tmp_path / "patients.tsv"
    sheet.write_text(
        "patient_id\tdicom_dir\tlabel\tscore\tlung_reference\n"
        f"p01\t{tmp_path}/raw_p01\t\t\t{raw}\np02\t{tmp_path}/raw_p02\t\t\t\n"
    )
    res = snakemake(tmp_path, REPO / "config" / "config.yaml", "-n", "-p", "--config", f"patients={sheet}")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    counts = job_counts(out)
    assert counts["evaluate_lung_mask"] == 1 and counts["lung_eval_table"] == 1 and counts["segment_lungs"] == 2
    assert "results/lung_eval/p01.json" in out and "results/lung_eval/p02.json" not in out
    assert "Doe_John" not in out and "MRN1234567" not in out


@pytest.mark.parametrize("profile", ["workstation", "slurm"])
def test_profiles_load(tmp_path, profile):
    res = snakemake(
        tmp_path,
        REPO / "config" / "config.yaml",
        "-n",
        "--profile",
        str(REPO / "profiles" / profile),
        "--config",
        f"patients={REPO / 'config' / 'patients.tsv'}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert f"Using profile {REPO / 'profiles' / profile}" in out
    if profile == "slurm":  # grouped: one group job per stage for the 10 demo patients
        assert {g: out.count(f"Group job {g} ") for g in ("prep", "lungs", "post", "infection")} == {
            "prep": 1,
            "lungs": 1,
            "post": 1,
            "infection": 1,
        }
    else:
        assert job_counts(out)["segment_lungs"] == len(DEMO_COHORT)


def test_infection_test_set_adds_its_evaluation(tmp_path):
    config = write_config(
        tmp_path,
        REPO / "config" / "patients.tsv",
        infection={"test": {"images": str(tmp_path / "Imgs"), "masks": str(tmp_path / "GT")}},
    )
    res = snakemake(tmp_path, config, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    assert job_counts(res.stdout + res.stderr)["evaluate_infection_unet"] == 1


def test_cross_validation_folds_add_their_rule_and_the_report_reads_it(tmp_path):
    config = write_config(tmp_path, REPO / "config" / "patients.tsv", evaluation={"folds": 5})
    res = snakemake(tmp_path, config, "-n", "--forceall", "results/metrics/summary.html")
    assert res.returncode == 0, res.stderr[-2000:]
    assert job_counts(res.stdout + res.stderr)["cross_validate"] == 1
    bad = write_config(tmp_path, REPO / "config" / "patients.tsv", evaluation={"folds": 2})
    res = snakemake(tmp_path, bad, "-n")
    assert res.returncode != 0 and "folds" in res.stdout + res.stderr


def test_unsafe_patient_id_fails_alone_naming_the_line(tmp_path):
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("patient_id\tdicom_dir\tlabel\tscore\nok01\traw/ok01\t\t\nDoe, John\traw/x\t1\t\n")
    res = snakemake(tmp_path, write_config(tmp_path, sheet), "-n")
    counts = job_counts(res.stdout + res.stderr)
    assert counts["reject_sheet_row"] == 1 and counts["anonymize_dicom"] == 1


def test_good_patients_complete_bad_ones_fail_alone(tiny_run):
    work, _, res, _, after = tiny_run
    assert res.returncode != 0  # two bad patients
    for spec in TINY:
        pid = spec.patient_id
        for out in (
            f"npy/{pid}.npy",
            f"qc/{pid}.png",
            f"verify/{pid}.json",
            f"hu/{pid}.nii.gz",
            f"lung_mask/{pid}.json",
        ):
            assert (work / "results" / out).is_file(), out
    log = (work / "results/logs/dicom_to_hu/bad01.log").read_text()
    assert "patient bad01" in log and "no axial CT series" in log and "coronal" in log
    log = (work / "results/logs/anonymize_dicom/bad02.log").read_text()
    assert "patient bad02" in log and "does not exist" in log
    # the models train on the labeled patients; predictions wait for every patient's array
    assert (work / "results/models/classifier.keras").is_file()
    assert (work / "results/models/scorer.keras").is_file()
    for kind in ("classifier", "scorer"):  # their cards beside them: tiny01..03 are no demo patients, so "real"
        card = json.loads((work / f"results/models/{kind}.card.json").read_text())
        assert card["trained_on"] == "real" and card["data_sheet"]["train"]["patients"] == 2
        assert (work / f"results/models/{kind}.card.md").is_file()
    assert "3D model training classifier epoch 1/" in (work / "results/logs/train_classifier.log").read_text()
    assert "results/predictions.csv" not in after
    # nothing half-written for the bad ones
    assert not [f for f in after if f.startswith("results/") and "/bad0" in f and f.endswith((".nii.gz", ".npy"))]
    assert not [f for f in after if ".tmp" in f]


def test_raw_input_untouched(tiny_run):
    work, _, _, raw_before, _ = tiny_run
    raw_after = {p: p.read_bytes() for p in (work / "raw").rglob("*") if p.is_file()}
    assert raw_after == raw_before


def test_outputs_have_expected_content(tiny_run):
    work, truth = tiny_run[:2]
    for spec in TINY:
        pid = spec.patient_id
        hu = sitk.ReadImage(str(work / f"results/hu/{pid}.nii.gz"))
        assert hu.GetPixelID() == sitk.sitkInt16
        assert hu.GetSize()[2] == spec.n_slices
        assert hu.GetSpacing() == pytest.approx((spec.pixel_spacing_mm, spec.pixel_spacing_mm, spec.slice_spacing_mm))
        arr = sitk.GetArrayViewFromImage(hu)
        assert -1024 <= arr.min() and arr.max() <= 3071
        res = sitk.ReadImage(str(work / f"results/resampled/{pid}.nii.gz"))
        assert res.GetSpacing() == (5.0, 5.0, 5.0)
        npy = np.load(work / f"results/npy/{pid}.npy")
        assert npy.shape == (16, 32, 32) and npy.dtype == np.float32
        assert 0.0 <= npy.min() and npy.max() <= 1.0 and npy.max() > 0.05
        png = Image.open(work / f"results/qc/{pid}.png")
        assert png.size[0] > 100 and png.mode == "RGB"
        assert json.loads((work / f"results/verify/{pid}.json").read_text())["passed"] is True
        info = json.loads((work / f"results/hu/{pid}.json").read_text())
        if spec.localizer:
            assert len(info["series"]) == 2 and info["chosen_series"]["n_slices"] == spec.n_slices


def test_lung_masks_match_phantom_truth(tiny_run):
    work = tiny_run[0]
    for spec in TINY:
        pid = spec.patient_id
        mask = sitk.ReadImage(str(work / f"results/lung_mask/{pid}.nii.gz"))
        true = sitk.ReadImage(str(work / f"truth/{pid}_lung.nii.gz"))
        true_on_mask = sitk.Resample(true, mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        d = dice(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(true_on_mask))
        assert d >= 0.9, f"{pid}: Dice {d:.3f}"
        prov = json.loads((work / f"results/lung_mask/{pid}.json").read_text())
        assert prov["left_right_known"] is True


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{200,}={0,2}")


def _html_text(data: bytes) -> list[bytes]:
    """An HTML page with its long base64 runs cut out, plus each run decoded where it decodes to text.
    Snakemake's report embeds its files as base64, where a 4-letter name turns up by chance
    (case-insensitively, about once per MB): the embedded files are searched decoded instead."""
    parts = [_BASE64_RUN.sub(b" ", data)]
    for run in _BASE64_RUN.findall(data):
        try:
            text = base64.b64decode(run + b"=" * (-len(run) % 4)).decode("utf-8")
        except (binascii.Error, ValueError):
            continue  # binary (images) or not base64 after all
        parts.extend(_html_text(text.encode()))
    return parts


def _h5_text(source) -> list[bytes]:
    """Every name, attribute and string dataset of an HDF5 file (its numbers cannot hold a name)."""
    parts = []
    with h5py.File(source, "r") as h5:

        def visit(name, obj):
            parts.append(name.encode())
            parts.extend(f"{k}={v!r}".encode() for k, v in obj.attrs.items())
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "SOU":
                parts.append(repr(obj[()]).encode())

        parts.extend(f"{k}={v!r}".encode() for k, v in h5.attrs.items())
        h5.visititems(visit)
    return parts


def _searchable(path) -> list[bytes]:
    """What an identifier search reads in one output file, lower-cased: the text a person or program can
    read from it. Text files whole; the text inside containers (HTML report, zipped Keras model, HDF5,
    NIfTI header, .npy header, PNG text chunks, DICOM elements other than pixel data). Raw numbers (weights,
    voxels, pixels) are left out: 4-letter needles such as an age ('064Y') turn up in them by chance."""
    data = path.read_bytes()
    name = path.name
    if name.endswith(".html"):
        parts = _html_text(data)
    elif name.endswith(".keras"):
        parts = []
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for member in z.namelist():
                body = z.read(member)
                parts.extend(_h5_text(io.BytesIO(body)) if member.endswith(".h5") else [member.encode(), body])
    elif name.endswith((".h5", ".hdf5")):
        parts = _h5_text(path)
    elif name.endswith(".nii.gz"):
        raw = gzip.decompress(data)
        parts = [raw[: int(np.frombuffer(raw[108:112], "<f4")[0])]]  # header and extensions, up to vox_offset
    elif name.endswith(".npy"):
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            (np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0)(f)
            parts = [data[: f.tell()]]
    elif name.endswith(".png"):
        with Image.open(path) as im:
            parts = [repr(im.info).encode(), repr(getattr(im, "text", {})).encode()]
    elif name.endswith(".dcm"):
        ds = pydicom.dcmread(path)
        del ds.PixelData
        parts = [repr(ds).encode(), repr(ds.file_meta).encode()]
    else:
        parts = [data]
    return [p.lower() for p in parts]


def test_no_identifier_leaves_anonymization(tiny_run):
    work, truth = tiny_run[:2]
    needles = set()
    for t in truth.values():
        for key, value in t["identity"].items():
            # UIDs are checked by verify_anonymization; times of day are kept (dates are shifted)
            if key.endswith(("UID", "Time")) or not isinstance(value, str) or len(value) < 4:
                continue
            needles.add(value.encode().lower())
            needles.update(part.encode().lower() for part in value.split("^") if len(part) >= 4)
    assert len(needles) > 20
    for path in (work / "results").rglob("*"):
        if path.is_file() and "demo" not in path.parts:
            for data in _searchable(path):
                for needle in needles:
                    assert needle not in data, f"identifier found in {path.relative_to(work)}"
    # the key never appears in results or logs
    for path in (work / "results").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()


def test_real_patients_refused_without_key(tmp_path):
    spec = TINY[0]
    write_patient(spec, tmp_path / "raw" / "k01", tmp_path / "truth")
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("patient_id\tdicom_dir\tlabel\tscore\nk01\traw/k01\t\t\n")
    res = snakemake(tmp_path, write_config(tmp_path, sheet), "--cores", "1", "results/anonymized/k01")
    assert res.returncode != 0
    log = (tmp_path / "results/logs/anonymize_dicom/k01.log").read_text()
    assert "COVIDCT_ANON_KEY" in log
    assert not (tmp_path / "results/anonymized/k01").exists()


def test_demo_patient_end_to_end_with_default_config(tmp_path):
    """The default config on one demo patient (the one with a localizer): synth -> ... -> npy."""
    demo = next(s for s in DEMO_COHORT if s.localizer)
    pid = demo.patient_id
    res = snakemake(
        tmp_path,
        REPO / "config" / "config.yaml",
        f"results/npy/{pid}.npy",
        f"results/qc/{pid}.png",
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--config",
        f"patients={REPO / 'config' / 'patients.tsv'}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    npy = np.load(tmp_path / f"results/npy/{pid}.npy")
    assert npy.shape == (64, 128, 128)
    truth = json.loads((tmp_path / f"results/demo/truth/{pid}.json").read_text())
    prov = json.loads((tmp_path / f"results/lung_mask/{pid}.json").read_text())
    assert prov["lung_volume_ml"] == pytest.approx(truth["lung_volume_ml"], rel=0.15)


def test_rerun_after_fixing_sheet_runs_only_the_aggregates(tiny_rerun):
    work, dry, res, _, per_patient, models = tiny_rerun
    assert res.returncode == 0, res.stderr[-3000:]
    # the read-outs' cohort table and plot waited for every patient's read-out (the bad ones had none)
    assert job_counts(dry.stdout + dry.stderr) == {
        "predict": 1,
        "evaluate": 1,
        "summarize": 1,
        "severity_cohort": 1,
        "severity_vs_score": 1,
        "all": 1,
    }
    for path, (mtime, data) in per_patient.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data, path
    assert all(p.stat().st_mtime_ns == m for p, m in models.items())


def test_predictions_metrics_and_report(tiny_rerun):
    import csv

    work, _, _, report, _, _ = tiny_rerun
    rows = list(csv.DictReader(open(work / "results/predictions.csv")))
    assert [r["patient_id"] for r in rows] == ["tiny01", "tiny02", "tiny03"]
    assert [r["split"] for r in rows] == ["train", "train", "val"]
    for r in rows:
        seg = json.loads((work / f"results/infection_mask/{r['patient_id']}.json").read_text())
        assert float(r["seg_score"]) == seg["seg_score"] and 0 <= seg["seg_score"] <= 100
        assert r["seg_severity_class"] in ("Low", "Mild", "Moderate", "Severe", "Critical")
        assert int(r["seg_ctsi"]) == int(float(r["seg_score"]) // 4) and len(r["infection_unet_sha256"]) == 64
        assert (work / f"results/infection_mask/{r['patient_id']}.nii.gz").is_file()
        assert (work / f"results/qc/{r['patient_id']}_infection.png").is_file()
        sev = json.loads((work / f"results/severity/{r['patient_id']}.json").read_text())
        assert (work / f"results/severity/{r['patient_id']}.png").is_file()
        # the read-out scores the same masks: its PO is the segmentation severity
        assert float(r["po"]) == sev["po"] == pytest.approx(seg["seg_score"], abs=0.011)
        assert r["region_scheme"] == sev["scheme"] == "zones" and r["ctss"] == ""  # no lobe model configured
        # lesion types from the U-Net's lesion-type head (the phantoms' masks hold types)
        assert seg["lesion_types"] == "model" and r["lesion_types"] == sev["lesion_types"] == "model"
        assert (work / f"results/infection_mask/{r['patient_id']}_types.nii.gz").is_file()
        assert float(r["ggo_percent"]) == pytest.approx(seg["seg_ggo_percent"], abs=0.011)
        assert float(r["consolidation_percent"]) == pytest.approx(seg["seg_consolidation_percent"], abs=0.011)
        zones = [int(r[f"score_{z}"]) for z in ("RUZ", "RMZ", "RLZ", "LUZ", "LMZ", "LLZ")]
        assert int(r["zone_score"]) == sum(zones) == sev["zone_score"] and r["score_RUL"] == ""
        assert float(r["ggo_percent"]) + float(r["consolidation_percent"]) == pytest.approx(float(r["po"]), abs=0.02)
        # PHO is an HU cut (-200 HU) inside the infection; the types come from the model, not that cut
        assert 0 <= float(r["pho"]) <= float(r["po"]) + 0.01
        assert r["po_severity_class"] in ("Low", "Mild", "Moderate", "Severe", "Critical")
        assert sev["study_date"] and len(sev["study_date"]) == 8  # the anonymizer's shifted date
        assert 0 <= float(r["covid_probability"]) <= 1 and r["covid_label"] in ("0", "1")
        assert 0 <= float(r["score"]) <= 100 and int(r["ctsi"]) == int(float(r["score"]) // 4)
        assert len(r["classifier_sha256"]) == 64 and len(r["scorer_sha256"]) == 64
    clf = json.loads((work / "results/metrics/classifier.json").read_text())
    reg = json.loads((work / "results/metrics/scorer.json").read_text())
    assert clf["n_val"] == 1 and {"accuracy", "auc", "sensitivity", "specificity", "confusion_matrix"} <= set(clf)
    assert {
        "mae",
        "rmse",
        "pearson_r",
        "class_exact_accuracy",
        "class_within_one_accuracy",
        "class_distance_counts",
    } <= set(reg)
    for plot in (
        "classifier_training",
        "classifier_roc",
        "scorer_scatter",
        "scorer_severity_confusion",
        "cohort_label",
        "cohort_severity",
        "cohort_ctsi",
        "cohort_po_vs_score",
    ):
        assert (work / f"results/plots/{plot}.png").is_file(), plot
    cohort = list(csv.DictReader(open(work / "results/severity/cohort.csv")))
    assert [c["patient_id"] for c in cohort] == ["tiny01", "tiny02", "tiny03"]
    assert [c["po"] for c in cohort] == [r["po"] for r in rows] and cohort[1]["sheet_score"] == "0.0"
    assert report.returncode == 0, report.stderr[-2000:]
    html = (work / "results/report.html").read_text(errors="replace")
    assert "predictions.csv" in html and "cohort_ctsi.png" in html and "tiny01.png" in html
    assert "tiny01_infection.png" in html and "Severity read-out" in html and "cohort_po_vs_score.png" in html
    assert KEY not in html and KEY.encode() not in (work / "results/report.html").read_bytes()
    inf = json.loads((work / "results/metrics/infection_unet.json").read_text())
    assert inf["chosen_variant"] == "dice_ce" and inf["cross_validation"]["folds"] == 2 and "cv_dice" in inf
    assert inf["classes"] == 3  # the phantoms' masks hold lesion types
    summary = (work / "results/metrics/summary.html").read_text()
    assert "Infection U-Net" in summary and "<h2>Models</h2>" in summary
    # the tiny cohort's U-Net learned from phantoms, its 3D models from the sheet's (phantom) rows
    assert "synthetic phantoms only: infection_unet" in summary


def test_cli_predict_one_new_patient_with_trained_models(tiny_rerun, tmp_path):
    import subprocess
    import sys

    work = tiny_rerun[0]
    spec = PhantomSpec("new01", 601, True, 30.0, 26, 10.0, 72, 5.0)
    write_patient(spec, tmp_path / "raw", tmp_path / "truth")
    env = {**__import__("os").environ, "COVIDCT_ANON_KEY": KEY}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "covidct.cli",
            "predict",
            str(tmp_path / "raw"),
            "--patient",
            "new01",
            "--models",
            str(work / "results/models"),
            "--out-dir",
            str(tmp_path / "out"),
            "--spacing-mm",
            "5",
            "--allow-synthetic-model",  # the tiny cohort's U-Net learned from phantoms only; new01 is no demo patient
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    fields = dict(line.split("\t") for line in res.stdout.strip().splitlines())
    assert fields["patient_id"] == "new01" and fields["split"] == "new"
    assert 0 <= float(fields["covid_probability"]) <= 1 and 0 <= float(fields["score"]) <= 100
    assert 0 <= float(fields["seg_score"]) <= 100 and (tmp_path / "out/infection_mask/new01.nii.gz").is_file()
    assert (tmp_path / "out/npy/new01.npy").is_file() and (tmp_path / "out/qc/new01.png").is_file()
    # a missing model folder is a clear error, not a traceback
    res = subprocess.run(
        [
            *(sys.executable, "-m", "covidct.cli", "predict", str(tmp_path / "raw"), "--patient", "new01"),
            *("--models", str(tmp_path / "nope")),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 1 and "model not found" in res.stderr


def test_real_folder_name_never_reaches_snakemake_logs_or_metadata(tmp_path):
    """Hospital exports are often named after the patient: that name must stay in the sheet,
    also when the patient's input is bad and the error names the file."""
    raw = tmp_path / "exports" / "DOE_JOHN_MRN4471203"
    write_patient(TINY[0], raw, tmp_path / "truth")
    bad = tmp_path / "exports" / "SMITH_JANE_MRN5550123"
    write_patient(TINY[1], bad, tmp_path / "truth")
    (bad / "SMITH_JANE_report.txt").write_text("not DICOM")  # skipped (by rank, not name) since issue 10
    victim = sorted(bad.glob("*.dcm"))[3]
    victim.write_bytes(victim.read_bytes()[:-500])  # a truncated slice: P002 fails, naming the file
    sheet = tmp_path / "patients.tsv"
    sheet.write_text(f"patient_id\tdicom_dir\tlabel\tscore\nP001\t{raw}\t\t\nP002\t{bad}\t\t\n")
    config = write_config(tmp_path, sheet, resample={"spacing_mm": 5.0})
    res = snakemake(
        tmp_path,
        config,
        "results/lung_mask/P001.nii.gz",
        "results/anonymized/P002",
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--keep-going",
        key=KEY,
    )
    assert res.returncode != 0  # P002 fails
    assert (tmp_path / "results/lung_mask/P001.nii.gz").is_file()
    log = (tmp_path / "results/logs/anonymize_dicom/P002.log").read_text()
    assert "patient P002" in log and "corrupt or truncated DICOM file" in log and "<dicom_dir of P002>, file" in log
    for name in ("DOE_JOHN", "SMITH_JANE", "MRN4471203", "MRN5550123"):
        assert name not in res.stdout + res.stderr
        for folder in (tmp_path / ".snakemake", tmp_path / "results"):
            for path in folder.rglob("*"):
                if path.is_file():
                    assert name.encode() not in path.read_bytes(), (name, path.relative_to(tmp_path))
