"""Patient folders as archives and scanners hand them out (issue 10), built from real CT.

A few contiguous real 512x512 slices (../shared/data/ct: lung_pet_ct_dx_A0002 B40f/B70f, uint16
with 12 bits stored; nsclc_radiomics_LUNG1-003, int16) are, in temporary folders:

- transcoded into every transfer syntax a CT archive uses (``bench/decode_syntaxes.py``'s
  ``transcode``): each lossless one reads to HU identical to the uncompressed slices, each lossy
  one to close HU, flagged lossy in the HU JSON with its evidence; the anonymizer keeps every
  compressed pixel data byte for byte and its verification passes;
- surrounded by the clutter of real exports, in nested folders (PNG/JPEG previews, NIfTI, PDF,
  text, autorun.inf, executables, Thumbs.db, .DS_Store, a DICOMDIR written by pydicom's FileSet,
  SR, PR, KO, SEG, the real LUNG1-003 RTSTRUCT, a secondary-capture dose screen with burned-in
  annotation, an encapsulated PDF, raw data, an RT plan): each file skipped in its category, by
  both steps, and listed in the HU JSON by rank only; broken files still refused;
- written as one Enhanced CT file (frames in shuffled order, shared or per-frame rescale, native
  or JPEG 2000): same HU volume and geometry as the single-frame slices; anonymized with no leak;
  incomplete functional groups refused naming what is missing;
- laid out as a TCIA download (patient / study / series, two studies, a localizer, two kernels):
  the series choice and the shifted study date in the HU JSON.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from covidct import steps
from covidct.deid.dataset import shift_date
from covidct.deid.keys import date_offset_days
from covidct.deid.series import anonymize_series_dir
from covidct.deid.verify import frame_geometry, verify_anonymization
from covidct.dicom.hu import load_series
from covidct.errors import DicomInputError
from covidct.testing import transcode as decode
from helpers import require_shared_data, slices_by_position

KEY = b"test-key-0123456789abcdef"
PID = "RX01"
N_SLICES = 6
SOURCES = {"b40f": ("ct", "lung_pet_ct_dx_A0002", "B40f"), "lung1": ("ct", "nsclc_radiomics_LUNG1-003", "ct")}
#: Where the contiguous slices start in each source (by position): lung in both.
FIRST_SLICE = {"b40f": 12, "lung1": 50}
#: Lossy syntaxes: largest mean |HU difference| accepted and the words the HU JSON's evidence holds.
#: Measured on these slices (bench/measured/decode_syntaxes.txt): 1.0-1.2, 3.6-4.7, 8.7-11.1, 2.1-2.3.
LOSSY = {
    "jpeg_ls_near_lossless": (decode.JPEG_LS_NEAR, "NEAR=2"),
    "jpeg2000_lossy": (10.0, "irreversible 9-7 wavelet"),
    "jpeg_baseline_8bit": (20.0, "JPEG Baseline (Process 1)"),
    "jpeg_extended_12bit": (5.0, "JPEG Extended (Process 2 and 4)"),
}
SYNTAX_IDS = [s.name for s in decode.SYNTAXES]


def _contiguous(source: str, n: int = N_SLICES, first: int | None = None) -> list[Path]:
    start = FIRST_SLICE[source] if first is None else first
    return slices_by_position(require_shared_data(*SOURCES[source]))[start : start + n]


@pytest.fixture(scope="session")
def syntax_corpus(tmp_path_factory):
    """source -> syntax name -> folder of N_SLICES real slices in that transfer syntax."""
    root = tmp_path_factory.mktemp("syntaxes")
    return {source: decode.write_corpus(_contiguous(source), root / source) for source in SOURCES}


@pytest.fixture(scope="session")
def uncompressed_hu(syntax_corpus):
    return {source: load_series(folders["uncompressed"], PID) for source, folders in syntax_corpus.items()}


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert a.GetSpacing() == pytest.approx(b.GetSpacing())
    assert a.GetOrigin() == pytest.approx(b.GetOrigin())
    assert a.GetDirection() == pytest.approx(b.GetDirection())


# ------------------------------------------------------------------------------- transfer syntaxes


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("syntax", decode.SYNTAXES, ids=SYNTAX_IDS)
def test_every_syntax_reads_to_the_uncompressed_hu(syntax_corpus, uncompressed_hu, source, syntax):
    ref, _ = uncompressed_hu[source]
    image, info = load_series(syntax_corpus[source][syntax.name], PID)
    _same_geometry(image, ref)
    assert info["compression"]["transfer_syntaxes"] == [{"uid": syntax.uid, "name": pydicom.uid.UID(syntax.uid).name}]
    hu, ref_hu = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ref)
    assert ref_hu.min() < -900 and ref_hu.max() > 300  # air and bone: a real range was compared
    if syntax.lossless:
        np.testing.assert_array_equal(hu, ref_hu)
        assert info["compression"]["lossy"] is False and info["compression"]["lossy_evidence"] == []
    else:
        tolerance, words = LOSSY[syntax.name]
        diff = np.abs(hu.astype(np.int32) - ref_hu)
        if syntax.name == "jpeg_ls_near_lossless":  # NEAR bounds every stored value's error (slope 1 here)
            assert 0 < diff.max() <= tolerance
        else:
            assert 0 < diff.mean() < tolerance
        assert info["compression"]["lossy"] is True
        assert any(words in why for why in info["compression"]["lossy_evidence"]), info["compression"]


def test_lossy_flag_from_the_header_of_decompressed_pixels(syntax_corpus, tmp_path):
    """Pixels once compressed with loss, now stored uncompressed: LossyImageCompression 01 says so."""
    folder = tmp_path / "p"
    shutil.copytree(syntax_corpus["b40f"]["uncompressed"], folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
        ds.save_as(path)
    _, info = load_series(folder, PID)
    assert info["compression"]["lossy_evidence"] == ["LossyImageCompression 01 (ISO_10918_1)"]


@pytest.mark.parametrize("syntax", [s for s in decode.SYNTAXES if s.name != "uncompressed"], ids=SYNTAX_IDS[1:])
def test_anonymizer_keeps_compressed_pixel_data_and_verification_passes(syntax_corpus, tmp_path, syntax):
    src = syntax_corpus["lung1"][syntax.name]
    out = tmp_path / "out"
    summary = anonymize_series_dir(src, out, KEY, PID)
    assert summary["transfer_syntaxes"] == [syntax.uid]
    originals = {bytes(pydicom.dcmread(p).PixelData) for p in src.iterdir()}
    outputs = [pydicom.dcmread(p) for p in out.iterdir()]
    assert {bytes(ds.PixelData) for ds in outputs} == originals  # no decompression, no re-encoding
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in outputs} == {syntax.uid}
    report = verify_anonymization(src, out, PID)
    assert report["passed"], report
    before, _ = load_series(src, PID)
    after, _ = load_series(out, PID)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(after), sitk.GetArrayFromImage(before))


def test_corrupt_compressed_slice_is_still_refused(syntax_corpus, tmp_path):
    folder = tmp_path / "Patient" / "Study" / "Series"
    shutil.copytree(syntax_corpus["lung1"]["jpeg2000_lossless"], folder)
    victim = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(victim)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 3]])  # the code stream ends early
    ds.save_as(victim)
    with pytest.raises(DicomInputError) as err:
        load_series(tmp_path / "Patient", PID)
    assert str(err.value).startswith(
        f"patient {PID}, file {victim}: cannot decode pixel data (transfer syntax JPEG 2000 Image Compression "
        "(Lossless Only), 1.2.840.10008.1.2.4.90): Unable to decode"
    )


# ------------------------------------------------------------------------------- clutter of exports


def _dicom_object(sop_class: str, modality: str, like: Dataset, **attrs) -> Dataset:
    """A minimal DICOM object of ``sop_class`` for the patient and study of ``like``."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, generate_uid(), modality
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID"):
        setattr(ds, kw, like.get(kw) or {"StudyTime": "101010", "StudyID": "1", "StudyDate": "20200101"}.get(kw, ""))
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = generate_uid(), 99, 1
    for kw, value in attrs.items():
        setattr(ds, kw, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _dose_screen(like: Dataset) -> Dataset:
    """A dose report as scanners store it: secondary capture, Modality CT, the name burned in."""
    ds = _dicom_object(
        "1.2.840.10008.5.1.4.1.1.7",
        "CT",
        like,
        ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"],
        BurnedInAnnotation="YES",
        ConversionType="WSD",
        SamplesPerPixel=3,
        PhotometricInterpretation="RGB",
        PlanarConfiguration=0,
        Rows=16,
        Columns=16,
        BitsAllocated=8,
        BitsStored=8,
        HighBit=7,
        PixelRepresentation=0,
    )
    ds.PixelData = bytes(16 * 16 * 3)
    return ds


#: Category -> how many files of the clutter tree fall in it.
CLUTTER = {
    "hidden file": 3,
    "not DICOM: text": 2,
    "not DICOM: empty file": 1,
    "not DICOM: XML or HTML": 1,
    "not DICOM: executable (Windows)": 1,
    "not DICOM: executable (ELF)": 1,
    "not DICOM: OLE compound file (Thumbs.db, Office, MSI)": 1,
    "not DICOM: PNG image": 2,
    "not DICOM: JPEG image": 1,
    "not DICOM: NIfTI image (gzip)": 1,
    "not DICOM: NIfTI image": 1,
    "not DICOM: PDF document": 1,
    "not DICOM: ZIP archive (or Office document)": 1,
    "DICOMDIR (DICOM index file)": 1,
    "DICOM structured report (SR)": 1,
    "DICOM presentation state (PR)": 1,
    "DICOM key object selection (KO)": 1,
    "DICOM RT structure set (RTSTRUCT)": 1,
    "DICOM segmentation (SEG)": 1,
    "DICOM image, not CT: Secondary Capture Image Storage": 2,  # the dose screen and the DICOMDIR's copy
    "DICOM encapsulated PDF": 1,
    "DICOM raw data": 1,
    "DICOM RT plan or treatment record": 1,
}


def write_clutter(root: Path, ct_slices: list[Path]) -> Path:
    """A patient folder as a CD or archive export holds it: the CT slices (one of them a bare data
    set without preamble) and one file of every kind of ``CLUTTER``, in nested folders."""
    from pydicom.fileset import FileSet

    patient = root / "PATIENT 2020 Doe^Jane"
    series = patient / "STUDY_1" / "SERIES_1"
    series.mkdir(parents=True)
    for i, path in enumerate(ct_slices):
        ds = pydicom.dcmread(path)
        if i == 1:  # an old export: no preamble, no file meta
            del ds.file_meta
            ds.preamble = None
            pydicom.dcmwrite(series / f"IM{i:04d}", ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
        else:
            shutil.copy(path, series / f"IM{i:04d}")
    like = pydicom.dcmread(ct_slices[0], stop_before_pixels=True)
    (patient / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    (patient / "STUDY_1" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    (series / "._IM0000").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble
    (patient / "autorun.inf").write_text("[autorun]\r\nopen=VIEWER\\viewer.exe\r\nicon=VIEWER\\viewer.exe,0\r\n")
    (patient / "README.TXT").write_text("Images of Doe^Jane, exported 2020-04-01 by the viewer.\n")
    (patient / "empty.log").write_bytes(b"")
    (patient / "index.htm").write_text("<!DOCTYPE html><html><body>Study of Doe</body></html>\n")
    (patient / "VIEWER").mkdir()
    (patient / "VIEWER" / "viewer.exe").write_bytes(b"MZ\x90\x00\x03" + bytes(59) + b"This program cannot be run")
    (patient / "VIEWER" / "libview.so").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))
    (patient / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    previews = patient / "previews"
    previews.mkdir()
    pixels = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    Image.fromarray(pixels).save(previews / "p1.png")
    Image.fromarray(pixels.T).save(previews / "p2.png")
    Image.fromarray(pixels).save(previews / "p1.jpg")
    nifti = sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16))
    sitk.WriteImage(nifti, str(patient / "STUDY_1" / "segmentation.nii.gz"))
    sitk.WriteImage(nifti, str(patient / "STUDY_1" / "ct.nii"))
    (patient / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n")
    with zipfile.ZipFile(patient / "logs.zip", "w") as z:
        z.writestr("log.txt", "export log")
    objects = patient / "STUDY_1" / "OTHER"
    objects.mkdir()
    sr = _dicom_object("1.2.840.10008.5.1.4.1.1.88.33", "SR", like, CompletionFlag="COMPLETE")
    sr.save_as(objects / "sr.dcm", enforce_file_format=True)
    _dicom_object("1.2.840.10008.5.1.4.1.1.11.1", "PR", like).save_as(objects / "pr.dcm", enforce_file_format=True)
    _dicom_object("1.2.840.10008.5.1.4.1.1.88.59", "KO", like).save_as(objects / "ko.dcm", enforce_file_format=True)
    seg = _dicom_object(
        "1.2.840.10008.5.1.4.1.1.66.4",
        "SEG",
        like,
        Rows=8,
        Columns=8,
        BitsAllocated=1,
        BitsStored=1,
        HighBit=0,
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        NumberOfFrames=1,
        PixelRepresentation=0,
    )
    seg.PixelData = bytes(8)
    seg.save_as(objects / "seg.dcm", enforce_file_format=True)
    _dose_screen(like).save_as(objects / "dose.dcm", enforce_file_format=True)
    pdf = _dicom_object("1.2.840.10008.5.1.4.1.1.104.1", "DOC", like, MIMETypeOfEncapsulatedDocument="application/pdf")
    pdf.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    pdf.save_as(objects / "pdf.dcm", enforce_file_format=True)
    _dicom_object("1.2.840.10008.5.1.4.1.1.66", "OT", like).save_as(objects / "raw.dcm", enforce_file_format=True)
    plan = _dicom_object("1.2.840.10008.5.1.4.1.1.481.5", "RTPLAN", like)
    plan.save_as(objects / "plan.dcm", enforce_file_format=True)
    rtstruct = require_shared_data("ct", "nsclc_radiomics_LUNG1-003", "rtstruct")
    shutil.copy(next(p for p in rtstruct.iterdir() if p.is_file()), objects / "rtstruct.dcm")
    fs = FileSet()  # a DICOMDIR, and the copy of the instance it indexes
    fs.add(_dose_screen(like))
    fs.write(patient / "CD")
    return patient


@pytest.fixture(scope="session")
def clutter(tmp_path_factory):
    return write_clutter(tmp_path_factory.mktemp("clutter"), _contiguous("lung1"))


def _expected(folder: Path) -> dict:
    return {"n_files": sum(CLUTTER.values()) + N_SLICES, "n_images": N_SLICES, "n_skipped": sum(CLUTTER.values())}


def test_clutter_is_skipped_by_category_in_both_steps(clutter, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("COVIDCT_ANON_KEY", KEY.decode())
    out = tmp_path / "results"
    with caplog.at_level(logging.INFO):
        summary = steps.anonymize_dicom(
            PID, out / "anonymized" / PID, out / "anonymized" / f"{PID}.json", raw_dir=clutter
        )
        steps.verify_anonymization(out / "anonymized" / PID, out / "verify" / f"{PID}.json", PID, raw_dir=clutter)
        info = steps.dicom_to_hu(
            out / "anonymized" / PID,
            out / "hu" / f"{PID}.nii.gz",
            out / "hu" / f"{PID}.json",
            PID,
            anonymize_summary=out / "anonymized" / f"{PID}.json",
        )
    files = summary["files"]
    assert {k: v["count"] for k, v in files["skipped"].items()} == CLUTTER
    assert {k: files[k] for k in ("n_files", "n_images", "n_skipped")} == _expected(clutter)
    # every skipped rank is a real file's, each once; the CT slices are not among them
    listing = sorted(p for p in clutter.rglob("*") if p.is_file())
    ranks = sorted(r for entry in files["skipped"].values() for r in entry["files"])
    assert len(ranks) == len(set(ranks)) == sum(CLUTTER.values())
    slices = set((clutter / "STUDY_1" / "SERIES_1").glob("IM*"))
    assert len(slices) == N_SLICES and not slices & {listing[r - 1] for r in ranks}
    assert listing[files["skipped"]["not DICOM: PNG image"]["files"][0] - 1].name == "p1.png"
    # the HU JSON carries the anonymizer's record of the raw folder; its own input had nothing to skip
    written = json.loads((out / "hu" / f"{PID}.json").read_text())
    assert written["files"]["dicom_dir"] == files
    assert written["files"]["input"]["skipped"] == {} and written["files"]["input"]["n_images"] == N_SLICES
    assert info["chosen_series"]["n_slices"] == N_SLICES
    assert len(list((out / "anonymized" / PID).iterdir())) == N_SLICES  # nothing but CT left the anonymizer
    # no raw name anywhere: outputs, logs
    text = (json.dumps(written) + json.dumps(summary) + "\n".join(caplog.messages)).lower()
    for raw in (
        "doe",
        "autorun",
        "viewer",
        "libview",
        "previews",
        "p1.png",
        "readme",
        "logs.zip",
        "index.htm",
        "rtstruct.dcm",
        "patient 2020",
        "series_1",
        "study_1",
    ):
        assert raw not in text, raw
    n_skipped, n_files = sum(CLUTTER.values()), sum(CLUTTER.values()) + N_SLICES
    assert any(
        f"skipped {n_skipped} of {n_files} files: " in m and "not DICOM: PNG image x2" in m for m in caplog.messages
    )


def test_hu_step_on_the_raw_clutter_finds_the_same(clutter):
    """One discovery: the HU step run on the raw folder skips exactly what the anonymizer skipped."""
    _, info = load_series(clutter, PID)
    assert {k: v["count"] for k, v in info["files"]["skipped"].items()} == CLUTTER
    assert {k: info["files"][k] for k in ("n_files", "n_images", "n_skipped")} == _expected(clutter)


def test_broken_ct_slice_in_the_clutter_is_still_refused(clutter, tmp_path, monkeypatch):
    monkeypatch.setenv("COVIDCT_ANON_KEY", KEY.decode())
    raw = tmp_path / "raw"
    shutil.copytree(clutter, raw)
    victim = raw / "STUDY_1" / "SERIES_1" / "IM0003"
    victim.write_bytes(victim.read_bytes()[:-1000])
    listing = sorted(p for p in raw.rglob("*") if p.is_file())
    with pytest.raises(DicomInputError) as err:
        steps.anonymize_dicom(PID, tmp_path / "out" / PID, raw_dir=raw)
    assert str(err.value) == (
        f"patient {PID}, file <dicom_dir of {PID}>, file {listing.index(victim) + 1} of "
        f"{len(listing)} in sorted order: corrupt or truncated DICOM file: element (7FE0,0010) "
        "is shorter than its declared length"
    )
    with pytest.raises(DicomInputError, match="pixel data has .* bytes: the file is truncated"):
        load_series(raw, PID)


# ------------------------------------------------------------------------------- Enhanced CT

#: Per-frame intercepts when the rescale varies by frame (stored values shifted to keep the HU).
FRAME_INTERCEPTS = (0, -1024, -1000)


def enhanced_ct(slices: list[Path], per_frame_rescale: bool = False, seed: int = 0) -> Dataset:
    """One Enhanced CT Image Storage file from single-frame slices: frames in shuffled order,
    geometry in functional groups, rescale shared or per frame (stored values rewritten so that
    every frame keeps its HU), a reference to its source slice and a frame date-time per frame."""
    datasets = [pydicom.dcmread(p) for p in slices]
    order = np.random.default_rng(seed).permutation(len(datasets))
    first = datasets[0]
    ds = copy.deepcopy(first)
    slope, intercept = float(first.get("RescaleSlope", 1)), float(first.get("RescaleIntercept", 0))
    shared, measures, orientation, frame_type = Dataset(), Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = first.PixelSpacing, first.SliceThickness
    orientation.ImageOrientationPatient = first.ImageOrientationPatient
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.CTImageFrameTypeSequence = Sequence([frame_type])
    if not per_frame_rescale:
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, intercept, "HU"
        shared.PixelValueTransformationSequence = Sequence([transform])
    ranks = np.argsort(np.argsort([float(d.ImagePositionPatient[2]) for d in datasets]))
    per_frame, pixels = [], []
    for k, i in enumerate(order):
        one = datasets[i]
        item, position, content, source = Dataset(), Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = one.ImagePositionPatient
        content.StackID, content.InStackPositionNumber = "1", int(ranks[i]) + 1
        content.FrameAcquisitionDateTime = f"{first.get('StudyDate', '20200101') or '20200101'}101010"
        source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = one.SOPClassUID, one.SOPInstanceUID
        derivation = Dataset()
        derivation.SourceImageSequence = Sequence([source])
        item.PlanePositionSequence = Sequence([position])
        item.FrameContentSequence = Sequence([content])
        item.DerivationImageSequence = Sequence([derivation])
        stored = one.pixel_array
        if per_frame_rescale:
            frame_intercept = FRAME_INTERCEPTS[k % len(FRAME_INTERCEPTS)]
            transform = Dataset()
            transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, frame_intercept, "HU"
            item.PixelValueTransformationSequence = Sequence([transform])
            stored = (stored.astype(np.int32) + int((intercept - frame_intercept) / slope)).astype(np.int16)
        per_frame.append(item)
        pixels.append(stored)
    for keyword in (
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "SliceThickness",
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "InstanceNumber",
        "SliceLocation",
    ):
        ds.pop(keyword, None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(seed), *map(str, slices)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = len(datasets)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    frames = np.stack(pixels)
    if per_frame_rescale:
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
    ds.PixelData = frames.astype(np.int16 if ds.PixelRepresentation else np.uint16).tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.fixture(scope="session")
def slice_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    out = {}
    for source in SOURCES:
        out[source] = root / source
        out[source].mkdir()
        for path in _contiguous(source):
            shutil.copy(path, out[source] / path.name)
    return out


@pytest.mark.parametrize(
    "source,per_frame,compressed",
    [
        ("b40f", False, False),  # uint16, rescale shared
        ("lung1", True, False),  # rescale per frame (three intercepts)
        ("lung1", False, True),  # JPEG 2000 lossless frames
    ],
    ids=["b40f-shared-rescale", "lung1-per-frame-rescale", "lung1-jpeg2000"],
)
def test_enhanced_ct_reads_to_the_single_frame_volume(slice_folders, tmp_path, source, per_frame, compressed):
    ds = enhanced_ct(sorted(slice_folders[source].iterdir()), per_frame_rescale=per_frame)
    if compressed:
        ds.compress(JPEG2000Lossless)
    (tmp_path / "enh").mkdir()
    ds.save_as(tmp_path / "enh" / "ENHANCED.dcm", enforce_file_format=True)
    single, _ = load_series(slice_folders[source], PID)
    image, info = load_series(tmp_path / "enh", PID)
    _same_geometry(image, single)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(single))
    assert info["chosen_series"]["multiframe"] is True and info["chosen_series"]["n_slices"] == N_SLICES
    assert info["files"]["n_files"] == 1


def test_enhanced_ct_with_two_stacks_gives_two_series(slice_folders, tmp_path):
    ds = enhanced_ct(sorted(slice_folders["b40f"].iterdir()))
    for item in ds.PerFrameFunctionalGroupsSequence:  # the upper three slices form stack 2
        content = item.FrameContentSequence[0]
        upper = content.InStackPositionNumber > N_SLICES // 2
        content.StackID = "2" if upper else "1"
        content.InStackPositionNumber -= N_SLICES // 2 if upper else 0
    (tmp_path / "enh").mkdir()
    ds.save_as(tmp_path / "enh" / "ENHANCED.dcm", enforce_file_format=True)
    _, info = load_series(tmp_path / "enh", PID)
    assert sorted(s["series_uid"] for s in info["series"]) == [
        f"{ds.SeriesInstanceUID} stack 1",
        f"{ds.SeriesInstanceUID} stack 2",
    ]
    assert info["chosen_series"]["n_slices"] == N_SLICES // 2


def _drop(sequence: str, frame: int | None = None):
    """Remove functional group ``sequence`` from one frame (and the shared groups) or from all."""

    def edit(ds):
        ds.SharedFunctionalGroupsSequence[0].pop(sequence, None)
        for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
            if frame is None or i == frame:
                item.pop(sequence, None)

    return edit


def _more_frames_said(ds):
    ds.NumberOfFrames = N_SLICES + 1


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            _drop("PlanePositionSequence", frame=1),
            "multi-frame CT frame 2 of 6 lacks its position: no "
            "PlanePositionSequence > ImagePositionPatient in its per-frame or the shared functional groups; "
            "cannot place it in a volume",
        ),
        (
            _drop("PlaneOrientationSequence"),
            "multi-frame CT frame 1 of 6 lacks its orientation: no "
            "PlaneOrientationSequence > ImageOrientationPatient in its per-frame or the shared functional groups; "
            "cannot place it in a volume",
        ),
        (
            _drop("PixelMeasuresSequence"),
            "multi-frame CT frame 1 of 6 lacks its pixel spacing: no PixelMeasuresSequence "
            "> PixelSpacing in its per-frame or the shared functional groups; cannot place it in a volume",
        ),
        (
            _drop("PixelValueTransformationSequence"),
            "multi-frame CT frame 1 of 6 lacks its HU rescale: no "
            "PixelValueTransformationSequence > RescaleIntercept in its per-frame or the shared functional groups; "
            "cannot convert it to HU",
        ),
        (_more_frames_said, "multi-frame CT image has 6 PerFrameFunctionalGroupsSequence items for 7 frames"),
    ],
    ids=["no-position-frame-2", "no-orientation", "no-pixel-measures", "no-rescale", "frame-count"],
)
def test_incomplete_enhanced_ct_is_refused_naming_what_is_missing(slice_folders, tmp_path, edit, message):
    ds = enhanced_ct(sorted(slice_folders["b40f"].iterdir()))
    edit(ds)
    (tmp_path / "enh").mkdir()
    path = tmp_path / "enh" / "ENHANCED.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomInputError) as err:
        load_series(tmp_path / "enh", PID)
    assert str(err.value) == f"patient {PID}, file {path}: {message}"


#: Fake identifiers put where an Enhanced CT file hides them (real data here are de-identified already).
FAKE = {
    "name": "TESTPERSON^ENHANCED",
    "mrn": "FAKEMRN5151",
    "private": "FAKEPRIVATE-FRAME-7731",
    "operator": "FAKEOPERATOR^FRAMES",
    "date": "20200401",
    "institution": "Fake Enhanced Hospital",
}


def test_enhanced_ct_anonymized_with_no_leak(slice_folders, tmp_path):
    slices = sorted(slice_folders["lung1"].iterdir())
    ds = enhanced_ct(slices, per_frame_rescale=True)
    ds.PatientName, ds.PatientID, ds.InstitutionName = FAKE["name"], FAKE["mrn"], FAKE["institution"]
    ds.StudyDate = ds.ContentDate = FAKE["date"]
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.FrameContentSequence[0].FrameAcquisitionDateTime = FAKE["date"] + "101010"
        block = item.private_block(0x0021, "SIEMENS MED FRAME", create=True)
        block.add_new(0x01, "LO", FAKE["private"])
    shared = ds.SharedFunctionalGroupsSequence[0]
    operator = Dataset()
    operator.ContentCreatorName = FAKE["operator"]
    shared.CTAcquisitionDetailsSequence = Sequence([operator])
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "ENHANCED.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    anonymize_series_dir(src, out, KEY, PID)
    (written,) = list(out.iterdir())
    raw = written.read_bytes().lower()
    for what, value in FAKE.items():
        for part in value.split("^"):
            assert part.lower().encode() not in raw, f"{what} leaked"
    for source in slices:  # the frames' references to their source slices point to new UIDs
        assert str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID).encode() not in raw
    anon = pydicom.dcmread(written)
    assert bytes(anon.PixelData) == bytes(ds.PixelData)
    assert not any(e.tag.is_private for e in anon.iterall())
    assert frame_geometry(anon) == frame_geometry(ds)
    report = verify_anonymization(src, out, PID)
    assert report["passed"], report
    before, _ = load_series(src, PID)
    after, info = load_series(out, PID)
    _same_geometry(after, before)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(after), sitk.GetArrayFromImage(before))
    assert info["study"]["study_date"] == shift_date(FAKE["date"], date_offset_days(KEY, FAKE["mrn"]))


# ------------------------------------------------------------------------------- TCIA / PACS trees


def test_tcia_tree_with_two_studies_a_localizer_and_two_kernels(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("COVIDCT_ANON_KEY", KEY.decode())
    patient = tmp_path / "raw" / "Lung_Dx-A0002"
    study1 = patient / "04-25-2007-NA-ThoraxRoutine Adult-34834"
    b40f = _contiguous("b40f", 6)
    b70f = slices_by_position(require_shared_data("ct", "lung_pet_ct_dx_A0002", "B70f"))[10:18]
    for folder, files in ((study1 / "2.000000-B40f-1", b40f), (study1 / "3.000000-B70f-2", b70f)):
        folder.mkdir(parents=True)
        for i, path in enumerate(files):
            shutil.copy(path, folder / f"1-{i + 1:02d}.dcm")
    localizer = pydicom.dcmread(b40f[0])
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    localizer.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    localizer.SeriesInstanceUID, localizer.SOPInstanceUID = generate_uid(), generate_uid()
    (study1 / "1.000000-Topogram-1").mkdir()
    localizer.save_as(study1 / "1.000000-Topogram-1" / "1-1.dcm")
    follow_up = patient / "07-25-2007-NA-ThoraxRoutine Adult-41200" / "2.000000-B40f-1"
    follow_up.mkdir(parents=True)
    study2_uid, series2_uid = generate_uid(), generate_uid()
    for i, path in enumerate(_contiguous("b40f", 4, 14)):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.StudyDate = study2_uid, "20070725"
        ds.SeriesInstanceUID = series2_uid
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(follow_up / f"1-{i + 1:02d}.dcm")
    original = pydicom.dcmread(b70f[0], stop_before_pixels=True)
    out = tmp_path / "results"
    with caplog.at_level(logging.INFO, logger="covidct.dicom"):
        steps.anonymize_dicom(PID, out / "anonymized" / PID, out / "anonymized" / f"{PID}.json", raw_dir=patient)
        info = steps.dicom_to_hu(
            out / "anonymized" / PID,
            out / "hu" / f"{PID}.nii.gz",
            out / "hu" / f"{PID}.json",
            PID,
            anonymize_summary=out / "anonymized" / f"{PID}.json",
        )
    chosen = info["chosen_series"]
    assert chosen["convolution_kernel"] == "B70f" and chosen["n_slices"] == 8
    assert chosen["description"] == ""  # removed by the Basic Profile (SeriesDescription: X)
    assert sorted(s["n_slices"] for s in info["series"]) == [1, 4, 6, 8]
    shifted = shift_date(str(original.StudyDate), date_offset_days(KEY, str(original.PatientID)))
    assert info["study"]["study_date"] == shifted != str(original.StudyDate)
    assert str(original.StudyDate) not in (out / "hu" / f"{PID}.json").read_text()
    assert info["files"]["dicom_dir"]["n_images"] == 19 and info["files"]["dicom_dir"]["skipped"] == {}
    assert any(m.startswith(f"patient {PID}: 3 axial CT series; chose kernel B70f ") for m in caplog.messages)
    assert any("skipped: localizer" in m for m in caplog.messages)


# ------------------------------------------------------------------------------- the workflow
