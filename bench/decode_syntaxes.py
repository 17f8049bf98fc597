"""Decoding time per slice for every transfer syntax a CT archive uses, against uncompressed.

Real 512x512 slices (../shared/data/ct: lung_pet_ct_dx_A0002 B40f, uint16 with 12 bits stored;
nsclc_radiomics_LUNG1-003, int16 with 16 bits stored) are transcoded into each syntax of
``SYNTAXES`` with ``transcode`` (pydicom's encoders for RLE, JPEG 2000 and deflate, GDCM's for the
JPEG family), written as files, found and read by the HU step's own functions
(``covidct.dicom.series.scan_slice_infos``), and decoded slice by slice with ``covidct.dicom.hu.read_pixels``,
the function ``dicom_to_hu`` calls. Each slice is timed ``--repeats`` times on freshly read data
sets; the table gives the median time per slice, its ratio to uncompressed (same run), the file
size as a share of uncompressed, the largest HU difference to the uncompressed slice (0 for every
lossless syntax) and what the HU JSON says about loss.

The two lossy JPEG processes need fewer bits than these slices store: JPEG baseline takes 8-bit
samples (stored = (HU + 1024) / 16, RescaleSlope 16) and JPEG extended 12-bit samples (stored =
HU + 1024, clipped to 0..4095), as an archive that compresses with loss stores them. Their HU
difference includes that requantisation.

``transcode`` is also how ``tests/test_real_exports.py`` builds its corpus.

    python bench/decode_syntaxes.py [--slices 10] [--repeats 3] [--out bench/measured/decode_syntaxes.txt]
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CT = REPO.parent / "shared" / "data" / "ct"
SOURCES = {"A0002 B40f (uint16, 12 bits)": CT / "lung_pet_ct_dx_A0002" / "B40f",
           "LUNG1-003 (int16, 16 bits)": CT / "nsclc_radiomics_LUNG1-003" / "ct"}
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
        ds.get("RescaleIntercept", 0) or 0)
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
    import pydicom

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
    from pydicom.encaps import encapsulate

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
    from pydicom.uid import UID

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
        ts_name = {"jpeg_lossless_p14": "JPEGLosslessProcess14", "jpeg_lossless_sv1": "JPEGLosslessProcess14_1",
                   "jpeg_ls_lossless": "JPEGLSLossless"}[syntax.name]
        data = _gdcm_change(out, ts_name)
    out.PixelData = data
    out["PixelData"].VR = "OB"
    out["PixelData"].is_undefined_length = True
    out.file_meta.TransferSyntaxUID = uid
    return out


def write_corpus(slices: list[Path], root: Path, syntaxes=SYNTAXES) -> dict[str, Path]:
    """Each syntax's folder under ``root`` with ``slices`` transcoded into it; returns name -> folder."""
    import pydicom

    folders = {}
    for syntax in syntaxes:
        folder = root / syntax.name
        folder.mkdir(parents=True, exist_ok=True)
        for path in slices:
            transcode(pydicom.dcmread(path), syntax).save_as(folder / path.name, enforce_file_format=True)
        folders[syntax.name] = folder
    return folders


def measure(folder: Path, repeats: int) -> tuple[list[float], list[np.ndarray], dict]:
    """Median seconds per slice over ``repeats`` decodes of fresh data sets (after one untimed
    warm-up pass), the HU slices, the compression record of the HU step."""
    import pydicom

    from covidct.dicom.hu import _compression, read_pixels
    from covidct.dicom.series import scan_slice_infos

    infos, _ = scan_slice_infos(folder, "BENCH", keep_datasets=True)
    infos.sort(key=lambda s: s.path.name)
    raw = {s.path: s.path.read_bytes() for s in infos}
    times: list[list[float]] = [[] for _ in infos]
    hu = []
    for r in range(repeats + 1):
        for i, info in enumerate(infos):
            info.dataset = pydicom.dcmread(io.BytesIO(raw[info.path]))  # fresh: nothing decoded yet
            t0 = time.perf_counter()
            slice_hu = read_pixels(info, "BENCH")
            if r == 0:  # warm-up: imports, plugin loading
                hu.append(slice_hu)
            else:
                times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times], hu, _compression(infos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=10, help="slices of each source series (evenly spaced)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "measured" / "decode_syntaxes.txt")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import platform

    import pydicom

    lines = [f"decode_syntaxes: {a.slices} slices per source, {a.repeats} repeats, median per slice; "
             f"pydicom {pydicom.__version__}, {platform.processor() or platform.machine()}"]
    for label, source in SOURCES.items():
        if not source.is_dir():
            lines.append(f"{label}: not present at {source}, skipped")
            continue
        files = sorted(p for p in source.iterdir() if p.is_file())
        picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, a.slices)]
        with tempfile.TemporaryDirectory(prefix="covidct-decode-") as tmp:
            folders = write_corpus(picks, Path(tmp))
            sizes = {n: sum(p.stat().st_size for p in f.iterdir()) for n, f in folders.items()}
            results = {n: measure(f, a.repeats) for n, f in folders.items()}
        base_t = statistics.median(results["uncompressed"][0])
        base_hu = results["uncompressed"][1]
        lines += ["", f"{label}: {len(picks)} slices 512x512",
                  f"{'syntax':24} {'UID':24} {'ms/slice':>9} {'x uncompr.':>10} {'size':>6} {'max |dHU|':>9} "
                  f"{'mean |dHU|':>10}  HU JSON says"]
        for syntax in SYNTAXES:
            times, hu, compression = results[syntax.name]
            diff = [np.abs(h.astype(np.int32) - b) for h, b in zip(hu, base_hu)]
            t = statistics.median(times)
            said = "lossy: " + "; ".join(compression["lossy_evidence"]) if compression["lossy"] else "lossless"
            lines.append(f"{syntax.name:24} {syntax.uid:24} {t * 1000:9.1f} {t / base_t:10.2f} "
                         f"{sizes[syntax.name] / sizes['uncompressed']:6.2f} {max(int(d.max()) for d in diff):9d} "
                         f"{float(np.mean([d.mean() for d in diff])):10.2f}  {said}")
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)


if __name__ == "__main__":
    main()
