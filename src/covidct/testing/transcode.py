"""Transcoding of real CT slices into every transfer syntax a CT archive uses (pydicom's encoders
for RLE, JPEG 2000 and deflate, GDCM's for the JPEG family): the corpus of ``tests/unit/dicom``
and ``bench/decode_syntaxes.py``.

The two lossy JPEG processes need fewer bits than these slices store: JPEG baseline takes 8-bit
samples (stored = (HU + 1024) / 16, RescaleSlope 16) and JPEG extended 12-bit samples (stored =
HU + 1024, clipped to 0..4095), as an archive that compresses with loss stores them."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import UID

#: JPEG 2000 lossy: compression ratio asked of the encoder.
J2K_LOSSY_RATIO = 10


#: JPEG-LS near-lossless: largest error per sample.
JPEG_LS_NEAR = 2


#: JPEG baseline / extended quality (GDCM's IJG scale, 1-100).
JPEG_QUALITY = 90


#: 8-bit samples for JPEG baseline: stored = (HU - intercept) / slope.
BASELINE_SLOPE = 16


HU_FLOOR = -1024


EXTENDED_MAX = 4095


@dataclass(frozen=True)
class Syntax:
    """One transfer syntax of the corpus: a short name, its UID and whether it keeps every value."""

    name: str
    uid: str
    lossless: bool


SYNTAXES = (
    Syntax("uncompressed", "1.2.840.10008.1.2.1", True),
    Syntax("deflated", "1.2.840.10008.1.2.1.99", True),
    Syntax("rle", "1.2.840.10008.1.2.5", True),
    Syntax("jpeg_lossless_p14", "1.2.840.10008.1.2.4.57", True),
    Syntax("jpeg_lossless_sv1", "1.2.840.10008.1.2.4.70", True),
    Syntax("jpeg_ls_lossless", "1.2.840.10008.1.2.4.80", True),
    Syntax("jpeg_ls_near_lossless", "1.2.840.10008.1.2.4.81", False),
    Syntax("jpeg2000_lossless", "1.2.840.10008.1.2.4.90", True),
    Syntax("jpeg2000_lossy", "1.2.840.10008.1.2.4.91", False),
    Syntax("jpeg_baseline_8bit", "1.2.840.10008.1.2.4.50", False),
    Syntax("jpeg_extended_12bit", "1.2.840.10008.1.2.4.51", False),
)


BY_NAME = {s.name: s for s in SYNTAXES}


def _requantise(ds, bits: int) -> None:
    """Store the slice with ``bits`` unsigned bits, as a lossy archive must (8: baseline, 12: extended)."""
    hu = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(
        ds.get("RescaleIntercept", 0) or 0
    )
    if bits == 8:
        stored = np.clip(np.rint((hu - HU_FLOOR) / BASELINE_SLOPE), 0, 255).astype(np.uint8)
        ds.RescaleSlope, ds.BitsAllocated = BASELINE_SLOPE, 8
    else:
        stored = np.clip(np.rint(hu - HU_FLOOR), 0, EXTENDED_MAX).astype(np.uint16)
        ds.RescaleSlope, ds.BitsAllocated = 1, 16
    ds.RescaleIntercept = HU_FLOOR
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.pop("PixelPaddingValue", None)
    ds.pop("SmallestImagePixelValue", None)
    ds.pop("LargestImagePixelValue", None)
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"


def _gdcm_change(ds, ts_name: str, codec=None) -> bytes:
    """Encapsulated pixel data of ``ds`` encoded by GDCM into transfer syntax ``ts_name``."""
    import gdcm

    with tempfile.TemporaryDirectory(prefix="covidct-transcode-") as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        plain = copy.deepcopy(ds)
        plain.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        plain.save_as(src, enforce_file_format=True)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        if not reader.Read():
            raise RuntimeError("GDCM cannot read the slice")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, ts_name)))
        if codec is not None:
            change.SetUserCodec(codec)
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise RuntimeError(f"GDCM cannot encode {ts_name}")
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise RuntimeError("GDCM cannot write the slice")
        return pydicom.dcmread(dst).PixelData


def _gdcm_jpeg12(ds) -> bytes:
    """A 12-bit JPEG extended (SOF1, precision 12) stream of a 12-bit slice, encapsulated.

    GDCM's transfer-syntax change picks its 16-bit JPEG codec for 16-bit containers (a precision
    DICOM does not allow for this syntax); its 12-bit codec, asked directly, writes a valid one.
    """
    import gdcm

    codec = gdcm.JPEGCodec()
    codec.SetLossless(False)
    codec.SetQuality(JPEG_QUALITY)
    codec.SetDimensions((int(ds.Columns), int(ds.Rows), 1))
    codec.SetNumberOfDimensions(2)
    codec.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.MONOCHROME2))
    codec.SetPixelFormat(gdcm.PixelFormat(1, 12, 12, 11, 0))
    source = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    source.SetByteStringValue(bytes(ds.PixelData))
    target = gdcm.DataElement()
    if not codec.Code(source, target):
        raise RuntimeError("GDCM cannot encode a 12-bit JPEG")
    fragment = target.GetSequenceOfFragments().GetFragment(0).GetByteValue()
    stream = fragment.GetBuffer().encode("utf-8", "surrogateescape")[: int(str(fragment.GetLength()))]
    return encapsulate([stream])


def transcode(ds, syntax: Syntax):
    """A copy of single-frame slice ``ds`` with its pixel data encoded in ``syntax``.

    Lossless syntaxes keep every stored value; lossy ones are written as a real encoder would,
    except that LossyImageCompression is left unset (the HU step must tell loss from the code
    stream itself).
    """
    import gdcm

    out = copy.deepcopy(ds)
    out.file_meta = copy.deepcopy(ds.file_meta)
    uid = UID(syntax.uid)
    if syntax.name in ("uncompressed", "deflated"):
        out.file_meta.TransferSyntaxUID = uid
        return out
    if syntax.name == "rle" or syntax.name.startswith("jpeg2000"):
        options = {"j2k_cr": [J2K_LOSSY_RATIO]} if syntax.name == "jpeg2000_lossy" else {}
        out.compress(uid, **options)
        return out
    if syntax.name == "jpeg_baseline_8bit":
        _requantise(out, 8)
        codec = gdcm.JPEGCodec()
        codec.SetLossless(False)
        codec.SetQuality(JPEG_QUALITY)
        data = _gdcm_change(out, "JPEGBaselineProcess1", codec)
    elif syntax.name == "jpeg_extended_12bit":
        _requantise(out, 12)
        data = _gdcm_jpeg12(out)
    elif syntax.name == "jpeg_ls_near_lossless":
        codec = gdcm.JPEGLSCodec()
        codec.SetLossless(False)
        codec.SetLossyError(JPEG_LS_NEAR)
        data = _gdcm_change(out, "JPEGLSNearLossless", codec)
    else:
        ts_name = {
            "jpeg_lossless_p14": "JPEGLosslessProcess14",
            "jpeg_lossless_sv1": "JPEGLosslessProcess14_1",
            "jpeg_ls_lossless": "JPEGLSLossless",
        }[syntax.name]
        data = _gdcm_change(out, ts_name)
    out.PixelData = data
    out["PixelData"].VR = "OB"
    out["PixelData"].is_undefined_length = True
    out.file_meta.TransferSyntaxUID = uid
    return out


def write_corpus(slices: list[Path], root: Path, syntaxes=SYNTAXES) -> dict[str, Path]:
    """Each syntax's folder under ``root`` with ``slices`` transcoded into it; returns name -> folder."""

    folders = {}
    for syntax in syntaxes:
        folder = root / syntax.name
        folder.mkdir(parents=True, exist_ok=True)
        for path in slices:
            transcode(pydicom.dcmread(path), syntax).save_as(folder / path.name, enforce_file_format=True)
        folders[syntax.name] = folder
    return folders
