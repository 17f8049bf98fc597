"""De-identification of one DICOM data set: the actions of the PS3.15 Basic Profile table
(``covidct.deid.profile``), dates shifted by the patient's offset or removed, UIDs remapped, every
private attribute, overlay and curve group removed, person names not in the table emptied, and the
de-identification method recorded. Pixel data are never decoded."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from covidct import __version__
from covidct.deid.keys import UUID_UID_ROOT, pseudo_uid, pseudonym
from covidct.deid.profile import (
    CID7050_MEANINGS,
    CODE_BASIC_PROFILE,
    CODE_RETAIN_MODIFIED_DATES,
    CODING_SCHEME_DCM,
    action_for_tag,
)
from covidct.dicom.files import transfer_syntax_of
from covidct.errors import AnonymizationError

#: UIDs under this root (SOP classes, transfer syntaxes, ...) identify nothing and are kept.
DICOM_ROOT_UID = "1.2.840.10008."


#: ``dates`` modes: shift (Modified Dates Option) or remove (Basic Profile alone).
DATE_MODES = ("shift", "remove")


#: PatientID / PatientName become pseudonym(key, PSEUDONYM_KIND, original PatientID).
PSEUDONYM_KIND = "patient"


PSEUDONYM_KEYWORDS = frozenset({"PatientID", "PatientName"})


#: Dates that are emptied (Z) even when other dates are shifted.
BIRTH_KEYWORDS = frozenset({"PatientBirthDate", "PatientBirthTime"})


#: Attributes of the CT Image IOD that must be present with a value (Type 1): a
#: combined action resolves to D for them.
CT_TYPE1_KEYWORDS = frozenset(
    {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "Modality"}
)


#: Attributes of the CT Image IOD that must be present, possibly empty (Type 2 / 2C):
#: a combined action X/Z, X/Z/D resolves to Z for them rather than X.
CT_TYPE2_KEYWORDS = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyID",
        "SeriesNumber",
        "InstanceNumber",
        "Manufacturer",
        "ContentDate",
        "ContentTime",
        "PatientOrientation",
        "Laterality",
        "PositionReferenceIndicator",
        "KVP",
        "AcquisitionNumber",
        "ContrastBolusAgent",
    }
)


#: Dummy values (action D) by value representation.
DUMMY_TEXT = "ANONYMIZED"


DUMMY_DA = "19000101"


DUMMY_TM = "000000.00"


DUMMY_DT = "19000101000000.000000"


DUMMY_BY_VR: dict[str, Any] = {
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"), DUMMY_TEXT),
    "DA": DUMMY_DA,
    "TM": DUMMY_TM,
    "DT": DUMMY_DT,
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "AT"), 0),
    **dict.fromkeys(("FL", "FD"), 0.0),
    **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW", "UN"), b"\x00\x00"),
}


#: Overlay planes live in the even groups 6000-601E; all their elements go.
OVERLAY_GROUP_FIRST = 0x6000


OVERLAY_GROUP_LAST = 0x601E


#: Identifies covidct as the writer of the File Meta Information (fixed UUID-derived UID).
IMPLEMENTATION_CLASS_UID = UUID_UID_ROOT + str(uuid.uuid5(uuid.NAMESPACE_URL, "covidct:dicom-implementation").int)


IMPLEMENTATION_VERSION_NAME = f"COVIDCT_{__version__}"[:16]


_DT_DATE = re.compile(r"^(\d{8})(.*)$")


@dataclass
class _Context:
    key: bytes
    offset_days: int
    dates: str
    top_patient_id: str


def anonymize_dataset(ds: Dataset, key: bytes, offset_days: int, dates: str = "shift") -> Dataset:
    """De-identify one dataset in place (and return it).

    Applies the Basic Profile to every element, recursively into every sequence
    item, plus the catch-alls of this module (see the module docstring), then marks
    the dataset as de-identified (PatientIdentityRemoved, DeidentificationMethod,
    DeidentificationMethodCodeSequence, LongitudinalTemporalInformationModified).
    When ``ds`` has File Meta Information it is rebuilt: the new SOP Instance UID,
    the same transfer syntax, covidct as implementation, a zeroed preamble.

    Args:
        ds: The dataset, as read by pydicom; pixel data are not decoded.
        key: The anonymization key.
        offset_days: Days added to every date when ``dates == "shift"`` (see
            ``date_offset_days``).
        dates: ``"shift"`` (Retain Longitudinal Temporal Information with Modified
            Dates Option: dates shifted, times kept) or ``"remove"`` (dates and
            times as the table says).

    Returns:
        ``ds``, modified.

    Raises:
        AnonymizationError: BurnedInAnnotation is YES, or ``dates`` is unknown.
    """
    check_dates_mode(dates)
    where = getattr(ds, "filename", None)
    where = where if isinstance(where, (str, Path)) else None
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        raise AnonymizationError(
            "BurnedInAnnotation is YES: anonymization refused, pixel data may show identifiers", path=where
        )
    meta = getattr(ds, "file_meta", None)
    # Stripped inputs may carry their instance identity only in the file meta.
    if meta is not None:
        if not ds.get("SOPInstanceUID") and meta.get("MediaStorageSOPInstanceUID"):
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        if not ds.get("SOPClassUID") and meta.get("MediaStorageSOPClassUID"):
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ctx = _Context(key, offset_days, dates, str(ds.get("PatientID", "") or ""))
    _anonymize_items(ds, ctx)
    if not ds.get("SOPInstanceUID"):
        ds.SOPInstanceUID = pseudo_uid(key, "content:" + _content_digest(ds))
    _mark_deidentified(ds, dates)
    if meta is not None:
        ds.file_meta = _new_file_meta(ds, meta)
    if hasattr(ds, "preamble"):
        ds.preamble = b"\x00" * 128
    return ds


def check_dates_mode(dates: str) -> None:
    """Refuse a ``dates`` mode that is not one of DATE_MODES (shift, remove)."""
    if dates not in DATE_MODES:
        raise AnonymizationError(f"anonymize dates must be one of {', '.join(DATE_MODES)}, got {dates!r}")


def _anonymize_items(ds: Dataset, ctx: _Context) -> None:
    """Apply the profile to every element of ``ds`` and, recursively, of its sequences."""
    level_patient_id = str(ds.get("PatientID", "") or "") or ctx.top_patient_id
    for tag in list(ds.keys()):
        tag = BaseTag(tag)
        if tag.is_private or tag.element == 0 or _is_overlay_group(tag):
            del ds[tag]  # private attributes (Table E.1-1 last row), group lengths, overlay planes
            continue
        elem = ds[tag]
        action = _effective_action(elem, ctx.dates)
        if action == "X":
            del ds[tag]
        elif action == "Z":
            if elem.keyword in PSEUDONYM_KEYWORDS:
                elem.value = pseudonym(ctx.key, PSEUDONYM_KIND, level_patient_id)
            else:
                elem.value = elem.empty_value
        elif action == "D":
            _set_dummy(ds, elem, ctx, level_patient_id)
        elif action == "U":
            _map_values(elem, lambda v: _remap_uid(ctx.key, v))
        elif action == "SHIFT":
            _shift_element(elem, ctx.offset_days)
        elif elem.VR == "SQ":  # K, U* (X/Z/U*: kept, contained UIDs replaced) or not in the table
            for item in elem.value:
                _anonymize_items(item, ctx)


def _effective_action(elem: DataElement, dates: str) -> str:
    """Resolve what happens to one public element: X, Z, D, U, SHIFT or K.

    Combined codes take the most conservative choice that keeps a CT image valid;
    the Modified Dates Option, when used, overrides the table for dates and times.
    """
    keyword, vr = elem.keyword, elem.VR
    code = action_for_tag(elem.tag)
    if dates == "shift" and vr in ("DA", "DT", "TM") and keyword not in BIRTH_KEYWORDS:
        return "SHIFT" if vr in ("DA", "DT") else "K"
    if code is None:  # not in the table: catch-alls by value representation
        if vr == "UI":
            return "U"
        if vr == "PN":
            return "Z"
        if vr in ("DA", "DT"):
            return "Z"  # dates == "remove"
        if vr == "UN":
            return "X"  # a public attribute we cannot interpret
        return "K"
    if code == "X/Z/U*":
        return "K" if vr == "SQ" else ("U" if vr == "UI" else "X")
    if code in ("X", "Z", "D", "U", "K"):
        return code
    type1, type2 = keyword in CT_TYPE1_KEYWORDS, keyword in CT_TYPE2_KEYWORDS
    if code == "C":
        return "D" if type1 else "Z" if type2 else "X"
    if code == "Z/D":
        return "D" if type1 else "Z"
    if code == "X/Z":
        return "Z" if type1 or type2 else "X"
    if code == "X/D":
        return "D" if type1 or type2 else "X"
    if code == "X/Z/D":
        return "D" if type1 else "Z" if type2 else "X"
    raise AnonymizationError(f"unknown action code {code!r} for {keyword or elem.tag} in the profile table")


def _set_dummy(ds: Dataset, elem: DataElement, ctx: _Context, level_patient_id: str) -> None:
    if elem.keyword in PSEUDONYM_KEYWORDS:
        elem.value = pseudonym(ctx.key, PSEUDONYM_KIND, level_patient_id)
    elif elem.VR == "SQ":
        # D sequences (ContentSequence, GraphicAnnotationSequence, ...) are not part of
        # the CT Image IOD: removing them is both valid and the safest choice.
        del ds[elem.tag]
    elif elem.VR == "UI":
        if elem.is_empty:
            elem.value = pseudo_uid(ctx.key, f"dummy:{elem.tag}")
        else:
            _map_values(elem, lambda v: _remap_uid(ctx.key, v))
    else:
        elem.value = DUMMY_BY_VR.get(elem.VR, DUMMY_TEXT)


def _is_overlay_group(tag: BaseTag) -> bool:
    return OVERLAY_GROUP_FIRST <= tag.group <= OVERLAY_GROUP_LAST and tag.group % 2 == 0


def _remap_uid(key: bytes, uid: str) -> str:
    uid = uid.strip().rstrip("\x00")
    if not uid or uid.startswith(DICOM_ROOT_UID):
        return uid
    return pseudo_uid(key, uid)


def _map_values(elem: DataElement, fn: Callable[[str], str | None]) -> None:
    """Replace each string value of ``elem`` by ``fn(value)``; empty it if any is None."""
    if elem.is_empty:
        return
    values = elem.value
    if isinstance(values, bytes):  # UN read from an implicit-VR file
        values = values.decode("ascii", "replace").strip("\x00 ").split("\\")
    many = isinstance(values, (list, MultiValue))
    new = [fn(str(v)) for v in (values if many else [values])]
    if any(v is None for v in new):
        elem.value = elem.empty_value
    elif elem.VR in ("UN", "OB"):
        text = "\\".join(new)
        elem.value = (text + "\x00" * (len(text) % 2)).encode("ascii")
    else:
        elem.value = new if many else new[0]


def shift_date(value: str, offset_days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``, or the old ``YYYY.MM.DD``) by whole days.

    Args:
        value: The DA string.
        offset_days: Days to add.

    Returns:
        The shifted ``YYYYMMDD``, ``""`` for an empty value, None when unparsable.

    >>> shift_date("20200301", -1), shift_date("", 5), shift_date("2020", 1)
    ('20200229', '', None)
    """
    text = value.strip().replace(".", "")
    if not text:
        return ""
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        shifted = date(int(text[:4]), int(text[4:6]), int(text[6:])) + timedelta(days=offset_days)
    except (ValueError, OverflowError):
        return None
    return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"


def shift_datetime(value: str, offset_days: int) -> str | None:
    """Shift the date part of a DT value; time, fraction and UTC offset are kept.

    Returns:
        The shifted DT, ``""`` for an empty value, None when it has no full date.

    >>> shift_datetime("20200301123000.5+0100", -1)
    '20200229123000.5+0100'
    """
    text = value.strip()
    if not text:
        return ""
    match = _DT_DATE.match(text)
    if match is None:
        return None
    day = shift_date(match.group(1), offset_days)
    return None if day is None else day + match.group(2)


def _shift_element(elem: DataElement, offset_days: int) -> None:
    shift = shift_date if elem.VR == "DA" else shift_datetime
    _map_values(elem, lambda v: shift(v, offset_days))


def _content_digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    h.update(bytes(ds.get("PixelData", b"") or b""))
    h.update(str(ds.get("ImagePositionPatient", "")).encode())
    h.update(str(ds.get("InstanceNumber", "")).encode())
    return h.hexdigest()


def _mark_deidentified(ds: Dataset, dates: str) -> None:
    codes = [CODE_BASIC_PROFILE] + ([CODE_RETAIN_MODIFIED_DATES] if dates == "shift" else [])
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [f"covidct {__version__}"] + [CID7050_MEANINGS[c] for c in codes]
    items = []
    for code in codes:
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = CODING_SCHEME_DCM
        item.CodeMeaning = CID7050_MEANINGS[code]
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates == "shift" else "REMOVED"


def _new_file_meta(ds: Dataset, old: FileMetaDataset) -> FileMetaDataset:
    """File Meta Information that describes covidct, never the original sender (PS3.15 E.1.1 7)."""
    transfer_syntax = transfer_syntax_of(ds)
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or old.get("MediaStorageSOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta
