"""Compressed pixel data: which decoders read it, and whether it was compressed with loss.

Decoders (pydicom's pixel plugins, all permissive licences, see README "Errors"):

- JPEG Lossless (Process 14, 14 SV1), JPEG-LS (lossless, near-lossless), JPEG baseline and
  extended: GDCM (``python-gdcm``);
- JPEG 2000 (lossless and lossy): ``pylibjpeg-openjpeg`` (and GDCM);
- RLE Lossless, Deflated Explicit VR Little Endian, native: pydicom itself.

pydicom 3.0 refuses to hand 12-bit JPEG Extended (1.2.840.10008.1.2.4.51) to GDCM, yet
python-gdcm 3.2 decodes it correctly (identical to libjpeg-turbo's decode of the same stream, checked
when this was written). ``register_decoders`` adds a plugin for exactly that case.

Whether a series is lossy is judged per file, from the strongest evidence present
(``lossy_evidence``): LossyImageCompression 01 in the header; a DCT-based JPEG transfer syntax;
a JPEG-LS scan with NEAR > 0; a JPEG 2000 code stream with the irreversible 9-7 wavelet; a JPEG
2000 "lossy allowed" syntax (1.2.840.10008.1.2.4.91) that does not say it is lossless.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

from pydicom import uid
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders import JPEGExtended12BitDecoder

log = logging.getLogger(__name__)

#: Transfer syntaxes whose coding is always lossy (DCT-based JPEG processes).
ALWAYS_LOSSY = frozenset({uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit})
#: Transfer syntaxes that may be lossy: the code stream tells.
MAYBE_LOSSY = frozenset({uid.JPEGLSNearLossless, uid.JPEG2000})
#: JPEG markers: start of scan; JPEG 2000 markers: coding style default.
JPEG_SOS = b"\xff\xda"
J2K_COD = b"\xff\x52"
#: Offset of the wavelet transform byte in a COD marker segment (from the marker): marker (2),
#: Lcod (2), Scod (1), SGcod (4), then SPcod: levels, code-block width, height, style, transform.
J2K_COD_TRANSFORM_OFFSET = 13
J2K_IRREVERSIBLE_97 = 0
#: Bytes of a JPEG-LS code stream searched for the first scan header.
HEADER_SEARCH_BYTES = 4096
#: The pydicom decoder plugin label of ``register_decoders``.
PLUGIN_LABEL = "covidct-gdcm-12bit"
#: pydicom plugin protocol: what the plugin needs when it is not available.
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("gdcm>=3.0.10",)}
#: GDCM's stderr line when it retries a 12-bit JPEG with its 12-bit decoder (harmless).
GDCM_RETRY_NOISE = "Unsupported JPEG data precision"


def jpeg_ls_near(stream: bytes) -> int | None:
    """The NEAR parameter of the first scan of a JPEG-LS code stream (0: lossless), or None.

    The scan header is: FF DA, length (2), Ns (1), Ns x (component id, mapping table) (2 each),
    NEAR (1), ILV (1), point transform (1).
    """
    i = stream.find(JPEG_SOS, 0, HEADER_SEARCH_BYTES)
    if i < 0 or i + 5 > len(stream):
        return None
    n_components = stream[i + 4]
    near = i + 5 + 2 * n_components
    return stream[near] if near < len(stream) else None


def j2k_irreversible(stream: bytes) -> bool | None:
    """Whether a JPEG 2000 code stream uses the irreversible 9-7 wavelet (always lossy); None if
    its COD marker is not found in the main header."""
    i = stream.find(J2K_COD, 0, HEADER_SEARCH_BYTES)
    if i < 0 or i + J2K_COD_TRANSFORM_OFFSET >= len(stream):
        return None
    return stream[i + J2K_COD_TRANSFORM_OFFSET] == J2K_IRREVERSIBLE_97


def first_frame(ds) -> bytes:
    """The encoded bytes of the first frame of encapsulated pixel data (b"" if native)."""

    syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if syntax is None or not syntax.is_encapsulated or "PixelData" not in ds:
        return b""
    n = int(ds.get("NumberOfFrames") or 1)
    try:
        return next(generate_frames(ds.PixelData, number_of_frames=n))
    except Exception:  # undecodable framing: the decoder reports it
        return b""


def lossy_evidence(ds) -> str | None:
    """Why the pixel data of ``ds`` are (or may be) lossy, in words; None when lossless.

    Args:
        ds: A pydicom data set (pixel data not decoded).

    Returns:
        The evidence, or None.
    """
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if flag == "01":
        method = str(ds.get("LossyImageCompressionMethod", "") or "").replace("\\", ", ")
        return "LossyImageCompression 01" + (f" ({method})" if method else "")
    if syntax in ALWAYS_LOSSY:
        return f"transfer syntax {syntax.name} ({syntax}) is lossy (DCT)"
    if syntax == uid.JPEGLSNearLossless:
        near = jpeg_ls_near(first_frame(ds))
        if near == 0:
            return None
        return (
            f"JPEG-LS near-lossless, NEAR={near}"
            if near is not None
            else f"transfer syntax {syntax.name} ({syntax}), NEAR not found"
        )
    if syntax == uid.JPEG2000:
        irreversible = j2k_irreversible(first_frame(ds))
        if irreversible:
            return "JPEG 2000 with the irreversible 9-7 wavelet"
        if flag == "00":
            return None
        return (
            f"transfer syntax {syntax.name} ({syntax}) allows lossy coding and LossyImageCompression does not say "
            "00 (reversible wavelet; rate truncation cannot be ruled out)"
        )
    return None


@contextlib.contextmanager
def _quiet_stderr():
    """Hold back what native code writes to stderr (GDCM's retry notice); pass on anything else."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            sink.seek(0)
            other = [
                line
                for line in sink.read().decode("utf-8", "replace").splitlines()
                if line.strip() and GDCM_RETRY_NOISE not in line
            ]
            for line in other:
                log.warning("GDCM: %s", line)


def is_available(transfer_syntax: str) -> bool:
    """pydicom plugin protocol: this module decodes 12-bit JPEG Extended when GDCM is installed."""
    if transfer_syntax != uid.JPEGExtended12Bit:
        return False
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return True


def _decode_frame(src: bytes, runner) -> bytes:
    """pydicom plugin protocol: decode one 12-bit JPEG Extended frame (monochrome) with GDCM."""
    import gdcm

    if runner.samples_per_pixel != 1:
        raise NotImplementedError("only monochrome 12-bit JPEG Extended is decoded by this plugin")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    elem = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    elem.SetValue(fragments.__ref__())
    img = gdcm.Image()
    img.SetNumberOfDimensions(2)
    img.SetDimensions((runner.columns, runner.rows, 1))
    img.SetDataElement(elem)
    pi = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    img.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi))
    img.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    bits_stored = runner.bits_stored
    img.SetPixelFormat(
        gdcm.PixelFormat(1, runner.bits_allocated, bits_stored, bits_stored - 1, runner.pixel_representation)
    )
    with _quiet_stderr():
        frame = img.GetBuffer().encode("utf-8", "surrogateescape")
    expected = runner.rows * runner.columns * (runner.bits_allocated // 8)
    if len(frame) != expected:
        raise ValueError(f"GDCM returned {len(frame)} bytes for a {runner.rows}x{runner.columns} 12-bit JPEG frame")
    return frame


_registered = False


def register_decoders() -> None:
    """Add the 12-bit JPEG Extended plugin to pydicom's decoder (once; harmless if repeated).

    pydicom tries its own plugins first (GDCM, Pillow: both decline 12-bit samples), then this one.
    """
    global _registered
    if _registered:
        return

    try:
        JPEGExtended12BitDecoder.add_plugin(PLUGIN_LABEL, (__name__, "_decode_frame"))
    except ValueError as exc:  # already added (by another import path of this module)
        if "already has a plugin" not in str(exc):
            raise
    _registered = True
