"""Hostile input: every broken DICOM folder a user may hand over, and exactly what they see.

Each case is a tiny series (32 x 32, 10 slices of 5 mm) made by ``covidct.demo`` and then broken.
``dicom_to_hu`` is the step that reads the anonymized folder; ``anonymize`` is the first step of the
workflow, on the raw folder, where a raw file is named by its rank (raw names may carry identifiers).
A refused case leaves nothing in the output folder: no output, no temporary file.

=================================  ========  ==================================================================
case                               outcome   message (after "patient h01, file <path>: ")
=================================  ========  ==================================================================
truncated pixel data               refused   hu: "pixel data has 1024 of 2048 bytes: the file is truncated";
                                             anonymize: "corrupt or truncated DICOM file: element
                                             (7FE0,0010) is shorter than its declared length"
truncated header (300 bytes left)  refused   hu: "image without pixel data: the file is truncated or corrupt";
                                             anonymize: "corrupt or truncated DICOM file: an image instance
                                             without pixel data"
CT image without pixel data        refused   hu: "image without pixel data: the file is truncated or corrupt";
                                             anonymize: "corrupt or truncated DICOM file: an image instance
                                             without pixel data"
non-DICOM file in the folder       handled   skipped, counted as "not DICOM: text" with its rank (both steps; until
(text notes)                                 issue 10 it was refused: "not a DICOM file")
non-image DICOM (report), no       handled   skipped, logged "skipped 2 of 12 files: DICOM structured report (SR)
pixel data; hidden files                     x1 (file 12); hidden file x1 (file 1)"; counted in the JSON
truncated report (SR)              handled   skipped as a structured report: its SOP Class is read from its first
                                             elements; nothing of it is used
mixed patients in one folder       refused   "mixed patients in one folder: 2 distinct PatientIDs" (folder;
                                             both steps)
duplicate slice                    refused   hu: "duplicate slice position <z> mm along the slice normal (same
                                             position as <other file>)"; anonymize: "two files share one
                                             SOPInstanceUID (duplicate instance)"
inconsistent orientation           refused   "inconsistent ImageOrientationPatient between slices of one series"
gantry tilt (15 degrees)           refused   "slice positions do not lie along the slice normal: in-plane shift
                                             of 11.65 mm over 43.47 mm (15.0 degrees; gantry tilt or sheared
                                             series)" (folder)
more slices than max_slices        refused   "series has 10 slices of 32x32 (0.00 GiB as int16), more than
                                             max_slices (8): refused; raise max_slices if the series is real"
                                             (folder; default max_slices 5000)
JPEG XL (no decoder installed)     refused   "transfer syntax 1.2.840.10008.1.2.4.110 is unknown to the installed
                                             pydicom: no decoder reads it" (JPEG-LS, JPEG Lossless and the other
                                             CT syntaxes are decoded since issue 10: test_real_exports.py)
MPEG-2 (a syntax pydicom knows,    refused   "transfer syntax MPEG2 Main Profile / Main Level
no decoder)                                  (1.2.840.10008.1.2.4.100) cannot be decoded: no decoder is installed
                                             (options: none known to pydicom)"
RLE with corrupt data              refused   "cannot decode pixel data (transfer syntax RLE Lossless,
                                             1.2.840.10008.1.2.5): Unable to decode as exceptions were raised
                                             by all available plugins: pydicom: The number of RLE segments in
                                             the pixel data doesn't match the expected amount (0 vs. 2
                                             segments)" (pydicom's reason, on one line)
two CT series, different           handled   most slices, then thinnest; logged "2 axial CT series; chose
thickness                                    '<desc>' <uid> (n slices, t mm) by the rule most slices, then
                                             thinnest; not chosen: '<desc>' <uid> (n slices, t mm)"
int16 / uint16 pixels, slope 1 or  handled   HU equal the phantom's voxel for voxel (padding: air)
0.5, intercept 0 / -1024 / -1000 /
-2048, padding value -2048 / 0
=================================  ========  ==================================================================
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

from covidct import steps
from covidct.demo.anatomy import make_phantom
from covidct.demo.identities import fake_identity
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient, write_series
from covidct.errors import CovidctError, DicomInputError

PID = "h01"
SPEC = PhantomSpec(PID, 11, False, 0.0, 10, 5.0, 32, 10.0)
KEY = "test-key-0123456789abcdef"
PIXEL_BYTES = 32 * 32 * 2


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    write_patient(SPEC, root / PID, root / "truth")
    return root / PID


def _by_z(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))


def _edit(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


# Each case breaks the copied folder ``d`` and returns (the path the message names, the message).


def truncated_pixel_data(d):
    f = _by_z(d)[3]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - PIXEL_BYTES // 2])
    return f, f"pixel data has {PIXEL_BYTES // 2} of {PIXEL_BYTES} bytes: the file is truncated"


def truncated_header(d):
    f = _by_z(d)[3]
    f.write_bytes(f.read_bytes()[:300])
    return f, "image without pixel data: the file is truncated or corrupt"


def image_without_pixel_data(d):
    f = _by_z(d)[3]
    _edit(f, lambda ds: delattr(ds, "PixelData"))
    return f, "image without pixel data: the file is truncated or corrupt"


def mixed_patients(d):
    for f in _by_z(d)[::2]:
        _edit(f, lambda ds: setattr(ds, "PatientID", "MRN7654321"))
    return d, "mixed patients in one folder: 2 distinct PatientIDs"


def duplicate_slice(d):
    f = _by_z(d)[3]
    dup = d / "copy.dcm"  # sorts after "IM....dcm": the second file of the pair is named
    shutil.copy(f, dup)
    z = float(pydicom.dcmread(f).ImagePositionPatient[2])
    return dup, f"duplicate slice position {z:.2f} mm along the slice normal (same position as {f.name})"


def inconsistent_orientation(d):
    f = sorted(d.glob("*.dcm"))[-1]  # not the first file, against which the others are compared
    _edit(f, lambda ds: setattr(ds, "ImageOrientationPatient", [0.9950042, 0.0998334, 0, -0.0998334, 0.9950042, 0]))
    return f, "inconsistent ImageOrientationPatient between slices of one series"


def gantry_tilt(d):
    # A tilted gantry: the column direction tilts by 15 degrees, slice positions still step along z.
    t = np.radians(15.0)
    for f in d.glob("*.dcm"):
        _edit(
            f,
            lambda ds: (
                setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, round(np.cos(t), 6), round(-np.sin(t), 6)]),
                setattr(ds, "GantryDetectorTilt", 15),
            ),
        )
    # 45 mm along z are 45 sin 15 = 11.65 mm in the slice plane and 45 cos 15 = 43.47 mm along the normal
    return d, (
        "slice positions do not lie along the slice normal: in-plane shift of 11.65 mm over 43.47 mm "
        "(15.0 degrees; gantry tilt or sheared series)"
    )


def too_many_slices(d):
    return d, (
        "series has 10 slices of 32x32 (0.00 GiB as int16), more than max_slices (8): refused; "
        "raise max_slices if the series is real"
    )


def _compressed(d, syntax, fragment: bytes):
    for f in d.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.PixelData = encapsulate([fragment])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(f)
    return sorted(d.glob("*.dcm"))[0]  # the first file read (in file-name order)


def jpeg_xl_no_decoder(d):
    # pydicom 3.0 writes no transfer syntax it does not know: write MPEG-2's, then put JPEG XL's UID
    # (as long) in the file meta
    f = _compressed(d, "1.2.840.10008.1.2.4.100", b"\xff\x0a" + bytes(62))  # JPEG XL code stream signature
    for path in d.glob("*.dcm"):
        raw = path.read_bytes()
        path.write_bytes(raw[:400].replace(b"1.2.840.10008.1.2.4.100", b"1.2.840.10008.1.2.4.110") + raw[400:])
    return f, "transfer syntax 1.2.840.10008.1.2.4.110 is unknown to the installed pydicom: no decoder reads it"


def mpeg2_no_decoder(d):
    f = _compressed(d, "1.2.840.10008.1.2.4.100", b"\x00\x00\x01\xb3" + bytes(60))  # MPEG-2 sequence header
    return f, (
        "transfer syntax MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100) cannot be decoded: no "
        "decoder is installed (options: none known to pydicom)"
    )


def rle_corrupt_data(d):
    f = _compressed(d, RLELossless, bytes(64))  # an RLE header that declares 0 segments (2 needed for 16 bits)
    return f, (
        "cannot decode pixel data (transfer syntax RLE Lossless, 1.2.840.10008.1.2.5): Unable to decode as "
        "exceptions were raised by all available plugins: pydicom: The number of RLE segments in the pixel "
        "data doesn't match the expected amount (0 vs. 2 segments)"
    )


REFUSED = [
    truncated_pixel_data,
    truncated_header,
    image_without_pixel_data,
    mixed_patients,
    duplicate_slice,
    inconsistent_orientation,
    gantry_tilt,
    too_many_slices,
    jpeg_xl_no_decoder,
    mpeg2_no_decoder,
    rle_corrupt_data,
]


def _no_output_left(out: Path) -> None:
    left = [p.name for p in out.rglob("*")] if out.exists() else []
    assert left == [], f"left in the output folder: {left}"


@pytest.mark.parametrize("case", REFUSED, ids=[c.__name__ for c in REFUSED])
def test_hu_step_refuses_with_exact_message(tmp_path, base_dir, case):
    folder = tmp_path / "in"
    shutil.copytree(base_dir, folder)
    path, message = case(folder)
    out = tmp_path / "out"
    max_slices = 8 if case is too_many_slices else None
    with pytest.raises(DicomInputError) as err:
        steps.dicom_to_hu(folder, out / f"{PID}.nii.gz", out / f"{PID}.json", PID, max_slices=max_slices)
    expected_start = f"patient {PID}, file {path}: "
    text = str(err.value)
    assert text.startswith(expected_start), text
    if isinstance(message, re.Pattern):
        assert message.fullmatch(text[len(expected_start) :]), text
    else:
        assert text == expected_start + message
    _no_output_left(out)


ANON_REFUSED = {
    truncated_pixel_data: "corrupt or truncated DICOM file: element (7FE0,0010) is shorter than its declared length",
    truncated_header: "corrupt or truncated DICOM file: an image instance without pixel data",
    image_without_pixel_data: "corrupt or truncated DICOM file: an image instance without pixel data",
    mixed_patients: "mixed patients in one folder: 2 distinct PatientIDs",
    duplicate_slice: "two files share one SOPInstanceUID (duplicate instance)",
}


@pytest.mark.parametrize("case", list(ANON_REFUSED), ids=[c.__name__ for c in ANON_REFUSED])
def test_anonymize_step_refuses_raw_folder_with_exact_message(tmp_path, base_dir, case, monkeypatch):
    monkeypatch.setenv("COVIDCT_ANON_KEY", KEY)
    raw = tmp_path / "raw" / "scan 2021 Doe"
    shutil.copytree(base_dir, raw)
    path, _ = case(raw)
    out = tmp_path / "results" / "anonymized"
    with pytest.raises(CovidctError) as err:
        steps.anonymize_dicom(PID, out / PID, raw_dir=raw)
    where = f"<dicom_dir of {PID}>"
    if path != raw:
        files = sorted(p for p in raw.rglob("*") if p.is_file())
        where += f", file {files.index(path) + 1} of {len(files)} in sorted order"
    assert str(err.value) == f"patient {PID}, file {where}: {ANON_REFUSED[case]}"
    assert "Doe" not in str(err.value)
    _no_output_left(out)


def test_report_without_pixel_data_and_hidden_files_are_skipped(tmp_path, base_dir, caplog):
    folder = tmp_path / "in"
    shutil.copytree(base_dir, folder)
    report = pydicom.dcmread(_by_z(folder)[0])
    del report.PixelData
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    report.save_as(folder / "report.dcm")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="covidct.dicom.files"):
        info = steps.dicom_to_hu(folder, out / f"{PID}.nii.gz", out / f"{PID}.json", PID)
    assert (
        f"patient {PID}: skipped 2 of 12 files: DICOM structured report (SR) x1 (file 12); hidden file x1 (file 1)"
    ) in caplog.messages
    assert info["files"]["input"]["skipped"] == {
        "DICOM structured report (SR)": {"count": 1, "files": [12]},
        "hidden file": {"count": 1, "files": [1]},
    }
    assert info["chosen_series"]["n_slices"] == 10 and len(info["series"]) == 1
    assert sorted(p.name for p in out.iterdir()) == [f"{PID}.json", f"{PID}.nii.gz"]


@pytest.mark.parametrize("step", ["hu", "anonymize"])
def test_non_dicom_file_is_skipped_by_both_steps(tmp_path, base_dir, monkeypatch, step):
    """Until issue 10 a text file beside the slices refused the patient ("not a DICOM file")."""
    monkeypatch.setenv("COVIDCT_ANON_KEY", KEY)
    folder = tmp_path / "raw" / "scan 2021 Doe"
    shutil.copytree(base_dir, folder)
    (folder / "notes.txt").write_text("exported with viewer v2\n")
    truncated_sr = pydicom.dcmread(_by_z(folder)[0])
    del truncated_sr.PixelData
    truncated_sr.SOPClassUID = truncated_sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    truncated_sr.save_as(folder / "sr.dcm")
    (folder / "sr.dcm").write_bytes((folder / "sr.dcm").read_bytes()[:-40])  # cut inside its last elements
    out = tmp_path / "out"
    if step == "hu":
        files = steps.dicom_to_hu(folder, out / f"{PID}.nii.gz", out / f"{PID}.json", PID)["files"]["input"]
    else:
        files = steps.anonymize_dicom(PID, out / PID, raw_dir=folder)["files"]
    names = sorted(p.name for p in folder.iterdir())
    assert files["skipped"] == {
        "DICOM structured report (SR)": {"count": 1, "files": [names.index("sr.dcm") + 1]},
        "not DICOM: text": {"count": 1, "files": [names.index("notes.txt") + 1]},
    }
    assert files["n_images"] == 10 and files["n_files"] == 12
    assert "Doe" not in json.dumps(files)


def _two_series(folder: Path, first: PhantomSpec, second: PhantomSpec) -> dict[str, str]:
    """Two axial CT series of one patient (one study) in sub-folders; returns description -> series UID."""
    identity = fake_identity(first.seed)
    uids = {}
    for i, (spec, desc) in enumerate(((first, "AXIAL A"), (second, "AXIAL B"))):
        ident = dict(identity, SeriesDescription=desc, SeriesInstanceUID=f"{identity['SeriesInstanceUID']}{i}")
        write_series(make_phantom(spec), spec, folder / desc.replace(" ", "_"), ident)
        uids[desc] = ident["SeriesInstanceUID"]
    return uids


@pytest.mark.parametrize(
    "a,b,chosen",
    [
        # same number of slices: the thinner series wins, wherever it stands in file order
        ((10, 5.0), (10, 2.5), "AXIAL B"),
        ((10, 2.5), (10, 5.0), "AXIAL A"),
        # more slices wins over thinner
        ((12, 5.0), (8, 2.5), "AXIAL A"),
    ],
    ids=["equal-count-thinner-second", "equal-count-thinner-first", "more-slices-beats-thinner"],
)
def test_two_ct_series_choice_follows_the_rule_and_is_logged(tmp_path, caplog, a, b, chosen):
    spec_a = PhantomSpec(PID, 11, False, 0.0, a[0], a[1], 32, 10.0)
    spec_b = PhantomSpec(PID, 12, False, 0.0, b[0], b[1], 32, 10.0)
    uids = _two_series(tmp_path / "in", spec_a, spec_b)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="covidct.dicom"):
        info = steps.dicom_to_hu(tmp_path / "in", out / f"{PID}.nii.gz", out / f"{PID}.json", PID)
    other = "AXIAL A" if chosen == "AXIAL B" else "AXIAL B"
    n = {"AXIAL A": a, "AXIAL B": b}
    assert info["chosen_series"]["series_uid"] == uids[chosen]
    assert info["chosen_series"]["description"] == chosen
    assert info["chosen_series"]["slice_thickness_mm"] == n[chosen][1]
    assert (
        f"patient {PID}: 2 axial CT series; chose '{chosen}' {uids[chosen]} ({n[chosen][0]} slices, "
        f"{n[chosen][1]:g} mm) by the rule most slices, then thinnest; not chosen: '{other}' {uids[other]} "
        f"({n[other][0]} slices, {n[other][1]:g} mm)"
    ) in caplog.messages
    image = sitk.ReadImage(str(out / f"{PID}.nii.gz"))
    assert image.GetSize()[2] == n[chosen][0] and image.GetSpacing()[2] == pytest.approx(n[chosen][1])


@pytest.mark.parametrize(
    "encoding",
    [
        {},  # int16, slope 1, intercept 0
        {"unsigned": True},  # uint16, intercept -1024 (12 bits stored)
        {"unsigned": True, "rescale_slope": 0.5},  # uint16, half-HU steps
        {"rescale_intercept": -1024, "padding": -2048},  # int16 shifted, padding outside the field of view
        {"rescale_slope": 0.5, "rescale_intercept": -1000},
        {"unsigned": True, "rescale_intercept": -2048, "padding": 0},
    ],
    ids=[
        "int16",
        "uint16",
        "uint16-slope0.5",
        "int16-intercept-1024-padding",
        "int16-slope0.5-intercept-1000",
        "uint16-intercept-2048-padding0",
    ],
)
def test_pixel_encodings_give_exact_hu(tmp_path, encoding):
    spec = PhantomSpec(PID, 11, False, 0.0, 10, 5.0, 32, 10.0, **encoding)
    write_patient(spec, tmp_path / "in", tmp_path / "truth")
    first = pydicom.dcmread(_by_z(tmp_path / "in")[0], stop_before_pixels=True)
    assert first.PixelRepresentation == (0 if spec.unsigned else 1)
    assert float(first.RescaleSlope) == spec.rescale_slope and float(first.RescaleIntercept) == spec.intercept
    out = tmp_path / "out"
    steps.dicom_to_hu(tmp_path / "in", out / f"{PID}.nii.gz", out / f"{PID}.json", PID)
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{PID}.nii.gz")))
    phantom = make_phantom(spec).hu
    expected = phantom.copy()
    if spec.padding is not None:  # outside the reconstruction circle the scanner stored padding: air
        from covidct.demo.anatomy import fov_disc

        expected[:, ~fov_disc(spec)] = -1000
    assert hu.dtype == np.int16
    np.testing.assert_array_equal(hu, expected)
    assert hu.min() < -900 and hu.max() > 300  # air and bone both present: a real range was checked


def test_series_info_is_strict_json_with_a_localizer_of_unknown_thickness(tmp_path):
    spec = PhantomSpec(PID, 11, False, 0.0, 10, 5.0, 32, 10.0, localizer=True)  # the localizer has no SliceThickness
    write_patient(spec, tmp_path / "in", tmp_path / "truth")
    out = tmp_path / "out"
    steps.dicom_to_hu(tmp_path / "in", out / f"{PID}.nii.gz", out / f"{PID}.json", PID)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    info = json.loads((out / f"{PID}.json").read_text(), parse_constant=refuse)
    assert sorted(s["slice_thickness_mm"] for s in info["series"] if s["slice_thickness_mm"]) == [5.0]
    assert [s["n_slices"] for s in info["series"] if s["slice_thickness_mm"] is None] == [1]
