"""The anonymizer's leak oracle and corpus runner, shared by the tests and ``bench/anonymize_corpus.py``.

Two corpora: the real CT under ../shared/data/ct (read in place, nested folders) and every
test file that pydicom ships (``pydicom.data.get_testdata_files()``: odd transfer syntaxes,
non-image objects, deliberately broken files). Each file is read, fake identifiers are
injected (``covidct.demo.identities.inject_identifiers`` with ``fake_identity``), the copy is written to a
folder of its own and that folder goes through ``anonymize_series_dir``, as the workflow's
``anonymize_dicom`` rule runs it but with ``images="all"``: the workflow keeps CT images only, and
this bench measures the de-identification of every kind of image pydicom ships (MR, US, SC, ...).
Then the output's bytes, pixel data excluded, are searched (case-insensitive) for every injected
string and for the original file's PatientName (and its components), PatientID and dates,
wherever they were in the original; and the pixel data must come out byte-identical.

Every file ends in exactly one class:

- ``unreadable``: pydicom itself cannot read the file (not DICOM, or broken), by error type;
- ``non_image``: DICOM that the anonymizer's discovery (``covidct.dicom.files``) skips as no image
  (DICOMDIR, SR, RTSTRUCT, SEG, a data set without pixel data, ...), by design;
- ``not_writable``: the original reads, but pydicom cannot write the copy with the injected
  identifiers (the file's own encoding cannot be written back), with the error type;
- ``refused``: pydicom reads the file but the anonymizer stops with a CovidctError (its reader or its refusal), by
  reason: its reader finds the file truncated (an image without pixel data, a short element), the
  image has BurnedInAnnotation YES, the output cannot be written (no SOP Class UID), ...;
- ``anonymized``: an output was written; it is checked for leaks and for its pixel data."""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files

from covidct.deid.series import anonymize_series_dir
from covidct.demo.identities import fake_identity, inject_identifiers
from covidct.dicom.files import read_dicom, scan_folder
from covidct.errors import CovidctError

#: Fixed key of this benchmark (never a real site's key).
KEY = b"corpus-bench-key-0123456789abcdef"


#: Pseudonymous patient id given to the anonymizer.
PATIENT = "CORPUS01"


#: Shortest original string searched for (shorter ones match by chance).
MIN_CHARS = 4


#: Original dates are 8 digits; shorter digit strings match inside replacement UIDs by chance.
DATE_CHARS = 8


#: Identity values the anonymizer keeps by design under the Modified Dates Option: times.
KEPT_BY_DESIGN = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime")


#: Identity keys that are person names (PN): also searched by component.
PERSON_NAMES = ("PatientName", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName")


#: Deflated Explicit VR Little Endian: the dataset after the file meta is deflated.
DEFLATED = "1.2.840.10008.1.2.1.99"


#: File meta is searched for the transfer syntax in the first bytes only.
MAX_META_BYTES = 1024


_NAME_SPLIT = re.compile(r"[\^=\s]+")


_DATE = re.compile(r"\d{8}")


@dataclass
class CorpusResult:
    """Counts for one corpus; ``leaks`` lists (file, what leaked: the source attribute, never the value)."""

    name: str
    tried: int = 0
    anonymized: int = 0
    non_image: int = 0
    unreadable: Counter = field(default_factory=Counter)
    not_writable: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    leaks: list[tuple[str, str]] = field(default_factory=list)
    pixel_changed: list[str] = field(default_factory=list)
    needles_checked: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "corpus": self.name,
            "tried": self.tried,
            "anonymized": self.anonymized,
            "non_image": self.non_image,
            "unreadable": sum(self.unreadable.values()),
            "unreadable_reasons": dict(self.unreadable),
            "not_writable": sum(self.not_writable.values()),
            "not_writable_reasons": dict(self.not_writable),
            "refused": sum(self.refused.values()),
            "refused_reasons": dict(self.refused),
            "files_with_leaks": len({f for f, _ in self.leaks}),
            "leaks": len(self.leaks),
            "pixel_changed": len(self.pixel_changed),
            "strings_checked": self.needles_checked,
            "seconds": round(self.seconds, 2),
        }


def ct_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (recursively, hidden names skipped), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts))


def pydicom_files() -> list[Path]:
    """Every test data file pydicom ships (its own list: DICOM and some that are not)."""

    return sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())


def _walk_values(ds, out: list[tuple[str, str, str]]) -> None:
    """(keyword, VR, string value) of every public element, recursively into sequences."""
    for elem in ds:
        if elem.tag.is_private:
            continue
        if elem.VR == "SQ":
            for item in elem.value or []:
                _walk_values(item, out)
            continue
        if elem.VR not in ("PN", "LO", "SH", "DA", "DT"):
            continue
        values = (
            elem.value
            if isinstance(elem.value, (list, tuple)) or type(elem.value).__name__ == "MultiValue"
            else [elem.value]
        )
        for v in values:
            if v is not None:
                out.append((elem.keyword or str(elem.tag), elem.VR, str(v)))


def original_needles(ds) -> dict[str, str]:
    """The original's PatientName (whole and its parts), PatientID and every date, anywhere.

    Returns:
        lower-case string -> the attribute it came from.
    """
    values: list[tuple[str, str, str]] = []
    _walk_values(ds, values)
    needles: dict[str, str] = {}
    for keyword, vr, text in values:
        text = text.strip("\x00 ")
        if vr == "PN" and keyword == "PatientName":
            for part in [text] + _NAME_SPLIT.split(text):
                if len(part.strip()) >= MIN_CHARS:
                    needles.setdefault(part.strip().lower(), keyword)
        elif keyword == "PatientID" and len(text) >= MIN_CHARS:
            needles.setdefault(text.lower(), keyword)
        elif vr in ("DA", "DT"):
            for day in _DATE.findall(text.replace(".", ""))[:1]:
                needles.setdefault(day, keyword)
    return needles


def injected_needles(identity: dict[str, str]) -> dict[str, str]:
    """The injected identity strings that must not survive (names also by component)."""
    needles: dict[str, str] = {}
    for keyword, value in identity.items():
        if keyword in KEPT_BY_DESIGN:
            continue
        parts = [value] + (_NAME_SPLIT.split(value) if keyword in PERSON_NAMES else [])
        for part in parts:
            part = part.strip()
            if len(part) >= MIN_CHARS and not (part.isdigit() and len(part) < DATE_CHARS):
                needles.setdefault(part.lower(), keyword)
    return needles


def searchable_bytes(raw: bytes) -> bytes:
    """A DICOM file's bytes as they can be searched: a deflated dataset (transfer syntax
    1.2.840.10008.1.2.1.99) is inflated; anything else is returned as it is."""
    if raw[128:132] != b"DICM" or DEFLATED.encode() not in raw[132:MAX_META_BYTES]:
        return raw
    meta_end = 144 + int.from_bytes(raw[140:144], "little")  # (0002,0000) UL group length, explicit VR LE
    return raw[:meta_end] + zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)


def _without_pixels(raw: bytes, pixels: bytes) -> bytes:
    if not pixels:
        return raw
    start = raw.rfind(pixels)
    return raw if start < 0 else raw[:start] + raw[start + len(pixels) :]


def occurs(needle: str, haystack: bytes) -> bool:
    """Whether ``needle`` occurs in ``haystack`` (already lower-case), case-insensitive.

    Plain digit strings (dates) count only where no digit or dot precedes them: a leaked date
    starts a value (after a length field or a backslash), while the same 8 digits inside a
    39-digit replacement UID are chance. Strings with a dot (UIDs, times with a fraction) are
    long enough not to occur by chance, and a length byte before them may be 0x30-0x39.
    """
    low = needle.lower()
    for encoded in {low.encode("latin-1", "ignore"), low.encode("utf-8")}:
        if not encoded:
            continue
        if encoded.isdigit():
            if re.search(rb"(?<![0-9.])" + re.escape(encoded), haystack):
                return True
        elif encoded in haystack:
            return True
    return False


def find_leaks(raw: bytes, pixels: bytes, needles: dict[str, str]) -> list[str]:
    """Sources of the needles found in ``raw`` (a file's bytes) outside its pixel data, case-insensitive."""
    header = _without_pixels(searchable_bytes(raw), pixels).lower()
    return [source for needle, source in needles.items() if occurs(needle, header)]


def _is_image(path: Path, ds, work: Path) -> bool:
    """Whether the anonymizer's discovery takes ``path`` for an image (of any kind: the bench runs
    ``anonymize_series_dir`` with ``images="all"``), the file alone in a folder."""

    probe = work / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    probe.mkdir(parents=True)
    shutil.copy(path, probe / "input.dcm")
    scan = scan_folder(probe, ct_only=False)
    return bool(scan.candidates) and scan.accept(scan.candidates[0], ds)


def anonymize_one(
    path: Path, work: Path, result: CorpusResult, seed: int, dates: str = "shift", verbose: bool = False
) -> None:
    """Inject, anonymize and check one file; count it in ``result``."""

    result.tried += 1
    name = path.name
    try:
        ds = read_dicom(path)
    except CovidctError as exc:
        try:  # the anonymizer's reader is stricter than pydicom's: whose refusal is it?
            pydicom.dcmread(path)
        except Exception as read_exc:
            reason = type(read_exc).__name__
            try:
                if pydicom.dcmread(path, force=True).get("SOPClassUID"):
                    reason += " (no preamble: a dataset without pixel data when forced)"
            except Exception:
                pass
            result.unreadable[reason] += 1
        else:
            result.refused[exc.message] += 1
            if verbose:
                print(f"  refused {name}: {exc.message}")
        return
    if not _is_image(path, ds, work):
        result.non_image += 1
        return
    needles = original_needles(ds)
    identity = fake_identity(seed)
    injected = injected_needles(identity)
    needles.update(injected)
    src = work / "in"
    out = work / "out"
    shutil.rmtree(work, ignore_errors=True)
    src.mkdir(parents=True)
    inject_identifiers(ds, identity)
    pixels = bytes(ds.PixelData)
    try:
        buf = io.BytesIO()
        ds.save_as(buf)
    except Exception as exc:  # pydicom cannot write some odd inputs back: not the anonymizer's doing
        result.not_writable[type(exc).__name__] += 1
        return
    (src / "input.dcm").write_bytes(buf.getvalue())
    # the check below is only worth something if the identifiers really are in the input
    missing = set(injected) - set(find_leaks(buf.getvalue(), pixels, {n: n for n in injected}))
    if missing:
        raise RuntimeError(f"{name}: {len(missing)} injected identifiers not found in the input copy")
    try:
        anonymize_series_dir(src, out, KEY, PATIENT, dates=dates, images="all")
    except CovidctError as exc:
        result.refused[exc.message] += 1
        if verbose:
            print(f"  refused {name}: {exc.message}")
        return
    (output,) = list(out.iterdir())
    raw = output.read_bytes()
    if bytes(pydicom.dcmread(output).PixelData) != pixels:
        result.pixel_changed.append(name)
    result.anonymized += 1
    result.needles_checked += len(needles)
    for source in find_leaks(raw, pixels, needles):
        result.leaks.append((name, source))
        if verbose:
            print(f"  LEAK {name}: {source}")


def run_corpus(name: str, files: list[Path], dates: str = "shift", verbose: bool = False) -> CorpusResult:
    """Anonymize each file of a corpus on its own; returns the counts."""
    result = CorpusResult(name)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="covidct-corpus-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom on the odd values of its own test files
        for i, path in enumerate(files):
            anonymize_one(path, Path(tmp) / "work", result, seed=1000 + i, dates=dates, verbose=verbose)
    result.seconds = time.perf_counter() - t0
    return result
