"""The command line: a table of verbs that call the workflow's own steps, defaults from the config schema."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import SimpleITK as sitk

from covidct import cli, config, steps
from covidct.deid.keys import load_key
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient
from covidct.errors import CovidctError
from covidct.modelcard import SYNTHETIC_WARNING, card_paths, make_card, source_entry, write_card
from helpers import chest_phantom


def test_every_verb_builds_and_takes_its_defaults_from_the_schema():
    parser = cli.build_parser()
    for verb in cli.VERBS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([verb.name, "--help"])
        assert exit_info.value.code == 0
    args = parser.parse_args(["resample", "a.nii.gz", "b.nii.gz"])
    assert args.spacing_mm == config.default("resample.spacing_mm") == 1.5
    args = parser.parse_args(["export", "v", "m", "o.npy", "--patient", "p1"])
    assert args.shape == config.default("export.shape") and args.hu_window == config.default("export.hu_window")
    args = parser.parse_args(["segment", "v", "m", "--patient", "p1"])
    assert args.backend == "threshold" and args.batch_size == config.default("lung_mask.batch_size")
    with pytest.raises(SystemExit):  # choices come from the schema's enum
        parser.parse_args(["segment", "v", "m", "--patient", "p1", "--backend", "magic"])


def test_verbs_that_call_a_step_directly_use_its_argument_names():
    assert sum(isinstance(verb.run, str) for verb in cli.VERBS) >= 4
    for verb in cli.VERBS:
        if isinstance(verb.run, str):  # the name of the step it calls
            assert getattr(steps, verb.run) is verb.function
            accepted = set(inspect.signature(verb.function).parameters)
            assert {a.name for a in verb.args} <= accepted, verb.name


def test_resample_export_and_qc_through_the_command_line(tmp_path, capsys):
    hu, labels = chest_phantom(shape=(24, 40, 40))
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((5.0, 5.0, 5.0))
    sitk.WriteImage(image, str(tmp_path / "hu.nii.gz"))
    mask = sitk.GetImageFromArray((labels > 0).astype(np.uint8))
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    assert cli.main(["resample", str(tmp_path / "hu.nii.gz"), str(tmp_path / "r.nii.gz"), "--spacing-mm", "10"]) == 0
    assert sitk.ReadImage(str(tmp_path / "r.nii.gz")).GetSpacing() == (10.0, 10.0, 10.0)
    assert (
        cli.main(
            [
                "export",
                str(tmp_path / "hu.nii.gz"),
                str(tmp_path / "mask.nii.gz"),
                str(tmp_path / "a.npy"),
                "--patient",
                "p1",
                "--shape",
                "16",
                "32",
                "32",
            ]
        )
        == 0
    )
    array = np.load(tmp_path / "a.npy")
    assert array.shape == (16, 32, 32) and 0 <= array.min() and array.max() <= 1
    sitk.WriteImage(mask, str(tmp_path / "labels.nii.gz"))
    assert (
        cli.main(
            [
                "qc",
                str(tmp_path / "hu.nii.gz"),
                str(tmp_path / "labels.nii.gz"),
                str(tmp_path / "qc.png"),
                "--patient",
                "p1",
                "--n-slices",
                "4",
            ]
        )
        == 0
    )
    assert (tmp_path / "qc.png").stat().st_size > 1000
    # an empty mask: a clear error naming the patient, exit status 1, nothing written
    sitk.WriteImage(sitk.Image(mask.GetSize(), sitk.sitkUInt8), str(tmp_path / "empty.nii.gz"))
    assert (
        cli.main(
            [
                "export",
                str(tmp_path / "hu.nii.gz"),
                str(tmp_path / "empty.nii.gz"),
                str(tmp_path / "b.npy"),
                "--patient",
                "p1",
            ]
        )
        == 1
    )
    assert "patient p1" in capsys.readouterr().err and not (tmp_path / "b.npy").exists()


def test_severity_read_out_through_the_command_line(tmp_path, capsys):
    hu, labels = chest_phantom(shape=(24, 40, 40))
    infection = np.zeros(labels.shape, np.uint8)
    infection[:6][labels[:6] > 0] = 1  # the lowest slices of both lungs
    for name, array in (("hu", hu), ("labels", labels), ("infection", infection)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((5.0, 5.0, 5.0))
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    args = [str(tmp_path / f"{n}.nii.gz") for n in ("hu", "labels", "infection")] + [str(tmp_path / "s.json")]
    assert cli.main(["severity", *args, "--patient", "p1"]) == 0
    out = capsys.readouterr().out
    result = __import__("json").loads((tmp_path / "s.json").read_text())
    assert result["scheme"] == "zones" and (tmp_path / "s.png").is_file()
    assert f"zone score {result['zone_score']}/30" in out and f"PO {result['po']:.1f} %" in out
    assert result["zone_score"] == sum(r["score"] for r in result["regions"]) and result["zone_score"] > 0
    assert all(r["score"] == 0 for r in result["regions"] if "upper" in r["label"])


PATIENT_VERBS = [verb for verb in cli.VERBS if any(arg.name == "patient" for arg in verb.args)]


def _argv(verb: cli.Verb, tmp_path, patient: str) -> list[str]:
    """A command line of ``verb`` that argparse accepts: every positional and required flag filled."""
    argv = [verb.name]
    for i, arg in enumerate(verb.args):
        if arg.name == "patient":
            argv += ["--patient", patient]
        elif not arg.flag:
            argv.append(str(tmp_path / f"arg{i}"))
        elif arg.required:
            argv += ["--" + arg.name.replace("_", "-"), str(tmp_path / f"arg{i}")]
    return argv


@pytest.mark.parametrize("verb", PATIENT_VERBS, ids=[v.name for v in PATIENT_VERBS])
@pytest.mark.parametrize("patient", ["../x", "a b", "John Doe", "P1/..", ""])
def test_every_verb_refuses_an_unsafe_pseudonym_before_writing(verb, patient, tmp_path, capsys):
    """The workflow's own safe-id rule (covidct.sheet.SAFE_ID): one line, exit 1, nothing written."""
    assert {"anonymize", "verify", "run", "predict", "hu", "segment", "severity"} <= {v.name for v in PATIENT_VERBS}
    assert cli.main(_argv(verb, tmp_path, patient)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"covidct {verb.name}: error: --patient must be a pseudonym")
    assert "Traceback" not in err and (not patient or patient not in err) and list(tmp_path.iterdir()) == []


def test_every_verb_has_an_example_and_the_top_help_is_in_user_words(capsys):
    parser = cli.build_parser()
    for verb in cli.VERBS:
        with pytest.raises(SystemExit):
            parser.parse_args([verb.name, "--help"])
        out = capsys.readouterr().out
        assert f"example:\n  covidct {verb.name} " in out, verb.name
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "covidct run /path/to/dicom_folder out/ --patient P0001" in out and "--infection-model" in out
    assert not any(markup in out for markup in ("``", "Args:", "Returns:", "steps.", "VERBS"))
    with pytest.raises(SystemExit) as exit_info:  # predict needs --patient like every other verb
        parser.parse_args(["predict", "raw/"])
    assert exit_info.value.code == 2


def test_errors_name_what_the_user_typed(tmp_path, capsys, monkeypatch):
    """The workflow says <dicom_dir of P> and anonymize.key_file; the command line names the folder given
    and --key-file."""
    monkeypatch.delenv("COVIDCT_ANON_KEY", raising=False)
    missing = tmp_path / "no such folder"
    assert cli.main(["anonymize", str(missing), str(tmp_path / "out"), "--patient", "P1"]) == 1
    err = capsys.readouterr().err
    assert f"file {missing}: the DICOM folder does not exist" in err and "dicom_dir" not in err
    raw = tmp_path / "raw"
    raw.mkdir()
    assert cli.main(["run", str(raw), str(tmp_path / "out"), "--patient", "P1"]) == 1
    err = capsys.readouterr().err
    assert "no anonymization key" in err and "--key-file" in err and "anonymize.key_file" not in err
    model = tmp_path / "nothing.keras"
    assert cli.main(["run", str(raw), str(tmp_path / "out"), "--patient", "P1", "--infection-model", str(model)]) == 1
    err = capsys.readouterr().err
    assert f"file {model}: infection model not found" in err and not (tmp_path / "out").exists()
    # the workflow's words are unchanged
    with pytest.raises(CovidctError, match="the sheet's dicom_dir does not exist") as told:
        steps.anonymize_dicom("P1", tmp_path / "o", sheet=_sheet(tmp_path, missing))
    assert "<dicom_dir of P1>" in str(told.value) and str(missing) not in str(told.value)
    with pytest.raises(CovidctError, match="anonymize.key_file in the config"):
        load_key(None)


def _sheet(tmp_path, dicom_dir):
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(f"patient_id\tdicom_dir\tlabel\tscore\nP1\t{dicom_dir}\t\t\n")
    return sheet


def _tiny_unet(folder, trained_on: str):
    """A U-Net with random weights, its sidecar and its model card: enough to run the chain."""
    from covidct.infection.inputs import INPUT_SPACE
    from covidct.infection.unet import build_unet

    model = folder / "infection_unet.keras"
    folder.mkdir(parents=True, exist_ok=True)
    build_unet(32, 2, "dice_ce", classes=3, norm="none").save(model)
    sidecar = {"size": 32, "input_space": INPUT_SPACE, "threshold": 0.5, "classes": 3, "variant": "dice_ce"}
    (folder / "infection_unet.json").write_text(json.dumps(sidecar))
    card = make_card("infection_unet", [source_entry("volumes", trained_on, volumes=2)], {}, {})
    write_card(card, *card_paths(model))
    return model


def test_run_goes_on_to_the_infection_and_severity_with_a_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COVIDCT_ANON_KEY", "test-key-0123456789abcdef")
    write_patient(PhantomSpec("c1", 41, True, 20.0, 8, 10.0, 40, 9.0), tmp_path / "raw", tmp_path / "truth")
    synthetic, real = _tiny_unet(tmp_path / "synthetic", "synthetic"), _tiny_unet(tmp_path / "real", "real")
    base = ["run", str(tmp_path / "raw"), str(tmp_path / "out"), "--patient", "P1", "--spacing-mm", "6"]
    base += ["--shape", "8", "16", "16"]
    # a synthetic-only model on a real patient: refused before anything is written
    assert cli.main([*base, "--infection-model", str(synthetic)]) == 1
    err = capsys.readouterr().err
    assert "trained on synthetic phantoms only" in err and "--allow-synthetic-model" in err
    assert "allow_synthetic_models" not in err and not (tmp_path / "out").exists()
    # without a model: the chain stops at the QC picture and says what it skipped
    assert cli.main(base) == 0
    out = capsys.readouterr().out
    provenance = json.loads((tmp_path / "out/lung_mask/P1.json").read_text())
    assert f"lungs: {provenance['lung_volume_ml']:.0f} mL; QC flags: " in out
    assert "skipped: infection mask and severity read-out" in out and f"QC picture: {tmp_path}/out/qc/P1.png" in out
    assert not (tmp_path / "out/severity").exists()
    # a model trained on real data: infection mask, read-out, panel, summary with PO and zone score
    assert cli.main([*base, "--infection-model", str(real)]) == 0
    out = capsys.readouterr().out
    readout = json.loads((tmp_path / "out/severity/P1.json").read_text())
    assert f"PO {readout['po']:.1f} % of the lung" in out and f"zone score {readout['zone_score']}/30" in out
    assert "skipped" not in out and "WARNING" not in out and readout["warning"] is None
    for name in ("infection_mask/P1.nii.gz", "qc/P1_infection.png", "severity/P1.png"):
        assert (tmp_path / "out" / name).is_file() and str(tmp_path / "out" / name) in out
    # the opt-in: the synthetic model reads the patient, and the outputs say so
    assert cli.main([*base, "--infection-model", str(synthetic), "--allow-synthetic-model"]) == 0
    out = capsys.readouterr().out
    assert f"WARNING: {SYNTHETIC_WARNING}" in out
    assert json.loads((tmp_path / "out/severity/P1.json").read_text())["warning"] == SYNTHETIC_WARNING
    assert json.loads((tmp_path / "out/infection_mask/P1.json").read_text())["warning"] == SYNTHETIC_WARNING


def test_predict_refuses_a_synthetic_only_classifier_before_reading_the_patient(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COVIDCT_ANON_KEY", "test-key-0123456789abcdef")
    models, raw = tmp_path / "models", tmp_path / "raw"
    models.mkdir()
    raw.mkdir()
    for name, kind in (("classifier", "synthetic"), ("scorer", "real")):
        (models / f"{name}.keras").write_bytes(b"not read before the check")
        write_card(
            make_card(name, [source_entry("demo cohort", kind, patients=3)], {}, {}),
            *card_paths(models / f"{name}.keras"),
        )
    (models / "classifier.json").write_text(json.dumps({"threshold": 0.5, "shape": [8, 16, 16]}))
    base = ["predict", str(raw), "--patient", "P1", "--models", str(models), "--out-dir", str(tmp_path / "out")]
    assert cli.main(base) == 1
    err = capsys.readouterr().err
    assert "patient P1" in err and "classifier was trained on synthetic phantoms only" in err
    assert "--allow-synthetic-model" in err and not (tmp_path / "out").exists()
    # the opt-in passes the check: what fails next is the empty DICOM folder, not the model
    assert cli.main([*base, "--allow-synthetic-model"]) == 1
    assert "synthetic" not in capsys.readouterr().err
