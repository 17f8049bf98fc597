"""Conformance of the de-identification table and its application with DICOM PS3.15 Annex E.

No copy of the standard's Table E.1-1 is kept in this repository or in ../shared, so the table in
``covidct.deid.profile`` is checked (a) for internal consistency: one row per attribute, comment
tags equal to the keywords' tags, only the action codes of the table's legend (Table E.1-1a);
(b) against spot checks transcribed from the standard (current edition, Basic Prof. column, as
scraped from dicom.nema.org part15 chapter E by idiscore's ``_public_dicom.py``, 2025-06-24);
and (c) row by row in use: every one of the 655 rows is put into a dataset on its own and
``anonymize_dataset`` must do what the code's documented resolution of that row's action says.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydicom.datadict import DicomDictionary, dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

import covidct.deid.profile as dp
from covidct.deid.dataset import (
    BIRTH_KEYWORDS,
    CT_TYPE1_KEYWORDS,
    CT_TYPE2_KEYWORDS,
    DATE_MODES,
    IMPLEMENTATION_VERSION_NAME,
    PSEUDONYM_KEYWORDS,
    PSEUDONYM_KIND,
    anonymize_dataset,
    shift_date,
    shift_datetime,
)
from covidct.deid.keys import MAX_UID_LENGTH, pseudo_uid, pseudonym
from covidct.deid.profile import (
    ACTION_CODES,
    BASIC_PROFILE,
    CODE_CLEAN_DESCRIPTORS,
    CODE_RETAIN_SAFE_PRIVATE,
    PRIVATE_ATTRIBUTES_ACTION,
    action_for_tag,
    parse_key,
)

KEY = b"test-key-0123456789abcdef"
OFFSET = -400
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
ORIGINAL_UID = "1.2.826.0.1.3680043.9.4242.77"
#: Codes the Basic Prof. column uses (legend, PS3.15 Table E.1-1a); K and C occur only in the options' columns.
BASIC_COLUMN_CODES = {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}

#: Rows checked against the standard's text (Basic Prof. column). Where the code's comments or an
#: older edition say otherwise, the standard wins: PatientID is Z/D and ContentDate Z/D, not Z / X/D.
STANDARD_ROWS = {
    "AccessionNumber": "Z",  # (0008,0050)
    "AcquisitionDate": "X/Z",  # (0008,0022)
    "AcquisitionDateTime": "X/Z/D",  # (0008,002A)
    "AcquisitionTime": "X/Z",  # (0008,0032)
    "ContentDate": "Z/D",  # (0008,0023)
    "ContentTime": "Z/D",  # (0008,0033)
    "ContentSequence": "D",  # (0040,A730)
    "DeviceSerialNumber": "X/Z/D",  # (0018,1000)
    "FrameOfReferenceUID": "U",  # (0020,0052)
    "InstanceCreationDate": "X/D",  # (0008,0012)
    "InstitutionAddress": "X",  # (0008,0081)
    "InstitutionName": "X/Z/D",  # (0008,0080)
    "IssuerOfPatientID": "X",  # (0010,0021)
    "MediaStorageSOPInstanceUID": "U",  # (0002,0003)
    "OperatorsName": "X/Z/D",  # (0008,1070)
    "OtherPatientIDsSequence": "X",  # (0010,1002)
    "PatientAge": "X",  # (0010,1010)
    "PatientBirthDate": "Z",  # (0010,0030)
    "PatientBirthTime": "X",  # (0010,0032)
    "PatientID": "Z/D",  # (0010,0020)
    "PatientName": "Z",  # (0010,0010)
    "PatientSex": "Z",  # (0010,0040)
    "PerformingPhysicianName": "X",  # (0008,1050)
    "ProtocolName": "X/D",  # (0018,1030)
    "ReferencedImageSequence": "X/Z/U*",  # (0008,1140)
    "ReferencedPerformedProcedureStepSequence": "X/Z/D",  # (0008,1111)
    "ReferencedSOPInstanceUID": "U",  # (0008,1155)
    "ReferencedStudySequence": "X/Z",  # (0008,1110)
    "ReferringPhysicianName": "Z",  # (0008,0090)
    "RequestAttributesSequence": "X",  # (0040,0275)
    "SeriesDate": "X/D",  # (0008,0021)
    "SeriesDescription": "X",  # (0008,103E)
    "SeriesInstanceUID": "U",  # (0020,000E)
    "SOPInstanceUID": "U",  # (0008,0018)
    "SourceImageSequence": "X/Z/U*",  # (0008,2112)
    "StationName": "X/Z/D",  # (0008,1010)
    "StudyDate": "Z",  # (0008,0020)
    "StudyDescription": "X",  # (0008,1030)
    "StudyID": "Z",  # (0020,0010)
    "StudyInstanceUID": "U",  # (0020,000D)
    "StudyTime": "Z",  # (0008,0030)
    "(50xx,xxxx)": "X",  # Curve Data
    "(60xx,3000)": "X",  # Overlay Data
    "(60xx,4000)": "X",  # Overlay Comments
}

_ROW = re.compile(r'^\s*"([^"]+)":\s*"([^"]+)",\s*#\s*(.*)$')
_COMMENT_TAG = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)$")


def _table_source_rows() -> list[tuple[str, str, str]]:
    """(key, code, comment) of each BASIC_PROFILE line of deid_profile.py, as written."""
    source = Path(dp.__file__).read_text()
    start = source.index("BASIC_PROFILE: dict[str, str] = {")
    end = source.index("\n}\n", start)
    return [m.groups() for line in source[start:end].splitlines() if (m := _ROW.match(line))]


# ------------------------------------------------------------------------ the table itself


def test_table_one_row_per_attribute_no_silent_duplicates():
    source = Path(dp.__file__).read_text()
    tree = ast.parse(source)
    literal = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "BASIC_PROFILE"
    )
    keys = [k.value for k in literal.keys]
    assert len(keys) == len(set(keys)) == len(BASIC_PROFILE) == 655  # a repeated key would vanish silently
    tags = [parse_key(k) for k in keys]
    assert len(set(tags)) == len(tags)  # no tag under two names (keyword and "(gggg,eeee)")
    assert len(_table_source_rows()) == 655


def test_table_comments_name_the_keywords_tags():
    for key, _, comment in _table_source_rows():
        if key.startswith("("):
            if "x" not in key:  # a single tag: keyed so only because pydicom does not know it
                assert "(*)" in comment and parse_key(key)[0] not in DicomDictionary, key
            continue
        match = _COMMENT_TAG.match(comment.strip())
        assert match, f"{key}: comment {comment!r} is no tag"
        assert tag_for_keyword(key) == int(match.group(1) + match.group(2), 16), key


def test_table_uses_only_the_basic_column_codes():
    assert set(BASIC_PROFILE.values()) <= BASIC_COLUMN_CODES
    assert BASIC_COLUMN_CODES | {"K", "C"} == ACTION_CODES
    assert PRIVATE_ATTRIBUTES_ACTION == "X"
    for key, code in BASIC_PROFILE.items():
        if key.startswith("("):
            continue
        vr = dictionary_VR(tag_for_keyword(key))
        if code == "U":
            assert vr == "UI", key  # U replaces UIDs
        if code == "X/Z/U*":
            assert vr == "SQ", key  # U* acts on the UIDs inside a sequence


@pytest.mark.parametrize("key,code", sorted(STANDARD_ROWS.items()))
def test_rows_match_the_standard(key, code):
    assert BASIC_PROFILE[key] == code


def test_lookup_of_repeating_groups_and_private_tags():
    for group in range(0x5000, 0x5020, 2):
        assert action_for_tag((group << 16) | 0x3000) == "X"
    for group in range(0x6000, 0x6020, 2):
        assert action_for_tag((group << 16) | 0x3000) == action_for_tag((group << 16) | 0x4000) == "X"
    assert action_for_tag(0x00091010) == action_for_tag(0x7FE10010) == "X"  # private, odd groups
    assert action_for_tag(0x7FE00010) is None  # Pixel Data: no row, kept


# ------------------------------------------------------------------------ the table in use

SAMPLE_TEXT = "ZQCONFTOKEN"
SAMPLE_BY_VR = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "SH", "ST", "UC", "UR", "UT"), SAMPLE_TEXT),
    "PN": "ZQFAMILY^ZQGIVEN",
    "DA": "20200315",
    "DT": "20200315101500",
    "TM": "101500",
    "UI": ORIGINAL_UID,
    "AS": "030Y",
    "DS": "1.5",
    "IS": "7",
    "US": 3,
    **dict.fromkeys(("OB", "OW"), b"ZQBYTES!"),
    "UN": b"ZQBYTES!",
}


def _row_element(key: str) -> tuple[int, str]:
    """(tag, VR) to test a row with: its dictionary VR, UN where pydicom does not know it."""
    value, mask = parse_key(key)
    if mask != 0xFFFFFFFF:  # a repeating group: one member of it
        if key.startswith("(50"):
            return 0x50102500, "LO"  # Curve Label of curve 5010
        return value | (0x001E << 16), "OW" if key.endswith("3000)") else "LT"  # overlay 601E
    try:
        return value, dictionary_VR(value)
    except KeyError:
        return value, "UN"


def expected_outcome(key: str, vr: str, dates: str) -> str:
    """What the module's documentation says happens to one row (see ``anonymize._effective_action``).

    Legend (PS3.15 Table E.1-1a): Z/D is Z unless D is needed for IOD conformance (Type 1), X/Z is
    X unless Z is (Type 2), X/D is X unless D is (Type 1; a Type 2 attribute cannot be removed
    either), X/Z/D is X, Z or D by Type 3, 2, 1, X/Z/U* is X unless the contained UIDs are replaced
    (sequences are kept and their items anonymized). The Type lists are the CT Image IOD's.
    Under the Modified Dates Option every date but the birth date is shifted and times are kept.
    D sequences are removed (not in the CT Image IOD: removal keeps it valid), D on a UID replaces it.
    """
    keyword = key if not key.startswith("(") else ""
    if dates == "shift" and vr in ("DA", "DT", "TM") and keyword not in BIRTH_KEYWORDS:
        return "SHIFT" if vr != "TM" else "K"
    code = BASIC_PROFILE[key]
    type1, type2 = keyword in CT_TYPE1_KEYWORDS, keyword in CT_TYPE2_KEYWORDS
    resolved = {
        "Z/D": "D" if type1 else "Z",
        "X/Z": "Z" if type1 or type2 else "X",
        "X/D": "D" if type1 or type2 else "X",
        "X/Z/D": "D" if type1 else "Z" if type2 else "X",
        "X/Z/U*": "K" if vr == "SQ" else "U" if vr == "UI" else "X",
    }.get(code, code)
    if resolved == "D" and vr == "SQ":
        return "X"
    if resolved == "D" and vr == "UI":
        return "U"
    return resolved


def observed_outcome(ds: Dataset, tag: int, vr: str, original) -> str:
    """Classify what anonymize_dataset did to one element: X, Z, D, U, SHIFT or K."""
    if tag not in ds:
        return "X"
    elem = ds[tag]
    if vr == "SQ":
        if not elem.value:
            return "Z"
        item = elem.value[0]
        new = str(item.get("ReferencedSOPInstanceUID", ""))
        assert new != ORIGINAL_UID, "UID inside a kept sequence not replaced"
        assert "ZQ" not in str(item), "identifying text kept inside a sequence item"
        return "K"
    value = elem.value
    if elem.is_empty:
        return "Z"
    pseudonyms = {pseudonym(KEY, PSEUDONYM_KIND, v) for v in ("", str(original))}
    if elem.keyword in PSEUDONYM_KEYWORDS and str(value) in pseudonyms:
        return "Z"  # Z allows a dummy value: the keyed pseudonym of the PatientID
    if value == original:
        return "K"
    if vr == "UI":
        assert UID_RE.fullmatch(str(value)) and len(str(value)) <= MAX_UID_LENGTH
        return "U"
    if vr == "DA" and value == shift_date(original, OFFSET):
        return "SHIFT"
    if vr == "DT" and value == shift_datetime(original, OFFSET):
        return "SHIFT"
    assert SAMPLE_TEXT not in str(value) and "ZQ" not in str(value)
    return "D"


@pytest.mark.parametrize("dates", DATE_MODES)
def test_every_row_applied_as_documented(dates):
    mismatches = []
    checked = 0
    for key in BASIC_PROFILE:
        tag, vr = _row_element(key)
        if tag >> 16 == 0x0002:
            continue  # file meta: rebuilt whole, see test_file_meta_rebuilt
        ds = Dataset()
        if vr == "SQ":
            item = Dataset()
            item.ReferencedSOPClassUID = CTImageStorage
            item.ReferencedSOPInstanceUID = ORIGINAL_UID
            item.PatientName = "ZQNESTED^NAME"  # Z inside an item
            original = Sequence([item])
            ds.add_new(tag, vr, original)
        else:
            original = SAMPLE_BY_VR[vr]
            ds.add_new(tag, vr, original)
        anonymize_dataset(ds, KEY, OFFSET, dates=dates)
        got, want = observed_outcome(ds, tag, vr, original), expected_outcome(key, vr, dates)
        checked += 1
        if got != want:
            mismatches.append((key, BASIC_PROFILE[key], vr, want, got))
    assert checked == 655 - 1  # every row but (0002,0003)
    assert mismatches == []


def test_actions_beyond_the_table():
    """The module's catch-alls: other overlay elements, curves, private, unlisted names/dates/UIDs, UN."""
    ds = Dataset()
    ds.add_new(0x60000010, "US", 8)  # Overlay Rows: not in the table, removed with its group
    ds.add_new(0x50000005, "US", 2)  # Curve Dimensions: (50xx,xxxx)
    block = ds.private_block(0x0009, "ZQCREATOR", create=True)
    block.add_new(0x01, "LO", "ZQPRIVATE")
    ds.EvaluatorName = "ZQEVALUATOR"  # PN not in the table
    ds.add_new(0x00181001, "UN", b"1234")  # a public element read as UN: not interpretable, removed
    ds.SOPClassUID = CTImageStorage  # DICOM-root UID: kept
    ds.SOPInstanceUIDOfConcatenationSource = ORIGINAL_UID  # a UID the table does not list
    ds.ReferencedFrameOfReferenceUID = ORIGINAL_UID  # listed U: the same replacement
    ds.ImageComments = "ZQCOMMENT"  # listed X
    ds.CodeMeaning = "ZQKEPT"  # free text the table does not list: kept (no Clean Descriptors)
    anonymize_dataset(ds, KEY, OFFSET, dates="remove")
    assert 0x60000010 not in ds and 0x50000005 not in ds
    assert not any(e.tag.is_private for e in ds.iterall())
    assert ds.EvaluatorName == ""
    assert 0x00181001 not in ds
    assert ds.SOPClassUID == CTImageStorage
    new_uid = pseudo_uid(KEY, ORIGINAL_UID)
    assert ds.ReferencedFrameOfReferenceUID == ds.SOPInstanceUIDOfConcatenationSource == new_uid
    assert "ImageComments" not in ds
    assert ds.CodeMeaning == "ZQKEPT"


def test_declared_method_and_options():
    """The dataset says what was done: Basic Profile, plus 113107 only when dates are shifted; never
    Clean Descriptors (113105) nor Retain Safe Private (113111), which are not implemented."""
    for dates, codes in (("shift", ["113100", "113107"]), ("remove", ["113100"])):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        anonymize_dataset(ds, KEY, OFFSET, dates=dates)
        assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == codes
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.LongitudinalTemporalInformationModified == ("MODIFIED" if dates == "shift" else "REMOVED")
        assert CODE_CLEAN_DESCRIPTORS not in codes and CODE_RETAIN_SAFE_PRIVATE not in codes


def test_file_meta_rebuilt():
    """(0002,0003) U: the file meta is rebuilt around the new SOP Instance UID; nothing else survives."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ORIGINAL_UID
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = ORIGINAL_UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "ZQSENDER"
    meta.ImplementationVersionName = "ZQVENDOR"
    ds.file_meta = meta
    anonymize_dataset(ds, KEY, OFFSET)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == pseudo_uid(KEY, ORIGINAL_UID)
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.file_meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
