"""Property tests of the anonymizer: generated CT studies with identifiers hidden everywhere.

Each example is one patient's study: two CT series of 1-3 tiny slices (8x8 int16), written
with a drawn transfer syntax, with recognisable identifying tokens ("ZQ" + 8-10 consonants) and
dates put in drawn places: person names, dates, times, free-text attributes of PS3.15 Table
E.1-1, items of sequences nested two deep, private blocks (creator and values, also nested and
without a creator), overlay (60xx) and curve (50xx) groups, the file meta and the preamble.
In half the examples the first series is one Enhanced CT Image Storage file (multi-frame: geometry
and rescale in shared and per-frame functional groups, a frame acquisition date-time per frame),
with further identifiers drawn into its functional group items. The folder goes through
``anonymize_series_dir`` (both series in one folder, or one call per series), and the output must
hold none of those strings anywhere in its bytes (deflated files inflated first), byte-identical
pixel data, the same geometry (functional groups included), and valid replacement UIDs that are
consistent within and across the calls. A second property: two keys give unlinkable outputs.

Why a token cannot appear by chance: the pixel values lie in [-1024, 2047], so every second
pixel byte is 0x00-0x07 or 0xFC-0xFF and no two letters or digits follow each other in pixel
data; "zq" is no hex digit (pseudonyms are hex), and no fixed text the anonymizer writes holds
it. Dates are searched only where no digit or dot precedes them (not inside a replacement UID),
and all dates of a study lie within 300 days while the date shift is at least 365 days, so a
shifted date never equals another original one.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary, dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from covidct.deid.dataset import BIRTH_KEYWORDS, DATE_MODES, DICOM_ROOT_UID, IMPLEMENTATION_CLASS_UID
from covidct.deid.keys import DATE_OFFSET_MAX_DAYS, MAX_UID_LENGTH, pseudo_uid, pseudonym
from covidct.deid.profile import BASIC_PROFILE
from covidct.deid.series import anonymize_series_dir
from covidct.deid.verify import frame_geometry
from covidct.dicom.hu import load_series
from covidct.dicom.series import group_series, read_slice_infos
from covidct.testing import leaks as corpus

KEY = b"test-key-0123456789abcdef"
OTHER_KEY = b"another-key-9876543210fedcba"
PATIENT = "P001"
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UID_ROOT = "1.2.826.0.1.3680043.9.4242"
SIZE = 8
#: Pixel values stay in this range: their high bytes are never a letter, digit or dot.
PIXEL_MIN, PIXEL_MAX = -1024, 2047
#: All dates of one study lie within this many days (less than the smallest date shift).
DATE_WINDOW_DAYS = 300
assert DATE_WINDOW_DAYS < -DATE_OFFSET_MAX_DAYS
TOKEN_PREFIX = "ZQ"
CONSONANTS = "BCDFGHJKLMNPQRSTVWXZ"
#: DICOM datasets written (one per slice), examples run per test, strings searched: printed at the end.
COUNTS: Counter = Counter()

TEXT_VRS = ("LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS", "UR")
BYTES_VRS = ("OB", "UN")


def _keywords(vrs: tuple[str, ...], in_table: bool) -> list[str]:
    """Dictionary keywords of public attributes (group 0008 and up) with one of ``vrs``."""
    if in_table:
        names = [k for k in BASIC_PROFILE if not k.startswith("(")]
    else:
        names = [v[4] for t, v in DicomDictionary.items() if v[4] and t >> 16 >= 0x0008]
    out = []
    for name in names:
        tag = tag_for_keyword(name)
        if tag is not None and tag >> 16 >= 0x0008 and tag >> 16 < 0xFFFC and dictionary_VR(tag) in vrs:
            out.append(name)
    return sorted(set(out))


#: Every person-name attribute of the dictionary (in Table E.1-1 or not: the catch-all empties the others).
PN_KEYWORDS = _keywords(("PN",), in_table=False)
PN_IN_TABLE = _keywords(("PN",), in_table=True)
#: Every date and date-time attribute of the dictionary.
DATE_KEYWORDS = _keywords(("DA", "DT"), in_table=False)
DATE_IN_TABLE = _keywords(("DA", "DT"), in_table=True)
#: Times that Table E.1-1 lists (other times are kept, as are all times under the Modified Dates Option).
TIME_KEYWORDS = _keywords(("TM",), in_table=True)
#: Free-text and coded-string attributes of Table E.1-1 (every one has an action other than K).
TEXT_KEYWORDS = _keywords(TEXT_VRS, in_table=True)
#: Binary attributes of Table E.1-1.
BYTES_KEYWORDS = _keywords(BYTES_VRS, in_table=True)
#: Sequences that nest the drawn attributes: removed (X, X/Z), kept and recursed (X/Z/U*) or not in the table.
SEQUENCE_KEYWORDS = [
    "ReferencedStudySequence",  # X/Z
    "RequestAttributesSequence",  # X
    "OtherPatientIDsSequence",  # X
    "ReferencedImageSequence",  # X/Z/U*: kept, items anonymized
    "SourceImageSequence",  # X/Z/U*
    "ReferencedSeriesSequence",  # not in the table: kept, items anonymized
    "AnatomicRegionSequence",  # not in the table
]
#: Where an identifier goes in an Enhanced CT file: the shared functional groups item, the first
#: frame's item, or the first frame's FrameContentSequence item.
FG_TARGETS = ["shared", "frame", "frame_content"]
PRIVATE_GROUPS = [0x0009, 0x0011, 0x0019, 0x0029, 0x0043, 0x2001, 0x7053]
GEOMETRY = (
    "SliceThickness",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "Rows",
    "Columns",
    "Modality",
)


# ------------------------------------------------------------------------ strategies

tokens = st.text(alphabet=CONSONANTS, min_size=8, max_size=10).map(lambda s: TOKEN_PREFIX + s)


def keywords(all_: list[str], in_table: list[str]) -> st.SearchStrategy:
    """Half the draws from the table's rows, half from the attributes only a catch-all handles."""
    return st.sampled_from(in_table) | st.sampled_from(sorted(set(all_) - set(in_table)))


def leaf() -> st.SearchStrategy:
    """One identifying value in one attribute: (kind, where, value)."""
    day = st.integers(0, DATE_WINDOW_DAYS)
    return st.one_of(
        st.tuples(st.just("pn"), keywords(PN_KEYWORDS, PN_IN_TABLE), st.tuples(tokens, tokens).map("^".join)),
        st.tuples(st.just("date"), keywords(DATE_KEYWORDS, DATE_IN_TABLE), day),
        st.tuples(
            st.just("time"),
            st.sampled_from(TIME_KEYWORDS),
            st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(1, 999999)),
        ),
        st.tuples(st.just("text"), st.sampled_from(TEXT_KEYWORDS), tokens),
        st.tuples(st.just("bytes"), st.sampled_from(BYTES_KEYWORDS), tokens),
        st.tuples(st.just("private"), st.sampled_from(PRIVATE_GROUPS), st.tuples(tokens, tokens, st.booleans())),
    )


placement = st.one_of(
    leaf(),
    st.tuples(st.just("overlay"), st.integers(0, 15), st.tuples(tokens, tokens, tokens)),
    st.tuples(st.just("curve"), st.integers(0, 15), st.tuples(tokens, tokens)),
    # two levels of sequences around a leaf; inner None: the leaf sits in the outer item
    st.tuples(
        st.just("seq"),
        st.tuples(st.sampled_from(SEQUENCE_KEYWORDS), st.none() | st.sampled_from(SEQUENCE_KEYWORDS)),
        leaf(),
    ),
)


def _slot(placement_: tuple) -> tuple:
    """Where a placement writes at the top level: two placements never overwrite each other
    (an overwritten value would not be in the input, and its absence from the output prove nothing)."""
    kind, where, _ = placement_
    if kind in ("private", "overlay", "curve"):
        return kind, where  # one block, overlay or curve per group
    if kind == "seq":
        return placement_  # a new item each time
    return "attribute", where


@st.composite
def studies(draw, max_placements: int = 8) -> dict:
    """A study of two series: UIDs, geometry, transfer syntax, dates mode and identifier placements."""
    run = draw(st.integers(1, 10**9))
    n_slices = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    shared_for = draw(st.booleans())
    return {
        "study_uid": f"{UID_ROOT}.{run}.1",
        "series_uids": [f"{UID_ROOT}.{run}.2.{s}" for s in range(2)],
        "for_uids": [f"{UID_ROOT}.{run}.3.{0 if shared_for else s}" for s in range(2)],
        "n_slices": n_slices,
        "base_date": draw(st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31))),
        "thickness": draw(st.sampled_from(["1", "2.5", "5"])),
        "spacing": draw(st.sampled_from(["0.703125", "0.9765625", "1.5"])),
        "intercept": draw(st.sampled_from(["-1024", "-1000", "0"])),
        "slope": draw(st.sampled_from(["1", "0.5"])),
        "transfer_syntax": draw(
            st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
        ),
        "dates": draw(st.sampled_from(DATE_MODES)),
        "patient_name": draw(st.tuples(tokens, tokens).map("^".join)),
        "patient_id": draw(tokens),
        "preamble_token": draw(tokens),
        "meta_token": draw(st.text(alphabet=CONSONANTS, min_size=8, max_size=14).map(lambda s: TOKEN_PREFIX + s)),
        "placements": draw(st.lists(placement, min_size=1, max_size=max_placements, unique_by=_slot)),
        "pixel_seed": draw(st.integers(0, 2**32 - 1)),
        "together": draw(st.booleans()),
        # series 0 as one Enhanced CT file (multi-frame), with identifiers in its functional groups
        "enhanced": draw(st.booleans()),
        # unique per functional group and slot, like ``placements``: an overwritten value is not in the input
        "fg_placements": draw(
            st.lists(
                st.tuples(st.sampled_from(FG_TARGETS), placement),
                max_size=4,
                unique_by=lambda target_placement: (target_placement[0], _slot(target_placement[1])),
            )
        ),
        "frame_days": draw(st.integers(0, DATE_WINDOW_DAYS)),
    }


# ------------------------------------------------------------------------ building


def _day(study: dict, days: int) -> str:
    return (study["base_date"] + timedelta(days=days)).strftime("%Y%m%d")


def put_leaf(ds: Dataset, leaf_: tuple, study: dict, needles: set[str], checked_times: bool) -> None:
    """Write one identifying value into ``ds``; record what must not survive in ``needles``."""
    kind, where, value = leaf_
    if kind == "pn":
        setattr(ds, where, value)
        needles.update(value.split("^"))
    elif kind == "date":
        day = _day(study, value)
        vr = dictionary_VR(tag_for_keyword(where))
        setattr(ds, where, day if vr == "DA" else day + "101500.25")
        needles.add(day)
    elif kind == "time":
        h, m, s, f = value
        text = f"{h:02d}{m:02d}{s:02d}.{f:06d}"
        setattr(ds, where, text)
        if checked_times or where in BIRTH_KEYWORDS:  # times are kept under the Modified Dates Option
            needles.add(text)
    elif kind == "text":
        setattr(ds, where, value)
        needles.add(value)
    elif kind == "bytes":
        raw = value.encode("ascii")
        ds.add_new(tag_for_keyword(where), dictionary_VR(tag_for_keyword(where)), raw + b"\0" * (len(raw) % 2))
        needles.add(value)
    elif kind == "private":
        creator, text, orphan = value
        if orphan:  # a private element with no creator
            ds.add_new((where << 16) | 0x1010, "LO", text)
        else:
            block = ds.private_block(where, f"{creator} 1.0", create=True)
            block.add_new(0x10, "LO", text)
            raw = text.encode("ascii")
            block.add_new(0x11, "OB", raw + b"\0" * (len(raw) % 2))
            needles.add(creator)
        needles.add(text)
    else:
        raise AssertionError(kind)


def put(ds: Dataset, placement_: tuple, study: dict, needles: set[str], checked_times: bool) -> None:
    kind, where, value = placement_
    if kind == "overlay":
        group = 0x6000 + 2 * where
        data, comment, label = value
        raw = data.encode("ascii")
        ds.add_new((group << 16) | 0x3000, "OW", raw + b"\0" * (len(raw) % 2))
        ds.add_new((group << 16) | 0x4000, "LT", comment)
        ds.add_new((group << 16) | 0x1500, "LO", label)
        needles.update(value)
    elif kind == "curve":
        group = 0x5000 + 2 * where
        label, data = value
        raw = data.encode("ascii")
        ds.add_new((group << 16) | 0x2500, "LO", label)
        ds.add_new((group << 16) | 0x3000, "OB", raw + b"\0" * (len(raw) % 2))
        needles.update(value)
    elif kind == "seq":
        outer_kw, inner_kw = where
        outer = Dataset()
        outer.ReferencedSOPClassUID = CTImageStorage
        outer.ReferencedSOPInstanceUID = study["study_uid"]  # a reference that must be remapped, not lost
        target = outer
        if inner_kw is not None:
            target = Dataset()
            setattr(outer, inner_kw, Sequence([target]))
        put_leaf(target, value, study, needles, checked_times)
        existing = ds.get(outer_kw)
        if existing is None:
            setattr(ds, outer_kw, Sequence([outer]))
        else:
            existing.append(outer)
    else:
        put_leaf(ds, placement_, study, needles, checked_times)


def ct_slice(study: dict, series: int, index: int, needles: set[str]) -> Dataset:
    """One slice of the study, every placement applied."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{study['study_uid'][:-2]}.4.{series}.{index + 1}"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.PatientName = study["patient_name"]
    ds.PatientID = study["patient_id"]
    ds.StudyDate = _day(study, 0)
    ds.ContentDate = _day(study, series)
    ds.StudyInstanceUID = study["study_uid"]
    ds.SeriesInstanceUID = study["series_uids"][series]
    ds.FrameOfReferenceUID = study["for_uids"][series]
    ds.SeriesNumber = str(series + 1)
    ds.InstanceNumber = str(index + 1)
    z = -50.0 - float(study["thickness"]) * index
    ds.ImagePositionPatient = ["-100.5", "-120.25", f"{z:.2f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [study["spacing"], study["spacing"]]
    ds.SliceThickness = study["thickness"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = SIZE
    ds.Columns = SIZE
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = study["intercept"]
    ds.RescaleSlope = study["slope"]
    ds.RescaleType = "HU"
    rng = np.random.default_rng([study["pixel_seed"], series, index])
    ds.PixelData = rng.integers(PIXEL_MIN, PIXEL_MAX + 1, (SIZE, SIZE), dtype=np.int16).tobytes()
    if index > 0:  # a reference to the previous slice: must point to its new UID
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = f"{study['study_uid'][:-2]}.4.{series}.{index}"
        ds.ReferencedImageSequence = Sequence([ref])
    for p in study["placements"]:
        put(ds, p, study, needles, checked_times=study["dates"] == "remove")
    # the identifying values of the base header, as they are after the placements
    for kw in (
        "PatientID",
        "StudyDate",
        "ContentDate",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "SOPInstanceUID",
    ):
        needles.add(str(ds[kw].value))
    needles.update(str(ds.PatientName).split("^"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = study["transfer_syntax"]
    meta.SourceApplicationEntityTitle = study["meta_token"][:16]
    ds.file_meta = meta
    ds.preamble = f"export {study['preamble_token']}".encode().ljust(128, b"\0")
    return ds


#: Per-slice attributes that an Enhanced CT file holds in its functional groups instead.
PER_FRAME_KEYWORDS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "InstanceNumber",
    "ReferencedImageSequence",
)


def enhanced_ct(study: dict, series: int, needles: set[str]) -> Dataset:
    """Series ``series`` as one Enhanced CT Image Storage file: frames, shared and per-frame
    functional groups, and the drawn ``fg_placements`` inside them."""
    # the first slice's header becomes the file's; the others give their pixels and positions only
    slices = [
        ct_slice(study, series, index, needles if index == 0 else set()) for index in range(study["n_slices"][series])
    ]
    ds = slices[0]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = ds.PixelSpacing
    measures.SliceThickness = ds.SliceThickness
    orientation = Dataset()
    orientation.ImageOrientationPatient = ds.ImageOrientationPatient
    transform = Dataset()
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = (
        ds.RescaleIntercept,
        ds.RescaleSlope,
        "HU",
    )
    frame_type = Dataset()
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    shared.CTImageFrameTypeSequence = Sequence([frame_type])
    per_frame = []
    for index, one in enumerate(slices):
        item, position, content = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = one.ImagePositionPatient
        content.FrameAcquisitionDateTime = _day(study, study["frame_days"]) + "101010.5"
        content.StackID, content.InStackPositionNumber = "1", index + 1
        item.PlanePositionSequence = Sequence([position])
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    needles.add(_day(study, study["frame_days"]))
    targets = {"shared": shared, "frame": per_frame[0], "frame_content": per_frame[0].FrameContentSequence[0]}
    for target, placement_ in study["fg_placements"]:
        put(targets[target], placement_, study, needles, checked_times=study["dates"] == "remove")
    for keyword in PER_FRAME_KEYWORDS:
        ds.pop(keyword, None)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = len(slices)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = b"".join(bytes(one.PixelData) for one in slices)
    return ds


def n_files(study: dict) -> int:
    """Files the study is written as: an Enhanced CT series is one file."""
    return sum(1 if series == 0 and study["enhanced"] else n for series, n in enumerate(study["n_slices"]))


def write_study(study: dict, root: Path) -> tuple[list[Path], set[str]]:
    """Write the two series (one folder, or one per series); returns the folders and the needles."""
    needles: set[str] = {study["preamble_token"], study["meta_token"][:16]}
    folders = [root / "in"] if study["together"] else [root / "in0", root / "in1"]
    for series in range(2):
        folder = folders[0] if study["together"] else folders[series]
        folder.mkdir(parents=True, exist_ok=True)
        name = study["patient_name"].replace("^", "_")
        if series == 0 and study["enhanced"]:
            enhanced_ct(study, series, needles).save_as(folder / f"{name}_{series}.dcm", enforce_file_format=True)
            COUNTS["enhanced_ct_files"] += 1
            COUNTS["datasets"] += 1
            continue
        for index in range(study["n_slices"][series]):
            ds = ct_slice(study, series, index, needles)
            ds.save_as(folder / f"{name}_{series}_{index}.dcm", enforce_file_format=True)
        COUNTS["datasets"] += study["n_slices"][series]
    return folders, needles


def anonymize_study(folders: list[Path], root: Path, key: bytes, dates: str) -> list[Path]:
    """One anonymize_series_dir call per folder; returns the output files."""
    outputs = []
    for i, folder in enumerate(folders):
        out = root / f"out{i}_{hashlib.sha256(key).hexdigest()[:6]}"
        anonymize_series_dir(folder, out, key, PATIENT, dates=dates)
        outputs.extend(sorted(out.iterdir()))
    return outputs


def leaks(paths: list[Path], needles: set[str]) -> list[tuple[str, str]]:
    found = []
    for path in paths:
        raw = corpus.searchable_bytes(path.read_bytes()).lower()
        found += [(path.name, n) for n in sorted(needles) if corpus.occurs(n, raw)]
    return found


def _pixel_key(ds: Dataset) -> str:
    return hashlib.sha256(bytes(ds.PixelData)).hexdigest()


# ------------------------------------------------------------------------ tests


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    """Print how many generated datasets the properties tried (whatever -s says)."""
    yield
    line = "hypothesis anonymizer properties: " + ", ".join(f"{k}={v}" for k, v in sorted(COUNTS.items()))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(study=studies(max_placements=4))
def test_occurs_and_leaks_can_fail(study):
    """The checks below must be able to fail: a copied original leaks everything."""
    COUNTS["examples_control"] += 1
    with tempfile.TemporaryDirectory(prefix="covidct-prop-") as tmp:
        folders, needles = write_study(study, Path(tmp))
        originals = sorted(p for f in folders for p in f.iterdir())
        found = {n for _, n in leaks(originals, needles)}
    assert found == needles  # every needle is in the input files, where it was put
    assert not corpus.occurs("20200101", b"2.25.1234520200101")  # inside a UID: not a date
    assert corpus.occurs("20200101", b"\x08\x0020200101")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(study=studies())
def test_anonymized_study_has_no_identifier_same_pixels_geometry_and_consistent_uids(study):
    COUNTS["examples_main"] += 1
    with tempfile.TemporaryDirectory(prefix="covidct-prop-") as tmp:
        root = Path(tmp)
        folders, needles = write_study(study, root)
        outputs = anonymize_study(folders, root, KEY, study["dates"])
        inputs = [p for f in folders for p in sorted(f.rglob("*.dcm"))]
        assert len(outputs) == len(inputs) == n_files(study)

        # (1) no identifying string anywhere in the output bytes; no private element left
        COUNTS["strings_searched"] += len(needles) * len(outputs)
        assert leaks(outputs, needles) == []
        for path in outputs:
            raw = corpus.searchable_bytes(path.read_bytes())
            assert KEY not in raw and KEY.lower() not in raw.lower()

        originals = {_pixel_key(ds): ds for ds in (pydicom.dcmread(p) for p in inputs)}
        anonymized = {}
        for path in outputs:
            ds = pydicom.dcmread(path)
            assert not any(e.tag.is_private for e in ds.iterall())
            groups = {e.tag.group for e in ds.iterall()}
            assert not groups & (set(range(0x5000, 0x5020, 2)) | set(range(0x6000, 0x6020, 2)))  # curves, overlays
            # (2) pixel data byte-identical: each output's pixels are one original's (KeyError otherwise)
            anonymized[_pixel_key(ds)] = (ds, originals[_pixel_key(ds)])
        assert len(anonymized) == len(originals)

        # (3) UIDs: valid, new, consistent within a series and across series and calls
        new_of: dict[str, set[str]] = {}
        for ds, orig in anonymized.values():
            assert ds.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
                new, old = str(ds[kw].value), str(orig[kw].value)
                assert UID_RE.fullmatch(new) and len(new) <= MAX_UID_LENGTH, (kw, new)
                assert new != old
                new_of.setdefault(old, set()).add(new)
        assert all(len(v) == 1 for v in new_of.values())  # one original UID -> one replacement
        assert len({next(iter(v)) for v in new_of.values()}) == len(new_of)  # distinct stay distinct
        study_new = next(iter(new_of[study["study_uid"]]))
        for ds, orig in anonymized.values():
            if "ReferencedImageSequence" in orig and orig.ReferencedImageSequence[0].get("ReferencedSOPClassUID"):
                old_ref = str(orig.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
                if old_ref in new_of:  # the reference to the previous slice follows its new UID
                    refs = [str(i.get("ReferencedSOPInstanceUID", "")) for i in ds.ReferencedImageSequence]
                    assert next(iter(new_of[old_ref])) in refs
            replacements = {next(iter(v)) for v in new_of.values()}
            for elem in ds.iterall():  # references kept in sequences (to the study, a slice) point to new UIDs
                if elem.keyword == "ReferencedSOPInstanceUID":
                    assert str(elem.value) in replacements
            # a drawn placement may have overwritten PatientID: the pseudonym is that of the input's
            assert ds.PatientID == str(ds.PatientName) == pseudonym(KEY, "patient", str(orig.PatientID))
        assert study_new == pseudo_uid(KEY, study["study_uid"])

        # (4) still a CT study with the same geometry, read by the pipeline's own reader
        out_series = group_series(
            [i for folder in sorted({p.parent for p in outputs}) for i in read_slice_infos(folder)]
        )
        assert sorted(len(s.slices) for s in out_series) == sorted(study["n_slices"])
        for ds, orig in anonymized.values():
            for kw in GEOMETRY:
                assert (str(ds[kw].value) if kw in ds else None) == (str(orig[kw].value) if kw in orig else None), kw
            assert frame_geometry(ds) == frame_geometry(orig)  # functional groups of Enhanced CT
        for series_index, old_series in enumerate(study["series_uids"]):
            if study["n_slices"][series_index] < 2:
                continue
            in_folder = folders[0] if study["together"] else folders[series_index]
            new_series = next(iter(new_of[old_series]))
            out_folder = next(p.parent for p in outputs if str(pydicom.dcmread(p).SeriesInstanceUID) == new_series)
            image_in, _ = load_series(in_folder, PATIENT, series_uid=old_series, min_slices=2)
            image_out, info = load_series(out_folder, PATIENT, series_uid=new_series, min_slices=2)
            assert info["chosen_series"]["modality"] == "CT"
            assert image_out.GetSpacing() == image_in.GetSpacing()
            assert image_out.GetOrigin() == image_in.GetOrigin()
            assert image_out.GetDirection() == image_in.GetDirection()
            np.testing.assert_array_equal(sitk.GetArrayFromImage(image_out), sitk.GetArrayFromImage(image_in))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(study=studies(max_placements=3))
def test_two_keys_give_unlinkable_outputs(study):
    COUNTS["examples_two_keys"] += 1
    with tempfile.TemporaryDirectory(prefix="covidct-prop-") as tmp:
        root = Path(tmp)
        folders, _ = write_study(study, root)
        values = {}
        for key in (KEY, OTHER_KEY):
            outputs = anonymize_study(folders, root, key, study["dates"])
            pseudonyms: set[str] = set()
            for path in outputs:
                raw = corpus.searchable_bytes(path.read_bytes())
                for k in (KEY, OTHER_KEY):
                    assert k not in raw and k.lower() not in raw.lower()
                ds = pydicom.dcmread(path)
                pseudonyms |= {str(ds.PatientID), str(ds.PatientName)}
                pseudonyms |= {
                    str(ds[kw].value)
                    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
                }
                pseudonyms |= {
                    str(e.value)
                    for e in ds.iterall()
                    if e.VR == "UI"
                    and not str(e.value).startswith(DICOM_ROOT_UID)
                    and e.value != IMPLEMENTATION_CLASS_UID
                }
            values[key] = pseudonyms
        assert values[KEY] and values[OTHER_KEY]
        assert values[KEY].isdisjoint(values[OTHER_KEY])  # no pseudonym nor UID in common
        patient_id = str(pydicom.dcmread(next(folders[0].iterdir())).PatientID)
        assert pseudonym(KEY, "patient", patient_id) in values[KEY]
        assert pseudonym(OTHER_KEY, "patient", patient_id) in values[OTHER_KEY]
