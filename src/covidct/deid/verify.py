"""Verification of an anonymized folder against the original: no original identifier left in any
value or in the raw bytes, pixel data byte-identical, geometry identical, UIDs consistently remapped."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from covidct import forked
from covidct.deid.dataset import DICOM_ROOT_UID, DUMMY_TEXT
from covidct.deid.profile import (
    action_for_tag,
)
from covidct.deid.series import MIN_IDENTIFYING_CHARS, NAME_SPLIT
from covidct.dicom.files import is_hidden, list_files, read_dicom, scan_folder, transfer_syntax_of
from covidct.errors import AnonymizationError
from covidct.io import write_json

log = logging.getLogger(__name__)


PIXEL_DATA_TAG = 0x7FE00010


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
FRAME_GEOMETRY_SEQUENCES = (
    "PlanePositionSequence",
    "PlaneOrientationSequence",
    "PixelMeasuresSequence",
    "PixelValueTransformationSequence",
    "CTImageFrameTypeSequence",
)


#: Deflated Explicit VR Little Endian, and how far into a file its UID is searched (the file meta).
DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"


DEFLATE_META_SEARCH_BYTES = 1024


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
            strings = strings + [c for s in strings for c in NAME_SPLIT.split(s) if c]
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


def frame_geometry(ds: Dataset) -> str | None:
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
    frames = frame_geometry(ds)
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


def _find_leaks(outputs: list[_Instance], identifying: dict[str, str]) -> set[tuple[str, str, str, str]]:
    """(file, attribute, kind, source) of every identifying value found in ``outputs``: equal or
    contained values, raw header bytes, private attributes, PatientIdentityRemoved not YES."""
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
    return leaks


def _original_identifiers(orig_dir: Path, patient: str) -> tuple[dict[str, str], dict[str, str], set[str], list]:
    """What the original folder holds: identifying values, times, values retained by design, and its
    images (``_Instance``), read with the anonymizer's own discovery."""
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
    return identifying, times, retained, originals


def _load_outputs(anon_dir: Path, patient: str) -> list[_Instance]:
    """The anonymized folder's images (``_Instance`` with their header values)."""
    outputs = []
    for path in list_files(anon_dir):
        if is_hidden(path, anon_dir):  # Snakemake's .snakemake_timestamp in a directory output
            continue
        outputs.append(_load_instance(path, read_dicom(path, patient), path.name, output=True))
    return outputs


def _read_both(orig_dir: Path, anon_dir: Path, patient: str, workers: int):
    """``_original_identifiers`` of the original folder and ``_load_outputs`` of the anonymized one; with
    ``workers`` > 1 (and ``fork``) the original folder is read in a child process meanwhile. Each side is
    read exactly as alone; an error of either is raised here."""
    if workers < 2 or not forked.available():
        return _original_identifiers(orig_dir, patient), _load_outputs(anon_dir, patient)
    originals = forked.start(_original_identifiers, orig_dir, patient)
    # the original folder's error comes first, as when one process reads both
    with forked.running(originals, patient, ahead=True):
        outputs = _load_outputs(anon_dir, patient)
    return originals.result(patient), outputs


def verify_anonymization(
    orig_dir: Path, anon_dir: Path, patient: str, report_path: str | Path | None = None, workers: int = 1
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
        workers: With 2 or more, the two folders are read at once (two processes).

    Returns:
        Report with keys patient, passed, n_original, n_output,
        n_identifying_values, leaks (file, attribute, kind, source), n_leaks,
        pixel_mismatches, geometry_mismatches, unmatched_outputs, n_missing_outputs.
    """
    orig_dir, anon_dir = Path(orig_dir), Path(anon_dir)
    (identifying, times, retained, originals), outputs = _read_both(orig_dir, anon_dir, patient, workers)

    if not any(o.times_modified for o in outputs):
        for text, source in times.items():
            identifying.setdefault(text, source)
    identifying = {t: s for t, s in identifying.items() if t not in retained}

    leaks = _find_leaks(outputs, identifying)

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


#: Attributes of a derived object (SEG, SR) that point at instances, series, studies or frames of
#: reference: each value must be one of the anonymized series' UIDs or a derived object's own.
REFERENCE_UID_KEYWORDS = frozenset(
    {
        "ReferencedSOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "ReferencedFrameOfReferenceUID",
    }
)


#: Patient and study values a derived object must share with the anonymized series.
SHARED_KEYWORDS = ("PatientID", "PatientName", "StudyInstanceUID", "StudyID", "AccessionNumber")


def verify_derived(orig_dir: Path, anon_dir: Path, derived: list[Path], patient: str) -> dict:
    """Check objects derived from an anonymized series (covidct's SEG and SR) for identifiers and for
    UIDs consistent with that series; no key needed.

    Checks, per derived file: (a) no original identifying value, in values or raw header bytes, no
    private attribute, PatientIdentityRemoved YES (the checks of ``verify_anonymization``); (b)
    PatientID, PatientName, StudyInstanceUID, StudyID and AccessionNumber equal the anonymized
    series'; (c) every UID that references an instance, series, study or frame of reference
    (``REFERENCE_UID_KEYWORDS``, at any depth) is one of the anonymized series' UIDs or a derived
    object's own SOP Instance / Series UID.

    Args:
        orig_dir: The original (raw) DICOM folder, only read.
        anon_dir: The anonymized folder the objects were built from.
        derived: The derived files.
        patient: Pseudonymous patient id (for the report and logs).

    Returns:
        Report with keys patient, passed, n_derived, n_leaks, leaks, mismatches (file, attribute)
        and unknown_references (file, attribute): names and places, never a value.
    """
    import pydicom

    orig_dir, anon_dir = Path(orig_dir), Path(anon_dir)
    identifying, times, retained, _ = _original_identifiers(orig_dir, patient)
    known_uids: set[str] = set()
    shared: dict[str, set[str]] = {kw: set() for kw in SHARED_KEYWORDS}
    for path in list_files(anon_dir):
        if is_hidden(path, anon_dir):
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
            known_uids.add(str(ds.get(kw, "")))
        for kw in SHARED_KEYWORDS:
            shared[kw].add(str(ds.get(kw, "") or ""))
    datasets = [(Path(p), read_dicom(Path(p), patient)) for p in derived]
    for _, ds in datasets:
        known_uids |= {str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)}
    outputs = [_load_instance(path, ds, path.name, output=True) for path, ds in datasets]
    if not any(o.times_modified for o in outputs):
        for text, source in times.items():
            identifying.setdefault(text, source)
    identifying = {t: s for t, s in identifying.items() if t not in retained}
    leaks = sorted(_find_leaks(outputs, identifying))
    mismatches, unknown = [], []
    for path, ds in datasets:
        for kw in SHARED_KEYWORDS:
            if str(ds.get(kw, "") or "") not in shared[kw] or len(shared[kw]) != 1:
                mismatches.append({"file": path.name, "attribute": kw})
        for attr, elem in _walk(ds):
            if elem.keyword in REFERENCE_UID_KEYWORDS:
                for value in _strings(elem):
                    if value not in known_uids:
                        unknown.append({"file": path.name, "attribute": attr})
    leak_list = [{"file": f, "attribute": a, "kind": k, "source": s} for f, a, k, s in leaks]
    report = {
        "patient": patient,
        "passed": not leak_list and not mismatches and not unknown and bool(datasets),
        "n_derived": len(datasets),
        "n_leaks": len(leak_list),
        "leaks": leak_list[:MAX_REPORTED_LEAKS],
        "mismatches": mismatches,
        "unknown_references": unknown[:MAX_REPORTED_LEAKS],
    }
    log.log(
        logging.INFO if report["passed"] else logging.ERROR,
        "patient %s: derived objects check %s (%d files, %d leaks, %d mismatches, %d unknown references)",
        patient,
        "passed" if report["passed"] else "FAILED",
        len(datasets),
        len(leak_list),
        len(mismatches),
        len(unknown),
    )
    return report


def require_verified(orig_dir: Path, anon_dir: Path, patient: str, workers: int = 1) -> dict:
    """``verify_anonymization``'s report when it passed (``workers`` as there).

    Raises:
        AnonymizationError: it failed; the failed report (keywords and places, never a value) goes to
            the log.
    """
    report = verify_anonymization(orig_dir, anon_dir, patient, workers=workers)
    if not report["passed"]:
        log.error("patient %s: failed verification report:\n%s", patient, json.dumps(report, indent=1, default=str))
        raise AnonymizationError(
            f"anonymization verification failed: {len(report.get('leaks', []))} leak(s), "
            f"{report.get('pixel_mismatches', 0)} pixel and {report.get('geometry_mismatches', 0)} geometry "
            f"mismatch(es); the report is in this job's log",
            patient,
            anon_dir,
        )
    return report
