"""De-identification of CT DICOM series, and its verification.

Implements DICOM PS3.15 Annex E, the Basic Application Level Confidentiality
Profile (table in :mod:`covidct.deid_profile`), with the Retain Longitudinal
Temporal Information with Modified Dates Option (``dates="shift"``, the default:
every date moves by a per-patient keyed offset, so intervals are kept) or without
it (``dates="remove"``). Beyond the table, for safety: every private attribute,
overlay and curve group is removed, every UID outside the DICOM root is replaced
by a keyed ``2.25.`` UID, every person name not handled by the table is emptied.
Pixel data are never decoded: their bytes and the transfer syntax stay as they were.

Pseudonyms, UIDs and date offsets are keyed HMAC-SHA256 values. The key is a
secret of the site (``$COVIDCT_ANON_KEY`` or the file named by ``anonymize.key_file``):
without it nobody can recompute a pseudonym from a real PatientID; with it the
same patient always gets the same pseudonym, UIDs and offset.

Nothing here logs or raises with an original value: messages carry only the
pseudonymous patient id, counts, keywords and file paths.

Typical use::

    key = load_key(config["anonymize"]["key_file"])
    summary = anonymize_series_dir(dicom_dir, out_dir, key, patient="P001")
    report = verify_anonymization(dicom_dir, out_dir, patient="P001")
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import re
import stat
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian

from covidct import __version__
from covidct.deid_profile import (
    CID7050_MEANINGS,
    CODE_BASIC_PROFILE,
    CODE_RETAIN_MODIFIED_DATES,
    CODING_SCHEME_DCM,
    PROFILE_NAME,
    action_for_tag,
)
from covidct.dicom_files import is_hidden, list_files, scan_folder, transfer_syntax_of
from covidct.errors import AnonymizationError
from covidct.io import atomic_dir, write_json

log = logging.getLogger(__name__)

#: Environment variable holding the anonymization key.
KEY_ENV = "COVIDCT_ANON_KEY"
#: Public, fixed key: ONLY for the synthetic demo cohort. Its pseudonyms are not secret.
DEMO_KEY = b"covidct-public-demo-key--NOT-SECRET--synthetic-demo-cohort-only"
#: Shortest key accepted (bytes).
MIN_KEY_BYTES = 16
#: Folder name a key file must never be under (workflow outputs are shared).
FORBIDDEN_KEY_FOLDER = "results"

#: UIDs under this root (SOP classes, transfer syntaxes, ...) identify nothing and are kept.
DICOM_ROOT_UID = "1.2.840.10008."
#: Root for UUID-derived UIDs (ISO/IEC 9834-8), used for every replacement UID.
UUID_UID_ROOT = "2.25."
#: Longest UID DICOM allows.
MAX_UID_LENGTH = 64
#: Bytes of the HMAC used for a replacement UID (128 bits, as a UUID).
UID_HASH_BYTES = 16
#: Replacement UIDs are HMAC(key, UID_HASH_PREFIX + original).
UID_HASH_PREFIX = "uid:"

#: Range of the per-patient date offset, in days (both ends included; never 0).
DATE_OFFSET_MIN_DAYS = -3650
DATE_OFFSET_MAX_DAYS = -365
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
PIXEL_DATA_TAG = 0x7FE00010

#: Identifies covidct as the writer of the File Meta Information (fixed UUID-derived UID).
IMPLEMENTATION_CLASS_UID = UUID_UID_ROOT + str(uuid.uuid5(uuid.NAMESPACE_URL, "covidct:dicom-implementation").int)
IMPLEMENTATION_VERSION_NAME = f"COVIDCT_{__version__}"[:16]

#: Attributes that must leave anonymization unchanged (compared by verification).
GEOMETRY_KEYWORDS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "PixelPaddingValue",
    "WindowCenter",
    "WindowWidth",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "NumberOfFrames",
    "ImageType",
    "Modality",
    "InstanceNumber",
    "KVP",
    "ConvolutionKernel",
    "PatientPosition",
    "Manufacturer",
)

#: Functional group sequences of a multi-frame image whose content verification compares.
FRAME_GEOMETRY_SEQUENCES = ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
                            "PixelValueTransformationSequence", "CTImageFrameTypeSequence")
#: Deflated Explicit VR Little Endian, and how far into a file its UID is searched (the file meta).
DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
DEFLATE_META_SEARCH_BYTES = 1024

# Verification: which original strings count as identifying, and how they are searched.
#: Shortest identifying string compared with output values.
MIN_IDENTIFYING_CHARS = 3
#: Shortest identifying string searched in the raw bytes of output files.
MIN_RAW_SEARCH_CHARS = 4
#: Strings of only digits and dots must be this long for the raw-bytes search
#: (shorter ones occur by chance inside the 39-digit replacement UIDs).
MIN_RAW_SEARCH_NUMERIC_CHARS = 8
#: Plain digit strings (record numbers) shorter than this are too generic to check.
MIN_DIGIT_ID_CHARS = 6
#: Value representations whose values never identify anyone (enumerated codes, numbers).
NON_IDENTIFYING_VRS = frozenset({"CS", "DS", "IS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT", "SQ"})
#: Values this module writes itself; an original holding one of them is not a leak.
WRITTEN_VALUES = frozenset({DUMMY_TEXT.lower()})
#: Leaks listed in a report at most (the count is always complete).
MAX_REPORTED_LEAKS = 500

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_NUMERIC_CHARS = re.compile(r"^[\d.]+$")
_DT_DATE = re.compile(r"^(\d{8})(.*)$")
_NAME_SPLIT = re.compile(r"[\^=\s]+")
#: Uncompressed YBR_FULL_422 stores two luminance values per pair of chroma values
#: (PS3.3 C.7.6.3.1.2): 2 samples per pixel on average, not SamplesPerPixel (3).
YBR_FULL_422 = "YBR_FULL_422"
YBR_FULL_422_SAMPLES = 2
#: pydicom warnings that mean the file ended early.
_TRUNCATION_WARNINGS = ("end of file", "unexpected end", "delimiter")


# --------------------------------------------------------------------------- keys


def load_key(key_file: str | Path | None = None, allow_demo: bool = False) -> bytes:
    """Find the anonymization key.

    Order: ``$COVIDCT_ANON_KEY``, then ``key_file``, then the public ``DEMO_KEY`` when
    ``allow_demo`` (synthetic demo data only). The key itself is never logged.

    Args:
        key_file: File holding the key (config ``anonymize.key_file``); it must exist,
            be non-empty and lie outside any folder named ``results``.
        allow_demo: Fall back to ``DEMO_KEY`` when no key is configured.

    Returns:
        The key bytes (surrounding whitespace removed).

    Raises:
        AnonymizationError: No usable key, with instructions on how to supply one.
    """
    env = os.environ.get(KEY_ENV, "")
    if env.strip():
        key = env.strip().encode("utf-8")
        _check_key_length(key, f"environment variable {KEY_ENV}")
        return key
    if key_file:
        return _read_key_file(Path(key_file))
    if allow_demo:
        log.warning("using the public demo key: pseudonyms and UIDs are NOT secret (synthetic demo data only)")
        return DEMO_KEY
    raise AnonymizationError(
        f"no anonymization key: set the environment variable {KEY_ENV} to a secret of at least "
        f"{MIN_KEY_BYTES} characters, or set anonymize.key_file in the config to a file holding it "
        f"(outside results/ and outside version control, readable only by you: chmod 600). Keep the key: "
        "the same key gives the same pseudonyms, UIDs and date offsets on every run."
    )


def _read_key_file(path: Path) -> bytes:
    if any(part == FORBIDDEN_KEY_FOLDER for part in path.resolve().parent.parts):
        raise AnonymizationError(
            f"the key file must not be inside a folder named '{FORBIDDEN_KEY_FOLDER}' (workflow outputs "
            "are shared); move it elsewhere and update anonymize.key_file",
            path=path,
        )
    if not path.is_file():
        raise AnonymizationError(
            f"key file not found: create it (a secret of at least {MIN_KEY_BYTES} characters) "
            f"or set {KEY_ENV} instead",
            path=path,
        )
    key = path.read_bytes().strip()
    if not key:
        raise AnonymizationError("key file is empty", path=path)
    _check_key_length(key, f"key file {path}")
    if path.stat().st_mode & stat.S_IROTH:
        log.warning("key file %s is readable by every user of this machine; restrict it with chmod 600", path)
    return key


def _check_key_length(key: bytes, where: str) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise AnonymizationError(f"the key in {where} is shorter than {MIN_KEY_BYTES} characters; use a longer secret")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def pseudonym(key: bytes, kind: str, value: str, length: int = 16) -> str:
    """Keyed, deterministic pseudonym: hex of HMAC-SHA256(key, "kind:value").

    Args:
        key: The anonymization key.
        kind: Name space, e.g. ``"patient"``; the same value in two kinds differs.
        value: The original value.
        length: Number of hex characters (1-64).

    Returns:
        Lower-case hex string of ``length`` characters.

    >>> pseudonym(b"k" * 16, "patient", "12345") == pseudonym(b"k" * 16, "patient", "12345")
    True
    """
    if not 1 <= length <= 2 * hashlib.sha256().digest_size:
        raise ValueError(f"pseudonym length must be 1-64, got {length}")
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:length]


def pseudo_uid(key: bytes, uid: str) -> str:
    """Keyed replacement UID: ``2.25.`` + the first 128 bits of HMAC(key, "uid:" + uid).

    The same UID always maps to the same replacement (references stay consistent
    across files and runs); the result is a valid UID of at most 44 characters.

    Args:
        key: The anonymization key.
        uid: The original UID.

    Returns:
        The replacement UID.
    """
    digest = _hmac(key, UID_HASH_PREFIX + str(uid).strip())[:UID_HASH_BYTES]
    new = UUID_UID_ROOT + str(int.from_bytes(digest, "big"))
    assert len(new) <= MAX_UID_LENGTH
    return new


def date_offset_days(key: bytes, patient_key: str) -> int:
    """Per-patient keyed date offset, in ``[DATE_OFFSET_MIN_DAYS, DATE_OFFSET_MAX_DAYS]``.

    Args:
        key: The anonymization key.
        patient_key: What identifies the patient (its original PatientID).

    Returns:
        A negative number of days, never 0, the same for every call with the same arguments.
    """
    span = DATE_OFFSET_MAX_DAYS - DATE_OFFSET_MIN_DAYS + 1
    value = int.from_bytes(_hmac(key, f"date-offset:{patient_key}")[:8], "big")
    return DATE_OFFSET_MIN_DAYS + value % span


# ---------------------------------------------------------------------- datasets


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
    _check_dates_mode(dates)
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


def _check_dates_mode(dates: str) -> None:
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
        # "K": kept as it is


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


# ------------------------------------------------------------------------ folders


def read_dicom(path: Path, patient: str | None = None) -> Dataset:
    """Read a whole DICOM file, read-only, and refuse it if it is not DICOM or is truncated.

    pydicom reads truncated files without complaint (a short pixel data value, a
    sequence without its delimiter); this checks for that.

    Args:
        path: The file.
        patient: Pseudonymous patient id, for error messages.

    Returns:
        The dataset, pixel data not decoded.

    Raises:
        AnonymizationError: Not a DICOM file, or a corrupt / truncated one.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(raw))
        except InvalidDicomError:
            ds = _read_without_preamble(raw)
            if ds is None:
                raise AnonymizationError("not a DICOM file", patient, path) from None
        except Exception as exc:  # pydicom raises many types on broken input
            raise AnonymizationError(
                f"corrupt or truncated DICOM file ({type(exc).__name__} while reading)", patient, path
            ) from None
    ds.filename = str(path)
    problem = _truncation_problem(ds, caught)
    if problem:
        raise AnonymizationError(f"corrupt or truncated DICOM file: {problem}", patient, path)
    return ds


def _read_without_preamble(raw: bytes) -> Dataset | None:
    """Accept a bare dataset (no preamble / "DICM") only if it is clearly DICOM: a SOP Class, or
    an image (pixel data and rows)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        ok = bool(ds.get("SOPClassUID")) or ("PixelData" in ds and "Rows" in ds)
    except Exception:
        return None
    return ds if ok else None


def _truncation_problem(ds: Dataset, caught: list[warnings.WarningMessage]) -> str | None:
    if any(any(w in str(c.message).lower() for w in _TRUNCATION_WARNINGS) for c in caught):
        return "the file ends before a sequence or the pixel data is complete"
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        length, value = getattr(raw, "length", None), getattr(raw, "value", None)
        if isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length:
            return f"element {BaseTag(tag)} is shorter than its declared length"
    sop_class = str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    if "PixelData" not in ds:
        if "Image Storage" in UID(sop_class).name:
            return "an image instance without pixel data"
        return None
    transfer_syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
    if not transfer_syntax.is_compressed:
        expected = _native_pixel_bytes(ds)
        if expected and len(ds.PixelData) < expected:
            return "pixel data shorter than Rows x Columns x frames"
    return None


def _native_pixel_bytes(ds: Dataset) -> int:
    try:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if str(ds.get("PhotometricInterpretation", "")).strip() == YBR_FULL_422:
            samples = YBR_FULL_422_SAMPLES
        n = int(ds.Rows) * int(ds.Columns) * samples
        n *= int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return 0
    return (n * bits + 7) // 8


def _name_components(value: Any) -> set[str]:
    if value is None:
        return set()
    return {c.lower() for c in _NAME_SPLIT.split(str(value)) if len(c) >= MIN_IDENTIFYING_CHARS}


def _refuse_real_identifier(patient: str, patient_ids: set[str], name_parts: set[str], folder: Path) -> None:
    """Refuse a sheet patient id that equals or contains the real PatientID or a name part.

    The error deliberately names no patient: here the id itself is the identifier.
    """
    low = patient.strip().lower()
    for real in patient_ids:
        real = real.strip().lower()
        if real and (low == real or (len(real) >= MIN_IDENTIFYING_CHARS and real in low)):
            break
    else:
        if not any(part in low for part in name_parts):
            return
    raise AnonymizationError("patient_id looks like a real identifier; use a pseudonym", path=folder)


#: What ``anonymize_series_dir`` anonymizes: CT images (the workflow) or every image SOP Class.
IMAGE_KINDS = ("ct", "all")
#: Files of one patient kept in memory between the checking and the writing pass.
CACHE_BYTES = 512 * 1024 * 1024


def anonymize_series_dir(in_dir: Path, out_dir: Path, key: bytes, patient: str, dates: str = "shift",
                         images: str = "ct") -> dict:
    """De-identify every CT image under ``in_dir`` into a flat ``out_dir``.

    ``in_dir`` is only read. What is not a CT image is skipped and counted by
    ``covidct.dicom_files.scan_folder`` (hidden files, files that are not DICOM, DICOMDIR,
    non-image objects, images of other kinds: a dose screen may show the name in its
    pixels); the output holds one ``<new SOPInstanceUID>.dcm`` per image (original names
    may carry identifiers; a multi-frame file stays one file) and is written atomically:
    it appears complete or not at all. Pixel data are never decoded: compressed pixel
    data keep their bytes and their transfer syntax.

    Args:
        in_dir: Folder of one patient's DICOM files (searched recursively).
        out_dir: Output folder (replaced if it exists).
        key: The anonymization key (``load_key``).
        patient: The pseudonymous patient id of the sample sheet; it must not
            look like the real PatientID or PatientName.
        dates: ``"shift"`` or ``"remove"``, see ``anonymize_dataset``.
        images: ``"ct"`` (the workflow) or ``"all"``: every image SOP Class (the corpus bench).

    Returns:
        Summary: patient, n_files, n_series, files (the scan of ``in_dir``: counts and ranks
        of what was skipped, by category), dates, profile, options, transfer syntaxes.
        Neither the key, nor the date offset, nor any file name is included.

    Raises:
        AnonymizationError: A DICOM file is corrupt or truncated, an image has burned-in
            annotation; the folder holds several patients or no CT image; the patient id
            looks real.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    _check_dates_mode(dates)
    if images not in IMAGE_KINDS:
        raise AnonymizationError(f"images must be one of {', '.join(IMAGE_KINDS)}, got {images!r}")
    if not in_dir.is_dir():
        raise AnonymizationError("DICOM input folder not found", patient, in_dir)
    src, dst = in_dir.resolve(), out_dir.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise AnonymizationError(
            "the output folder must not contain or be inside the DICOM input folder", patient, out_dir
        )
    scan = scan_folder(in_dir, ct_only=images == "ct")

    # Pass 1: read every candidate (refusing broken files) before writing anything. Datasets are
    # kept for pass 2 up to CACHE_BYTES of files, so that a usual series is read once.
    used: list[Path] = []
    cache: dict[Path, Dataset] = {}
    cached_bytes = 0
    patient_ids: set[str] = set()
    name_parts: set[str] = set()
    for path in scan.candidates:
        ds = read_dicom(path, patient)
        if not scan.accept(path, ds):
            continue
        if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
            raise AnonymizationError(
                "BurnedInAnnotation is YES: anonymization refused, pixel data may show identifiers", patient, path
            )
        patient_ids.add(str(ds.get("PatientID", "") or "").strip())
        name_parts |= _name_components(ds.get("PatientName"))
        used.append(path)
        size = path.stat().st_size
        if cached_bytes + size <= CACHE_BYTES:
            cache[path] = ds
            cached_bytes += size
    scan.log_skips(patient)
    if not used:
        what = "CT image" if images == "ct" else "image"
        raise AnonymizationError(f"no {what} found in the folder (skipped: {scan.describe_skips()})", patient, in_dir)
    if len(patient_ids) > 1:
        raise AnonymizationError(
            f"mixed patients in one folder: {len(patient_ids)} distinct PatientIDs", patient, in_dir
        )
    _refuse_real_identifier(patient, patient_ids, name_parts, in_dir)
    real_id = next(iter(patient_ids))
    offset = date_offset_days(key, real_id or patient)

    # Pass 2: anonymize and write.
    names: set[str] = set()
    series: set[str] = set()
    transfer_syntaxes: set[str] = set()
    with atomic_dir(out_dir) as tmp:
        for path in used:
            ds = cache.pop(path, None) or read_dicom(path, patient)
            try:
                anonymize_dataset(ds, key, offset, dates)
            except AnonymizationError as exc:
                raise AnonymizationError(exc.message, patient, path) from None
            name = f"{ds.SOPInstanceUID}.dcm"
            if name in names:
                raise AnonymizationError("two files share one SOPInstanceUID (duplicate instance)", patient, path)
            try:
                ds.save_as(tmp / name, enforce_file_format=True)
            except Exception as exc:  # the message could quote a value: give only its type
                raise AnonymizationError(
                    f"cannot write the anonymized file ({type(exc).__name__})", patient, path
                ) from None
            names.add(name)
            series.add(str(ds.get("SeriesInstanceUID", "") or ""))
            transfer_syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
    summary = {
        "patient": patient,
        "n_files": len(names),
        "n_series": len(series),
        "files": scan.summary(),
        "dates": dates,
        "profile": PROFILE_NAME,
        "options": [CID7050_MEANINGS[CODE_RETAIN_MODIFIED_DATES]] if dates == "shift" else [],
        "transfer_syntaxes": sorted(transfer_syntaxes),
    }
    log.info("patient %s: anonymized %d file(s) in %d series (dates: %s)", patient, len(names), len(series), dates)
    return summary


# -------------------------------------------------------------------- verification


@dataclass
class _Instance:
    """What verification keeps of one file (never the dataset itself)."""

    name: str
    pixel_hash: str
    position: str
    instance_number: str
    geometry: dict[str, str]
    header: bytes = b""  # raw file bytes without the pixel data (outputs only)
    values: list[tuple[str, str, bool]] = field(default_factory=list)  # (attribute, value, is_uid) outputs only
    privates: list[str] = field(default_factory=list)
    identity_removed: bool = False
    times_modified: bool = False


def _walk(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, DataElement]]:
    """Every element of ``ds``, recursively, with its path ("Seq>Keyword")."""
    for tag in list(ds.keys()):
        elem = ds[tag]
        name = prefix + (elem.keyword or str(elem.tag))
        yield name, elem
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                yield from _walk(item, name + ">")


def _strings(elem: DataElement) -> list[str]:
    """The string values of an element (bytes decoded as latin-1), stripped."""
    value = elem.value
    if value is None or elem.VR == "SQ" or elem.tag == PIXEL_DATA_TAG:
        return []
    items = value if isinstance(value, (list, MultiValue)) else [value]
    out = []
    for v in items:
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        elif not isinstance(v, str) and not hasattr(v, "family_name"):  # numbers
            continue
        text = str(v).strip("\x00 \t\r\n")
        if text:
            out.append(text)
    return out


def _checkable(text: str, vr: str) -> bool:
    """Whether an original string is specific enough to search for in outputs."""
    if len(text) < MIN_IDENTIFYING_CHARS or text.lower() in WRITTEN_VALUES:
        return False
    if vr not in ("DA", "DT", "UI") and _NUMBER.match(text):
        return text.isdigit() and len(text) >= MIN_DIGIT_ID_CHARS
    return True


def _collect_identifying(
    ds: Dataset, identifying: dict[str, str], times: dict[str, str], retained: set[str], in_private: bool = False
) -> None:
    """Sort the original's values: identifying (with their source attribute) or retained by design."""
    for tag in list(ds.keys()):
        tag = BaseTag(tag)
        elem = ds[tag]
        name = elem.keyword or str(tag)
        private = in_private or tag.is_private
        if elem.VR == "SQ":
            for item in elem.value or []:
                _collect_identifying(item, identifying, times, retained, private)
            continue
        if tag == PIXEL_DATA_TAG:
            continue
        vr = elem.VR
        strings = _strings(elem)
        if private:
            kind = "id"
        elif vr == "PN":
            kind = "id"
            strings = strings + [c for s in strings for c in _NAME_SPLIT.split(s) if c]
        elif vr in ("DA", "DT") or elem.keyword == "PatientID":
            kind = "id"
        elif vr == "UI":
            kind = "id" if any(not s.startswith(DICOM_ROOT_UID) for s in strings) else "keep"
        elif action_for_tag(tag) not in (None, "K"):
            kind = "time" if vr == "TM" else "id"
        else:
            kind = "keep"
        for text in strings:
            if kind == "keep":
                retained.add(text.lower())
            elif (vr in NON_IDENTIFYING_VRS and not private) or not _checkable(text, vr):
                continue
            elif kind == "time":
                times.setdefault(text.lower(), name)
            else:
                identifying.setdefault(text.lower(), name)


def _pixel_region(raw: bytes, ds: Dataset) -> tuple[int, int]:
    """Offsets of the pixel data value in the raw file (0, 0 if none)."""
    if "PixelData" not in ds:
        return 0, 0
    pixels = bytes(ds.PixelData)
    start = raw.rfind(pixels)
    return (start, start + len(pixels)) if start >= 0 else (0, 0)


def _frame_geometry(ds: Dataset) -> str | None:
    """Digest of the per-frame geometry and rescale of a multi-frame image (functional groups:
    position, orientation, pixel measures, value transformation, frame type), None otherwise."""
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        return None
    h = hashlib.sha256()
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for i, item in enumerate(ds.get(groups) or []):
            for keyword in FRAME_GEOMETRY_SEQUENCES:
                for sub in item.get(keyword) or []:
                    for elem in sub:
                        h.update(f"{groups}[{i}]>{keyword}>{elem.keyword}={elem.value}\n".encode())
    return h.hexdigest()


def _inflated(raw: bytes) -> bytes:
    """A Part 10 file's bytes with a deflated data set (1.2.840.10008.1.2.1.99) inflated, so that
    its header can be searched; other files as they are."""
    if raw[128:132] != b"DICM" or DEFLATED_SYNTAX.encode() not in raw[132:DEFLATE_META_SEARCH_BYTES]:
        return raw
    meta_end = 144 + int.from_bytes(raw[140:144], "little")  # (0002,0000) UL group length, explicit VR LE
    try:
        return raw[:meta_end] + zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)
    except zlib.error:
        return raw


def _load_instance(path: Path, ds: Dataset, name: str, output: bool) -> _Instance:
    pixels = bytes(ds.get("PixelData", b"") or b"")
    geometry = {kw: str(ds[kw].value) for kw in GEOMETRY_KEYWORDS if kw in ds}
    geometry["TransferSyntaxUID"] = str(transfer_syntax_of(ds))
    frames = _frame_geometry(ds)
    if frames is not None:
        geometry["FrameGeometry"] = frames
    inst = _Instance(
        name=name,
        pixel_hash=hashlib.sha256(pixels).hexdigest(),
        position=str(ds.get("ImagePositionPatient", "")),
        instance_number=str(ds.get("InstanceNumber", "")),
        geometry=geometry,
    )
    if output:
        raw = _inflated(path.read_bytes())
        start, end = _pixel_region(raw, ds)
        inst.header = (raw[:start] + raw[end:]).lower()
        for source in (ds.file_meta, ds):
            for attr, elem in _walk(source):
                if elem.tag.is_private:
                    inst.privates.append(attr)
                for text in _strings(elem):
                    inst.values.append((attr, text.lower(), elem.VR == "UI"))
        inst.identity_removed = str(ds.get("PatientIdentityRemoved", "")).upper() == "YES"
        inst.times_modified = str(ds.get("LongitudinalTemporalInformationModified", "")).upper() == "MODIFIED"
    return inst


def _match(
    originals: list[_Instance], outputs: list[_Instance]
) -> tuple[list[tuple[_Instance, _Instance]], list[_Instance]]:
    """Pair outputs with originals: by (pixels, position, number), then pixels, then position/number."""
    remaining = list(originals)
    pairs, unmatched = [], []
    keys: list[Callable[[_Instance], tuple]] = [
        lambda i: (i.pixel_hash, i.position, i.instance_number),
        lambda i: (i.pixel_hash,),
        lambda i: (i.position, i.instance_number),
    ]
    todo = list(outputs)
    for key_fn in keys:
        left = []
        for out in todo:
            found = next((o for o in remaining if key_fn(o) == key_fn(out)), None)
            if found is None:
                left.append(out)
            else:
                remaining.remove(found)
                pairs.append((out, found))
        todo = left
    unmatched.extend(todo)
    return pairs, unmatched


def verify_anonymization(
    orig_dir: Path, anon_dir: Path, patient: str, report_path: str | Path | None = None
) -> dict:
    """Check an anonymized folder against its originals; no key needed.

    Identifying original values are: every value of an attribute whose Basic Profile
    action is not K, every person name and its components, every private value,
    every date, every UID outside the DICOM root, the PatientID. Values the
    originals also hold in attributes kept by design (e.g. Manufacturer) are not
    counted, nor numbers and coded strings too generic to mean anything. Checks:
    (a) no output value (recursively, file meta included) equals or contains an
    identifying value; (b) no identifying string of 4+ characters occurs in the raw
    bytes of an output file outside its pixel data (case-insensitive); (c) pixel data
    and geometry equal per matched file; (d) PatientIdentityRemoved is YES; (e) as
    many outputs as originals, all matched. The report never holds a leaked value.

    Args:
        orig_dir: The original DICOM folder (read only).
        anon_dir: The anonymized folder.
        patient: Pseudonymous patient id (for the report and logs).
        report_path: If given, the report is also written there as JSON.

    Returns:
        Report with keys patient, passed, n_original, n_output,
        n_identifying_values, leaks (file, attribute, kind, source), n_leaks,
        pixel_mismatches, geometry_mismatches, unmatched_outputs, n_missing_outputs.
    """
    orig_dir, anon_dir = Path(orig_dir), Path(anon_dir)
    identifying: dict[str, str] = {}
    times: dict[str, str] = {}
    retained: set[str] = set()
    originals: list[_Instance] = []
    scan = scan_folder(orig_dir)  # the anonymizer's own discovery: the same images, the same skips
    for path in scan.candidates:
        ds = read_dicom(path, patient)
        if not scan.accept(path, ds):
            continue
        for source in (ds.file_meta, ds):
            _collect_identifying(source, identifying, times, retained)
        originals.append(_load_instance(path, ds, path.name, output=False))
    outputs: list[_Instance] = []
    for path in list_files(anon_dir):
        if is_hidden(path, anon_dir):  # Snakemake's .snakemake_timestamp in a directory output
            continue
        ds = read_dicom(path, patient)
        outputs.append(_load_instance(path, ds, path.name, output=True))

    if not any(o.times_modified for o in outputs):
        for text, source in times.items():
            identifying.setdefault(text, source)
    identifying = {t: s for t, s in identifying.items() if t not in retained}

    leaks: set[tuple[str, str, str, str]] = set()
    raw_needles = [
        (t, s)
        for t, s in identifying.items()
        if len(t) >= MIN_RAW_SEARCH_CHARS and (not _NUMERIC_CHARS.match(t) or len(t) >= MIN_RAW_SEARCH_NUMERIC_CHARS)
    ]
    for out in outputs:
        for attr, text, is_uid in out.values:
            if text in identifying:
                leaks.add((out.name, attr, "value_equal", identifying[text]))
            elif not is_uid:
                for ident, source in identifying.items():
                    if ident in text:
                        leaks.add((out.name, attr, "value_contains", source))
                        break
        for ident, source in raw_needles:
            for encoding in ("latin-1", "utf-8"):
                needle = ident.encode(encoding, "ignore")
                if needle and needle in out.header:
                    leaks.add((out.name, "(raw bytes)", "raw_bytes", source))
                    break
        for attr in out.privates:
            leaks.add((out.name, attr, "private_attribute", attr))
        if not out.identity_removed:
            leaks.add((out.name, "PatientIdentityRemoved", "identity_not_removed", "PatientIdentityRemoved"))

    pairs, unmatched = _match(originals, outputs)
    pixel_mismatches = sorted(out.name for out, orig in pairs if out.pixel_hash != orig.pixel_hash)
    geometry_mismatches = [
        {"file": out.name, "attribute": kw}
        for out, orig in sorted(pairs, key=lambda p: p[0].name)
        for kw in sorted(set(out.geometry) | set(orig.geometry))
        if out.geometry.get(kw) != orig.geometry.get(kw)
    ]
    leak_list = [{"file": f, "attribute": a, "kind": k, "source": s} for f, a, k, s in sorted(leaks)]
    n_missing = len(originals) - len(pairs)
    passed = (
        not leak_list
        and not pixel_mismatches
        and not geometry_mismatches
        and not unmatched
        and n_missing == 0
        and len(originals) == len(outputs) > 0
    )
    report = {
        "patient": patient,
        "passed": passed,
        "n_original": len(originals),
        "n_output": len(outputs),
        "n_identifying_values": len(identifying),
        "n_leaks": len(leak_list),
        "leaks": leak_list[:MAX_REPORTED_LEAKS],
        "pixel_mismatches": pixel_mismatches,
        "geometry_mismatches": geometry_mismatches,
        "unmatched_outputs": sorted(o.name for o in unmatched),
        "n_missing_outputs": n_missing,
    }
    level = logging.INFO if passed else logging.ERROR
    log.log(
        level,
        "patient %s: anonymization check %s (%d originals, %d outputs, %d leaks, %d pixel and %d geometry mismatches)",
        patient,
        "passed" if passed else "FAILED",
        len(originals),
        len(outputs),
        len(leak_list),
        len(pixel_mismatches),
        len(geometry_mismatches),
    )
    if report_path is not None:
        write_json(report_path, report)
    return report
