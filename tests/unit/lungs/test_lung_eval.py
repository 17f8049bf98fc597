"""Lung masks against references: RTSTRUCT reading and rasterization, metrics, lung-eval (library,
step, command line) on structure sets written here with known geometry."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from covidct import cli, steps
from covidct.dicom.rtstruct import RTSTRUCT_SOP_CLASS, Roi, match_rois, rasterize, read_rtstruct
from covidct.errors import CovidctError
from covidct.lungs.evaluation import (
    LEFT_LUNG_PATTERN,
    RIGHT_LUNG_PATTERN,
    TABLE_COLUMNS,
    compare,
    dice,
    evaluate,
    hausdorff,
    reference_labels,
)

SPACING = (2.0, 2.0, 3.0)  # x, y, z (mm)
SHAPE = (10, 40, 50)  # z, y, x
ORIGIN = (-50.0, -40.0, 0.0)


def _grid() -> sitk.Image:
    image = sitk.Image(SHAPE[2], SHAPE[1], SHAPE[0], sitk.sitkUInt8)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image


def _ellipse(cx: float, cy: float, a: float, b: float, n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + a * np.cos(t), cy + b * np.sin(t)])


def write_rtstruct(path, rois: dict[str, list[tuple[float, np.ndarray]]]) -> None:
    """A minimal RTSTRUCT: ROI name -> list of (z, polygon (n, 2) in mm) closed planar contours."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID = "TEST"
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = Sequence()
        for z, poly in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            c.ContourData = [f"{v:.4f}" for p in poly for v in (p[0], p[1], z)]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
    ds.save_as(path, enforce_file_format=True)


def _inside_ellipse(cx, cy, a, b) -> np.ndarray:
    """Pixel centres of one slice of the grid inside an ellipse (y, x)."""
    xs = ORIGIN[0] + SPACING[0] * np.arange(SHAPE[2])
    ys = ORIGIN[1] + SPACING[1] * np.arange(SHAPE[1])
    return ((xs[None, :] - cx) / a) ** 2 + ((ys[:, None] - cy) / b) ** 2 < 1


@pytest.fixture(scope="module")
def structure_set(tmp_path_factory):
    """Right lung: an ellipse on planes z = 3, 6, 9, 12 (slices 1-4); left lung: a ring (outer ellipse and a
    hole) on planes z = 6, 9, plus Heart and GTV-1 (a tumour filling part of the hole on plane 9) ROIs."""
    path = tmp_path_factory.mktemp("rt") / "rs.dcm"
    right = [(z, _ellipse(-25.3, 0.3, 16, 24)) for z in (3.0, 6.0, 9.0, 12.0)]
    left = [(z, poly) for z in (6.0, 9.0) for poly in (_ellipse(22.3, 0.3, 16, 24), _ellipse(22.3, 0.3, 6, 8))]
    write_rtstruct(
        path,
        {
            "Lung-Right": right,
            "Lung-Left": left,
            "Heart": [(6.0, _ellipse(0, 10, 5, 5))],
            "GTV-1": [(9.0, _ellipse(22.3, 0.3, 5, 5))],
        },
    )
    return path


def test_read_rtstruct_groups_polygons_by_plane(structure_set):
    rois = read_rtstruct(structure_set)
    assert set(rois) == {"Lung-Right", "Lung-Left", "Heart", "GTV-1"}
    assert sorted(rois["Lung-Right"].planes) == [3.0, 6.0, 9.0, 12.0]
    assert [len(v) for v in rois["Lung-Left"].planes.values()] == [2, 2]
    # a folder holding one RTSTRUCT (and clutter) works too
    assert set(read_rtstruct(structure_set.parent)) == set(rois)


def test_rasterize_on_plane_is_the_polygon_at_pixel_centres(structure_set):
    rois = read_rtstruct(structure_set)
    right = rasterize([rois["Lung-Right"]], _grid())
    for k in (1, 2, 3, 4):  # slice k lies on plane z = 3k
        np.testing.assert_array_equal(right[k], _inside_ellipse(-25.3, 0.3, 16, 24))
    assert not right[0].any()  # a whole plane spacing below the first plane
    assert not right[5:].any()
    left = rasterize([rois["Lung-Left"]], _grid())
    ring = _inside_ellipse(22.3, 0.3, 16, 24) & ~_inside_ellipse(22.3, 0.3, 6, 8)  # the inner polygon is a hole
    np.testing.assert_array_equal(left[2], ring)
    np.testing.assert_array_equal(left[3], ring)


def test_rasterize_between_planes_interpolates_the_shape(tmp_path):
    """Halfway between a small and a large circle, shape-based interpolation gives the middle circle."""
    path = tmp_path / "rs.dcm"
    write_rtstruct(path, {"Lung-Right": [(0.0, _ellipse(0.3, 0.3, 8, 8, 256)), (6.0, _ellipse(0.3, 0.3, 16, 16, 256))]})
    image = _grid()
    image.SetSpacing((SPACING[0], SPACING[1], 3.0))
    mask = rasterize(list(read_rtstruct(path).values()), image)
    middle = mask[1]
    assert np.all(middle[_inside_ellipse(0.3, 0.3, 11, 11)]) and not np.any(middle[~_inside_ellipse(0.3, 0.3, 13, 13)])
    assert abs(int(middle.sum()) - int(_inside_ellipse(0.3, 0.3, 12, 12).sum())) <= 4
    np.testing.assert_array_equal(mask[0], _inside_ellipse(0.3, 0.3, 8, 8))
    np.testing.assert_array_equal(mask[2], _inside_ellipse(0.3, 0.3, 16, 16))


def test_contour_shift_moves_the_raster(structure_set):
    rois = read_rtstruct(structure_set)
    base = rasterize([rois["Lung-Right"]], _grid())
    moved = rasterize([rois["Lung-Right"]], _grid(), shift_mm=(SPACING[0], -SPACING[1]))
    assert base.any() and not np.array_equal(moved, base)
    np.testing.assert_array_equal(moved[:, :-1, 1:], base[:, 1:, :-1])  # one pixel toward +x and -y


@pytest.mark.parametrize(
    "name, side",
    [
        ("Lung-Right", "right"),
        ("Lung_R", "right"),
        ("RT LUNG", "right"),
        ("right lung", "right"),
        ("Lung-Left", "left"),
        ("LUNG_L", "left"),
        ("Left Lung", "left"),
        ("Lungs", None),
        ("Lung-Right-PRV", None),
        ("GTV-1", None),
        ("Heart", None),
    ],
)
def test_default_lung_roi_patterns(name, side):
    rois = {name: Roi(1, name)}
    got = [
        s for s, pattern in (("right", RIGHT_LUNG_PATTERN), ("left", LEFT_LUNG_PATTERN)) if match_rois(rois, pattern)
    ]
    assert got == ([side] if side else [])


def test_metrics_on_shifted_boxes():
    a = np.zeros((20, 20, 20), bool)
    a[5:15, 5:15, 5:15] = True
    b = np.roll(a, 2, axis=2)
    assert dice(a, b) == pytest.approx(0.8)
    assert hausdorff(a, b, (1.0, 1.0, 1.5)) == pytest.approx(3.0)  # 2 voxels of 1.5 mm along x
    assert hausdorff(a, a, (1.0, 1.0, 1.0)) == 0.0
    assert hausdorff(a, np.zeros_like(a), (1.0, 1.0, 1.0)) is None
    labels = a.astype(np.uint8)
    labels[:, :, 10:] = np.where(a[:, :, 10:], 2, 0)
    result = compare(labels, labels, (1.0, 1.0, 1.0))
    assert result["right"]["dice"] == result["left"]["dice"] == result["both"]["dice"] == 1.0
    assert result["both"]["volume_ml"] == 1.0 and result["both"]["volume_diff_ml"] == 0.0
    unsided = compare(a.astype(np.uint8) * 3, labels, (1.0, 1.0, 1.0))
    assert unsided["right"]["dice"] is None and unsided["both"]["dice"] == 1.0


def _mask_from_reference(structure_set, tmp_path, name="labels.nii.gz", drop_slice: int | None = None):
    ref, _, _ = reference_labels(structure_set, _grid())
    if drop_slice is not None:
        ref[drop_slice] = 0
    image = sitk.GetImageFromArray(ref)
    image.CopyInformation(_grid())
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path, ref


def test_evaluate_rtstruct_per_lung_and_with_lesions(structure_set, tmp_path):
    labels, ref = _mask_from_reference(structure_set, tmp_path, drop_slice=2)
    result = evaluate(labels, structure_set, tmp_path / "e.json", "p1")
    assert json.loads((tmp_path / "e.json").read_text()) == json.loads(json.dumps(result))
    assert result["reference"]["right_rois"] == ["Lung-Right"] and result["reference"]["lesion_rois"] == ["GTV-1"]
    both = result["lungs"]["both"]
    assert 0.5 < both["dice"] < 1.0 and both["volume_diff_ml"] < 0
    assert result["lungs"]["left"]["dice"] < result["lungs"]["right"]["dice"] < 1.0  # slice 2 held most of the left
    assert result["lungs_with_lesions"]["lesion_ml_added"] > 0
    assert result["lungs_with_lesions"]["dice"] < both["dice"]


def test_evaluate_label_map_reference(structure_set, tmp_path):
    labels, _ = _mask_from_reference(structure_set, tmp_path)
    reference, _ = _mask_from_reference(structure_set, tmp_path, "ref.nii.gz")
    result = evaluate(labels, reference, tmp_path / "e.json", "p1")
    assert result["reference"] == {"kind": "label_map"}
    assert result["lungs"]["both"]["dice"] == 1.0 and result["lungs"]["left"]["hd95_mm"] == 0.0
    assert "lungs_with_lesions" not in result


def test_missing_lung_roi_is_a_clear_error(structure_set, tmp_path):
    labels, _ = _mask_from_reference(structure_set, tmp_path)
    with pytest.raises(
        CovidctError,
        match=r"no left lung ROI in the RTSTRUCT \(ROIs: GTV-1, Heart, Lung-Left, "
        r"Lung-Right\)",
    ) as err:
        evaluate(labels, structure_set, tmp_path / "e.json", "p7", left_pattern="lung_links")
    assert "patient p7" in str(err.value) and str(structure_set) in str(err.value)
    with pytest.raises(CovidctError, match="not an RTSTRUCT"):
        evaluate(labels, pydicom.data.get_testdata_file("CT_small.dcm"), tmp_path / "e.json", "p7")


def test_step_reads_reference_from_sheet_and_never_names_it(structure_set, tmp_path):
    labels, _ = _mask_from_reference(structure_set, tmp_path)
    sheet = tmp_path / "patients.tsv"
    sheet.write_text(
        f"patient_id\tdicom_dir\tlung_reference\np1\traw/p1\t{structure_set}\np2\traw/p2\t"
        f"{tmp_path}/Doe_John_12345/rs.dcm\n"
    )
    result = steps.evaluate_lung_mask(labels, tmp_path / "p1.json", "p1", sheet=sheet)
    assert result["lungs"]["both"]["dice"] == 1.0
    with pytest.raises(CovidctError) as err:
        steps.evaluate_lung_mask(labels, tmp_path / "p2.json", "p2", sheet=sheet)
    assert "Doe_John" not in str(err.value) and "<lung_reference of p2>" in str(err.value)
    steps.lung_eval_table([tmp_path / "p1.json"], tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["patient_id"] == "p1" and float(rows[0]["dice"]) == 1.0 and list(rows[0]) == list(TABLE_COLUMNS)


def test_cli_lung_eval(structure_set, tmp_path, capsys):
    labels, _ = _mask_from_reference(structure_set, tmp_path)
    assert (
        cli.main(
            [
                "lung-eval",
                str(labels),
                str(structure_set),
                str(tmp_path / "e.json"),
                "--patient",
                "p1",
                "--lesion-roi",
                "",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "both\tdice=1.0" in out and "with lesions" not in out
    assert json.loads((tmp_path / "e.json").read_text())["lungs"]["right"]["dice"] == 1.0
    assert (
        cli.main(["lung-eval", str(labels), str(tmp_path / "none.dcm"), str(tmp_path / "f.json"), "--patient", "p1"])
        == 1
    )
    assert "lung reference not found" in capsys.readouterr().err
