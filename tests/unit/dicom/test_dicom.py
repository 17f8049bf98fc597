"""DICOM series reading: series choice, slice order, geometry, and every bad-input error."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from covidct.demo.anatomy import make_phantom
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient
from covidct.dicom.hu import load_series
from covidct.errors import DicomInputError

SPEC = PhantomSpec("t01", 77, True, 20.0, 12, 6.0, 48, 7.0)


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    write_patient(SPEC, root / "t01", root / "truth")
    return root / "t01"


def _copy(src, dst):
    shutil.copytree(src, dst)
    return sorted(dst.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))


@pytest.mark.parametrize(
    "flip_x,descending,unsigned", [(False, False, False), (True, True, True), (False, True, False), (True, False, True)]
)
def test_volume_equals_phantom_whatever_the_encoding(tmp_path, flip_x, descending, unsigned):
    spec = PhantomSpec("t02", 78, True, 10.0, 10, 5.0, 40, 8.0, flip_x=flip_x, descending=descending, unsigned=unsigned)
    write_patient(spec, tmp_path / "p", tmp_path / "truth")
    image, info = load_series(tmp_path / "p", "t02")
    phantom = make_phantom(spec)
    # back on the canonical LPS grid, the volume equals the phantom voxel for voxel
    canonical = sitk.GetArrayFromImage(
        sitk.Resample(
            image,
            tuple(reversed(phantom.hu.shape)),
            sitk.Transform(),
            sitk.sitkNearestNeighbor,
            phantom.origin,
            phantom.spacing,
            (1, 0, 0, 0, 1, 0, 0, 0, 1),
            -1000,
            image.GetPixelID(),
        )
    )
    assert np.array_equal(canonical, phantom.hu)
    assert info["chosen_series"]["n_slices"] == 10


def test_localizer_series_is_not_chosen(tmp_path):
    spec = PhantomSpec("t03", 79, False, 0.0, 8, 5.0, 32, 10.0, localizer=True)
    write_patient(spec, tmp_path / "p", tmp_path / "truth")
    _, info = load_series(tmp_path / "p", "t03")
    assert len(info["series"]) == 2
    assert info["chosen_series"]["n_slices"] == 8 and "LOCALIZER" not in info["chosen_series"]["image_type"]


def test_series_override_by_uid(tmp_path, series_dir):
    _, info = load_series(series_dir, "t01")
    uid = info["chosen_series"]["series_uid"]
    _, again = load_series(series_dir, "t01", series_uid=uid)
    assert again["chosen_series"]["series_uid"] == uid
    with pytest.raises(DicomInputError, match="configured series 9.9 not found"):
        load_series(series_dir, "t01", series_uid="9.9")


def test_missing_slices_are_each_told_by_rank(tmp_path, series_dir):
    """Every gap is listed, by the rank of the slice before it (never a file name or UID)."""
    files = _copy(series_dir, tmp_path / "p")
    uids = {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
    for i in (2, 3, 7):  # by position: 2 missing after the 2nd slice, 1 after the 5th of what is left
        files[i].unlink()
    with pytest.raises(DicomInputError) as e:
        load_series(tmp_path / "p", "t01")
    told = str(e.value)
    assert told.startswith("patient t01, file ") and "non-uniform slice spacing (median 6.00 mm" in told
    assert told.endswith("3 slices missing: after slice 2 (2 missing), after 5 (1)")
    assert not any(uid in told for uid in uids) and not any(f.name in told for f in files)


def test_duplicate_slice(tmp_path, series_dir):
    files = _copy(series_dir, tmp_path / "p")
    shutil.copy(files[3], tmp_path / "p" / "dup.dcm")
    with pytest.raises(DicomInputError, match="duplicate slice position"):
        load_series(tmp_path / "p", "t01")


def test_inconsistent_orientation(tmp_path, series_dir):
    files = _copy(series_dir, tmp_path / "p")
    ds = pydicom.dcmread(files[4])
    ds.ImageOrientationPatient = [0.9950042, 0.0998334, 0, -0.0998334, 0.9950042, 0]
    ds.save_as(files[4])
    with pytest.raises(DicomInputError, match="inconsistent ImageOrientationPatient") as e:
        load_series(tmp_path / "p", "t01")
    assert files[4].name in str(e.value)


def test_gantry_tilt_is_refused(tmp_path, series_dir):
    files = _copy(series_dir, tmp_path / "p")
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        pos = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [pos[0], pos[1] + 2.0 * i, pos[2]]  # y shifts with z: sheared stack
        ds.save_as(f)
    with pytest.raises(DicomInputError, match="gantry tilt"):
        load_series(tmp_path / "p", "t01")


def test_single_slice(tmp_path, series_dir):
    files = _copy(series_dir, tmp_path / "p")
    for f in files[1:]:
        f.unlink()
    with pytest.raises(DicomInputError, match=r"series has 1 slice\(s\); at least 3"):
        load_series(tmp_path / "p", "t01")


def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomInputError, match="DICOM folder is empty"):
        load_series(tmp_path / "empty", "t01")
    with pytest.raises(DicomInputError, match="does not exist"):
        load_series(tmp_path / "nope", "t01")


def test_non_dicom_file_is_skipped_and_truncated_file_named(tmp_path, series_dir):
    files = _copy(series_dir, tmp_path / "p")
    (tmp_path / "p" / "notes.txt").write_text("not an image")
    _, info = load_series(tmp_path / "p", "t01")
    ranks = sorted(p.name for p in (tmp_path / "p").iterdir()).index("notes.txt") + 1
    assert info["files"]["skipped"] == {"not DICOM: text": {"count": 1, "files": [ranks]}}
    assert info["files"]["n_images"] == 12 and info["files"]["n_files"] == 13
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) // 2])  # pixel data cut in half
    with pytest.raises(DicomInputError) as e:
        load_series(tmp_path / "p", "t01")
    assert files[2].name in str(e.value)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_two_processes_decode_the_same_volume_and_name_a_broken_slice(tmp_path, series_dir, monkeypatch):
    """``workers=2`` decodes the second half of a compressed series in a forked process into a shared buffer:
    the same image and info; a truncated slice in that half is named as when one process reads all; an
    uncompressed series is read by one process."""
    import covidct.dicom.hu as hu_module
    from covidct import forked

    monkeypatch.setattr(hu_module, "MIN_SLICES_TO_SPLIT", 2)
    starts = []
    real_start = forked.start
    monkeypatch.setattr(forked, "start", lambda *a, **k: starts.append(a[0].__name__) or real_start(*a, **k))
    load_series(series_dir, "t01", workers=2)
    assert starts == []  # uncompressed: one process
    files = _copy(series_dir, tmp_path / "p")
    for path in files:  # RLE Lossless: compressed, decoded by pydicom's own decoder
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path, enforce_file_format=True)
    one, info_one = load_series(tmp_path / "p", "t01")
    two, info_two = load_series(tmp_path / "p", "t01", workers=2)
    assert starts == ["decode_into"]
    assert np.array_equal(sitk.GetArrayFromImage(one), sitk.GetArrayFromImage(two)) and info_one == info_two
    assert np.array_equal(sitk.GetArrayFromImage(one), sitk.GetArrayFromImage(load_series(series_dir, "t01")[0]))
    assert one.GetSpacing() == two.GetSpacing() and one.GetOrigin() == two.GetOrigin()
    data = files[-2].read_bytes()
    files[-2].write_bytes(data[: len(data) // 2])  # in the second half of the sorted slices
    errors = []
    for workers in (1, 2):
        with pytest.raises(DicomInputError) as e:
            load_series(tmp_path / "p", "t01", workers=workers)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and files[-2].name in errors[1]


def test_pixels_and_geometry_of_a_written_series(series_dir):
    image, info = load_series(series_dir, "t01")
    assert image.GetSize() == (48, 48, 12)
    assert image.GetSpacing() == pytest.approx((7.0, 7.0, 6.0))
    assert info["hu_min"] >= -1024 and info["hu_max"] <= 3071
