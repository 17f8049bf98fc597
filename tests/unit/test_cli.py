"""The command line: a table of verbs that call the workflow's own steps, defaults from the config schema."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import SimpleITK as sitk

from covidct import cli, config, steps
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
