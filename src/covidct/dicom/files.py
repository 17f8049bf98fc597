"""What is in a patient's folder: CT images to read, and every other file, skipped and counted.

Archive, PACS and CD exports hold much besides the CT slices: DICOMDIR index files, viewer
executables and ``autorun.inf``, thumbnails, PDFs, text reports, NIfTI files left by an earlier
user, structured reports, presentation states, dose screens (secondary capture), RTSTRUCT and SEG
objects. This module owns the one walk of a folder that the anonymizer (on the raw folder), its
verification and the HU step (on the anonymized folder) share:

1. every regular file under the folder, recursively, in sorted order (``list_files``); a file is
   named by its rank in that order, never by its name (raw names may carry identifiers);
2. hidden files (a name or a folder starting with ".": ``.DS_Store``, ``._IM0001``) are skipped;
3. a file without the DICOM marker ("DICM" at byte 128) is sniffed by its first bytes: a known
   format (PNG, JPEG, NIfTI, PDF, ZIP, executables, text, ...) is skipped as "not DICOM: <kind>";
   a file that starts like a bare DICOM data set (group 0002 or 0008, no preamble) is read as one;
4. a DICOM file is classified by its SOP Class (read from its first elements only): DICOMDIR,
   non-image objects (SR, PR, KO, RTSTRUCT, SEG, RT plans and doses, raw data, encapsulated
   documents, ...) and images that are not CT (secondary capture dose screens, PET, MR, ...) are
   skipped by category; CT Image Storage, Enhanced CT and Legacy Converted Enhanced CT, and files
   whose SOP Class cannot be read from their header, are candidates;
5. the caller reads each candidate with its own reader (a broken file is its error, as before) and
   gives the data set to ``FolderScan.accept``, which skips a data set without pixel data of no
   image class (a report without SOP Class) or an image of another modality.

Every skip is recorded by category with its rank (``FolderScan.summary``) and logged.

``read_dicom`` reads a candidate whole and strictly (a file that claims to be DICOM but is not, or is
truncated, is a ``DicomInputError``): the anonymizer and its verification read with it.
"""

from __future__ import annotations

import io
import logging
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from covidct.errors import DicomInputError

log = logging.getLogger(__name__)

#: Where the DICOM marker of a Part 10 file is, and the marker.
DICM_OFFSET = 128
DICM_MAGIC = b"DICM"
#: Bytes read from each file to recognise its format.
SNIFF_BYTES = 4096
#: SOP Classes read as CT images.
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
CT_SOP_CLASSES = frozenset({CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE})
#: Media Storage Directory Storage: a DICOMDIR.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: Modalities a CT image may carry (empty: a minimal header without Modality).
CT_MODALITIES = frozenset({"CT", ""})
#: Groups read to classify a DICOM file: file meta (0002) and the SOP Common / General Series
#: elements of group 0008 (SOP Class UID, Modality); reading stops at the first later group.
CLASSIFY_LAST_GROUP = 0x0008
#: NIfTI-1 header size and magic offsets (single file ``n+1``, pair ``ni1``); NIfTI-2 magic.
NIFTI1_HEADER_BYTES = 348
NIFTI1_MAGIC_OFFSET = 344
NIFTI2_MAGIC_OFFSET = 4

HIDDEN = "hidden file"
NOT_DICOM = "not DICOM: "
NON_CT_IMAGE = "DICOM image, not CT: "
DICOMDIR = "DICOMDIR (DICOM index file)"

#: Leading bytes of formats found in exports, and their category (checked in this order).
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 image"),
    (b"%PDF-", "PDF document"),
    (b"PK\x03\x04", "ZIP archive (or Office document)"),
    (b"PK\x05\x06", "ZIP archive (or Office document)"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"MZ", "executable (Windows)"),
    (b"\x7fELF", "executable (ELF)"),
    (b"\xfe\xed\xfa\xce", "executable (Mach-O)"),
    (b"\xfe\xed\xfa\xcf", "executable (Mach-O)"),
    (b"\xce\xfa\xed\xfe", "executable (Mach-O)"),
    (b"\xcf\xfa\xed\xfe", "executable (Mach-O)"),
    (b"\xca\xfe\xba\xbe", "executable (Mach-O universal)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE compound file (Thumbs.db, Office, MSI)"),
    (b"\x00\x00\x00\x01Bud1", "macOS folder settings (.DS_Store)"),
    (b"ITSF", "Windows help file"),
    (b"L\x00\x00\x00\x01\x14\x02\x00", "Windows shortcut"),
)
GZIP_MAGIC = b"\x1f\x8b"
#: Text files: no NUL byte and at least this share of printable characters in the first bytes.
TEXT_MIN_PRINTABLE = 0.95

#: Non-image SOP Classes by a word of their name (pydicom's UID dictionary), checked in this order.
NON_IMAGE_FAMILIES: tuple[tuple[str, str], ...] = (
    ("SR Storage", "DICOM structured report (SR)"),
    ("Presentation State", "DICOM presentation state (PR)"),
    ("Key Object Selection", "DICOM key object selection (KO)"),
    ("RT Structure Set", "DICOM RT structure set (RTSTRUCT)"),
    ("Segmentation", "DICOM segmentation (SEG)"),
    ("Raw Data", "DICOM raw data"),
    ("Encapsulated PDF", "DICOM encapsulated PDF"),
    ("Encapsulated", "DICOM encapsulated document (CDA, STL, OBJ, MTL)"),
    ("RT Dose", "DICOM RT dose"),
    ("RT ", "DICOM RT plan or treatment record"),
    ("Registration", "DICOM spatial registration"),
    ("Waveform", "DICOM waveform"),
    ("Procedure Protocol", "DICOM procedure protocol"),
)


def list_files(folder: str | Path) -> list[Path]:
    """Every regular file under ``folder`` (recursively, hidden ones too), sorted.

    A file's rank (1-based position in this list) is how messages, logs and JSON name it.
    """
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def is_hidden(path: Path, folder: Path) -> bool:
    """Whether ``path`` or one of its folders below ``folder`` starts with "."."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _printable_share(head: bytes) -> float:
    if not head:
        return 0.0
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the sample
        if exc.start < len(head) - 4:
            text = head.decode("latin-1")
        else:
            text = head[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
    return printable / max(len(text), 1)


def _nifti(head: bytes) -> bool:
    if len(head) >= NIFTI1_HEADER_BYTES and head[NIFTI1_MAGIC_OFFSET : NIFTI1_MAGIC_OFFSET + 4] in (
        b"n+1\x00",
        b"ni1\x00",
    ):
        return True
    return head[NIFTI2_MAGIC_OFFSET : NIFTI2_MAGIC_OFFSET + 4] in (b"n+2\x00", b"ni2\x00")


def _bare_dicom(head: bytes) -> bool:
    """Whether ``head`` starts like a DICOM data set without preamble: a first element of group
    0002 or 0008 (little endian), explicit VR (two letters) or implicit VR (a 4-byte length)."""
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    if group not in (0x0002, 0x0008):
        return False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    implicit_length = int.from_bytes(head[4:8], "little")
    return explicit or implicit_length < 1 << 16


def sniff(head: bytes) -> str | None:
    """The format of a file without the DICOM marker, from its first bytes.

    Args:
        head: The first ``SNIFF_BYTES`` bytes of the file (or all of a shorter file).

    Returns:
        A category ("PNG image", "NIfTI image (gzip)", "text", ...) for a file that is not
        DICOM, or None when the file may be a DICOM data set without preamble.

    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8)), sniff(b"[autorun]\\r\\nopen=viewer.exe\\r\\n"), sniff(b"")
    ('PNG image', 'text', 'empty file')
    """
    if not head:
        return "empty file"
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(GZIP_MAGIC):
        try:
            inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, NIFTI1_HEADER_BYTES)
        except zlib.error:
            inner = b""
        return "NIfTI image (gzip)" if _nifti(inner) else "gzip archive"
    if _nifti(head):
        return "NIfTI image"
    if _bare_dicom(head):
        return None
    if b"\x00" not in head and _printable_share(head) >= TEXT_MIN_PRINTABLE:
        stripped = head.lstrip().lower()
        if stripped.startswith((b"<?xml", b"<!doctype html", b"<html")):
            return "XML or HTML"
        return "text"
    return "other binary"


def sop_class_category(sop_class: str) -> str | None:
    """The skip category of a SOP Class, or None for a CT image class.

    >>> sop_class_category("1.2.840.10008.5.1.4.1.1.2.1") is None
    True
    >>> sop_class_category("1.2.840.10008.5.1.4.1.1.481.3"), sop_class_category("1.2.840.10008.5.1.4.1.1.7")
    ('DICOM RT structure set (RTSTRUCT)', 'DICOM image, not CT: Secondary Capture Image Storage')
    """

    if sop_class in CT_SOP_CLASSES:
        return None
    if sop_class == DICOMDIR_SOP_CLASS:
        return DICOMDIR
    name = UID(sop_class).name
    if name == sop_class:  # not in the dictionary: a private or retired class
        return "DICOM object of an unknown SOP Class"
    for word, category in NON_IMAGE_FAMILIES:
        if word in name:
            return category
    if "Image Storage" in name:
        return NON_CT_IMAGE + name
    return f"DICOM non-image object ({name})"


@dataclass
class FolderScan:
    """The files of one folder: candidates to read as CT images, and what was skipped.

    Attributes:
        folder: The folder scanned.
        files: Every regular file under it, sorted (ranks are positions here, from 1).
        candidates: DICOM files that may be CT images, in sorted order.
        skipped: Category -> ranks of the files skipped in it.
        n_images: Candidates the caller accepted as CT images (``accept``).
        ct_only: Skip images that are not CT (the workflow); False keeps every image SOP Class
            (``bench/anonymize_corpus.py`` runs the anonymizer over every kind of image).
    """

    folder: Path
    files: list[Path]
    ct_only: bool = True
    candidates: list[Path] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    n_images: int = 0
    _rank: dict[Path, int] = field(default_factory=dict, repr=False)

    def rank(self, path: Path) -> int:
        """1-based position of ``path`` in the folder's sorted listing."""
        if not self._rank:
            self._rank = {p: i + 1 for i, p in enumerate(self.files)}
        return self._rank[path]

    def skip(self, path: Path, category: str) -> None:
        """Record ``path`` as skipped in ``category``."""
        self.skipped.setdefault(category, []).append(self.rank(path))

    def accept(self, path: Path, ds) -> bool:
        """Decide on a candidate once the caller has read it whole.

        A CT image is accepted (and counted); a data set without pixel data and of no image
        SOP Class, or an image of a modality other than CT, is skipped. A CT-class image
        without pixel data is accepted: the caller refuses it as truncated, with its message.

        Args:
            path: The candidate.
            ds: Its pydicom data set.

        Returns:
            Whether the caller should use it.
        """
        meta = getattr(ds, "file_meta", None)
        sop_class = str(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID", "") if meta else "") or "")
        if sop_class:
            category = sop_class_category(sop_class)
            if category is not None and (self.ct_only or not category.startswith(NON_CT_IMAGE)):
                self.skip(path, category)
                return False
        if "PixelData" not in ds and not (sop_class in CT_SOP_CLASSES or (not self.ct_only and sop_class)):
            self.skip(path, "DICOM non-image object (no SOP Class, no pixel data)")
            return False
        modality = str(ds.get("Modality", "") or "").strip().upper()
        if self.ct_only and modality not in CT_MODALITIES:
            self.skip(path, f"{NON_CT_IMAGE}modality {modality}")
            return False
        self.n_images += 1
        return True

    @property
    def n_skipped(self) -> int:
        return sum(len(ranks) for ranks in self.skipped.values())

    def summary(self) -> dict:
        """JSON-ready record: counts and ranks by category (no file names)."""
        return {
            "n_files": len(self.files),
            "n_images": self.n_images,
            "n_skipped": self.n_skipped,
            "skipped": {
                cat: {"count": len(ranks), "files": sorted(ranks)} for cat, ranks in sorted(self.skipped.items())
            },
        }

    def describe_skips(self) -> str:
        """One line: each category with its count and ranks ("text x2 (files 3, 7-9)")."""
        return describe_skips(self.summary())

    def log_skips(self, patient: str | None) -> None:
        """Log what was skipped (one line), or that nothing was."""
        if self.skipped:
            log.info(
                "patient %s: skipped %d of %d files: %s",
                patient,
                self.n_skipped,
                len(self.files),
                self.describe_skips(),
            )


def _ranges(ranks: list[int]) -> str:
    """Ranks as compact ranges.

    >>> _ranges([1, 2, 3, 7, 9, 10])
    '1-3, 7, 9-10'
    """
    out: list[str] = []
    start = prev = None
    for r in sorted(ranks):
        if prev is not None and r == prev + 1:
            prev = r
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = r
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(out)


def describe_skips(summary: dict) -> str:
    """One line from a ``FolderScan.summary()``: categories with counts and file ranks."""
    parts = [
        f"{cat} x{entry['count']} (file{'s' if entry['count'] > 1 else ''} {_ranges(entry['files'])})"
        for cat, entry in summary["skipped"].items()
    ]
    return "; ".join(parts) if parts else "nothing"


def _classify_dicom(path: Path, force: bool) -> str | None:
    """Skip category of a DICOM file from its first elements, or None for a candidate (a CT
    image class, or no SOP Class).

    Raises:
        Exception: whatever pydicom raises on a header it cannot read.
    """

    def after_classifying_groups(tag, vr, length) -> bool:
        return tag.group > CLASSIFY_LAST_GROUP

    with open(path, "rb") as fh:
        ds = read_partial(fh, stop_when=after_classifying_groups, force=force)
    meta = getattr(ds, "file_meta", None)
    media_class = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    sop_class = str(ds.get("SOPClassUID", "") or "") or media_class
    if media_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return DICOMDIR
    if not sop_class:
        return None
    return sop_class_category(sop_class)


def transfer_syntax_of(ds):
    """The transfer syntax of a data set: its file meta's, else (a bare data set without file meta)
    the encoding pydicom read it with.

    Returns:
        A ``pydicom.uid.UID``.
    """

    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(str(syntax))
    implicit, little = getattr(ds, "original_encoding", (False, True))
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def scan_folder(folder: str | Path, ct_only: bool = True) -> FolderScan:
    """List a folder and sort its files into CT-image candidates and skips (see the module).

    Args:
        folder: The patient's folder (must exist).
        ct_only: Skip images that are not CT (see ``FolderScan``).

    Returns:
        The scan; the caller reads ``candidates`` and calls ``accept`` on each.
    """
    folder = Path(folder)
    scan = FolderScan(folder, list_files(folder), ct_only=ct_only)
    for path in scan.files:
        if is_hidden(path, folder):
            scan.skip(path, HIDDEN)
            continue
        with open(path, "rb") as fh:
            head = fh.read(max(SNIFF_BYTES, DICM_OFFSET + len(DICM_MAGIC)))
        part10 = head[DICM_OFFSET : DICM_OFFSET + len(DICM_MAGIC)] == DICM_MAGIC
        if not part10:
            kind = sniff(head[:SNIFF_BYTES])
            if kind is not None:
                scan.skip(path, NOT_DICOM + kind)
                continue
        try:
            category = _classify_dicom(path, force=not part10)
        except Exception:  # pydicom raises many kinds on broken input
            if not part10:  # it only looked like a bare data set
                scan.skip(path, NOT_DICOM + "other binary")
                continue
            category = None  # claims to be DICOM: the caller's full read says what is broken
        if category is not None and (ct_only or not category.startswith(NON_CT_IMAGE)):
            scan.skip(path, category)
        else:
            scan.candidates.append(path)
    return scan


# ------------------------------------------------------------------ reading a whole file

#: Uncompressed YBR_FULL_422 stores two luminance values per pair of chroma values
#: (PS3.3 C.7.6.3.1.2): 2 samples per pixel on average, not SamplesPerPixel (3).
YBR_FULL_422 = "YBR_FULL_422"


YBR_FULL_422_SAMPLES = 2


#: pydicom warnings that mean the file ended early.
_TRUNCATION_WARNINGS = ("end of file", "unexpected end", "delimiter")


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
        DicomInputError: Not a DICOM file, or a corrupt / truncated one.
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
                raise DicomInputError("not a DICOM file", patient, path) from None
        except Exception as exc:  # pydicom raises many types on broken input
            raise DicomInputError(
                f"corrupt or truncated DICOM file ({type(exc).__name__} while reading)", patient, path
            ) from None
    ds.filename = str(path)
    problem = _truncation_problem(ds, caught)
    if problem:
        raise DicomInputError(f"corrupt or truncated DICOM file: {problem}", patient, path)
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
