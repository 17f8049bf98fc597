"""The steps of workflow/rules/lungs.smk on a tiny phantom: the lung mask's files and provenance, the QC
montage's title."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from covidct import steps
from helpers import dice

SPACING = (5.0, 5.0, 5.0)


def _image(hu, spacing=SPACING):
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(spacing)
    return img


def test_segment_step_writes_binary_mask_labels_and_provenance(tmp_path, phantom):
    hu, truth = phantom
    volume = tmp_path / "v.nii.gz"
    sitk.WriteImage(_image(hu), str(volume))
    prov = steps.segment_lungs(volume, tmp_path / "m.nii.gz", tmp_path / "l.nii.gz", tmp_path / "m.json", "p1")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.nii.gz")))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert dice(mask, truth) >= 0.95
    expected_ml = (truth > 0).sum() * 0.125
    assert prov["lung_volume_ml"] == pytest.approx(expected_ml, rel=0.08)
    assert json.loads((tmp_path / "m.json").read_text())["backend"] == "threshold"


def test_qc_montage_title_lists_the_flags(tmp_path, phantom):
    hu, truth = phantom
    sitk.WriteImage(_image(hu), str(tmp_path / "v.nii.gz"))
    sitk.WriteImage(_image(truth), str(tmp_path / "l.nii.gz"))
    heights = []
    for flags in ([], ["left/right volume ratio 1.48 outside 0.6-1.25", "3 mL of trachea inside the mask"]):
        (tmp_path / "p.json").write_text(
            json.dumps({"lung_volume_ml": 4000, "backend": "threshold", "qc": {"flags": flags}})
        )
        steps.qc_montage(
            tmp_path / "v.nii.gz",
            tmp_path / "l.nii.gz",
            tmp_path / "qc.png",
            "p1",
            n_slices=4,
            provenance=tmp_path / "p.json",
        )
        heights.append(Image.open(tmp_path / "qc.png").height)
    assert heights[1] == heights[0] + 2 * 12  # one line per flag under the title line
