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

``covidct.testing.transcode`` (also the tests' corpus) does the transcoding.

    python bench/decode_syntaxes.py [--slices 10] [--repeats 3] [--out bench/measured/decode_syntaxes.txt]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from covidct.testing.transcode import SYNTAXES, write_corpus

REPO = Path(__file__).resolve().parents[1]
CT = REPO.parent / "shared" / "data" / "ct"
SOURCES = {
    "A0002 B40f (uint16, 12 bits)": CT / "lung_pet_ct_dx_A0002" / "B40f",
    "LUNG1-003 (int16, 16 bits)": CT / "nsclc_radiomics_LUNG1-003" / "ct",
}


def measure(folder: Path, repeats: int) -> tuple[list[float], list[np.ndarray], dict]:
    """Median seconds per slice over ``repeats`` decodes of fresh data sets (after one untimed
    warm-up pass), the HU slices, the compression record of the HU step."""
    import pydicom

    from covidct.dicom.hu import read_pixels, series_compression
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
    return [statistics.median(t) for t in times], hu, series_compression(infos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=10, help="slices of each source series (evenly spaced)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "measured" / "decode_syntaxes.txt")
    a = ap.parse_args()
    import platform

    import pydicom

    lines = [
        f"decode_syntaxes: {a.slices} slices per source, {a.repeats} repeats, median per slice; "
        f"pydicom {pydicom.__version__}, {platform.processor() or platform.machine()}"
    ]
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
        lines += [
            "",
            f"{label}: {len(picks)} slices 512x512",
            f"{'syntax':24} {'UID':24} {'ms/slice':>9} {'x uncompr.':>10} {'size':>6} {'max |dHU|':>9} "
            f"{'mean |dHU|':>10}  HU JSON says",
        ]
        for syntax in SYNTAXES:
            times, hu, compression = results[syntax.name]
            diff = [np.abs(h.astype(np.int32) - b) for h, b in zip(hu, base_hu)]
            t = statistics.median(times)
            said = "lossy: " + "; ".join(compression["lossy_evidence"]) if compression["lossy"] else "lossless"
            lines.append(
                f"{syntax.name:24} {syntax.uid:24} {t * 1000:9.1f} {t / base_t:10.2f} "
                f"{sizes[syntax.name] / sizes['uncompressed']:6.2f} {max(int(d.max()) for d in diff):9d} "
                f"{float(np.mean([d.mean() for d in diff])):10.2f}  {said}"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)


if __name__ == "__main__":
    main()
