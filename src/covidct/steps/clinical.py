"""The steps of ``workflow/rules/clinical.smk``: masks on the native DICOM grid, DICOM SEG and SR,
their de-identification check, the native-grid lung evaluation and the PACS push."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from covidct import __version__
from covidct.clinical.native import native_maps, native_summary, scored_regions
from covidct.clinical.pacs import push_files, series_files
from covidct.clinical.seg import algorithms, build_seg, order_by_slice, read_series, specs_of
from covidct.clinical.sr import build_sr
from covidct.deid.verify import verify_derived
from covidct.errors import AnonymizationError, CovidctError, raw_placeholder
from covidct.io import atomic_path, read_json, read_volume, write_json, write_volume
from covidct.sheet import SHEET_DICOM_DIR, raw_dicom_dir
from covidct.steps.lung_eval import evaluate_lung_mask

log = logging.getLogger(__name__)


def _arrays(*paths):
    import SimpleITK as sitk

    return [sitk.GetArrayFromImage(read_volume(p)) for p in paths]


def _save_dicom(dataset, path: str | Path) -> None:
    with atomic_path(path, suffix=".dcm") as tmp:
        dataset.save_as(tmp, enforce_file_format=True)


def native_masks(
    volume: str | Path,
    labels: str | Path,
    infection: str | Path,
    types: str | Path,
    infection_info: str | Path,
    readout: str | Path,
    out_lungs: str | Path,
    out_regions: str | Path,
    out_infection: str | Path,
    out_types: str | Path,
    out_json: str | Path,
    patient: str,
    lobes: str | Path | list | None = None,
    consolidation_above_hu: float = -200.0,
) -> dict:
    """The lung labels, scored regions (lobes or zones), infection and lesion types of one patient on
    its HU volume's grid (``volume``), by label-wise linear interpolation (``covidct.clinical.native``);
    the JSON gives each map's volumes on both grids and the step's time."""
    import SimpleITK as sitk

    t0 = time.perf_counter()
    hu, iso_labels, iso_infection = read_volume(volume), read_volume(labels), read_volume(infection)
    scheme = read_json(readout)["scheme"]
    lung = sitk.GetArrayFromImage(iso_labels)
    lobe_map = _arrays(lobes)[0] if lobes else None
    type_map = _arrays(types)[0] if read_json(infection_info).get("lesion_types") == "model" else None
    regions = scored_regions(lung, lobe_map, iso_labels.GetSpacing(), scheme)
    maps = native_maps(hu, iso_labels, iso_infection, regions, type_map, consolidation_above_hu)
    for name, path in zip(maps, (out_lungs, out_regions, out_infection, out_types)):
        image = sitk.GetImageFromArray(maps[name])
        image.CopyInformation(hu)
        write_volume(path, image)
    isos = {"lungs": lung, "regions": regions, "infection": sitk.GetArrayFromImage(iso_infection), "types": type_map}
    summary = {"patient_id": patient, "scheme": scheme, **native_summary(maps, isos, hu, iso_labels)}
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out_json, summary)
    log.info("patient %s: native-grid masks in %.1f s", patient, summary["seconds"])
    return summary


def write_dicom_seg(
    dicom: str | Path,
    hu_info: str | Path,
    lungs: str | Path,
    regions: str | Path,
    types: str | Path,
    lung_provenance: str | Path,
    infection_info: str | Path,
    readout: str | Path,
    out_seg: str | Path,
    patient: str,
    lobe_provenance: str | Path | list | None = None,
) -> None:
    """The DICOM SEG of one patient's native maps, on the anonymized series (``covidct.clinical.seg``)."""

    t0 = time.perf_counter()
    reference = read_volume(lungs)
    series_uid = read_json(hu_info)["chosen_series"]["series_uid"]
    instances = order_by_slice(read_series(dicom, series_uid, patient), reference, patient)
    result = read_json(readout)
    how = algorithms(
        read_json(lung_provenance),
        read_json(infection_info),
        result,
        read_json(lobe_provenance) if lobe_provenance else None,
    )
    maps = dict(zip(("lungs", "regions", "types"), _arrays(lungs, regions, types)))
    seg, specs = build_seg(instances, maps, result["scheme"], how, __version__, patient)
    _save_dicom(seg, out_seg)
    log.info("patient %s: SEG of %d segments in %.1f s", patient, len(specs), time.perf_counter() - t0)


def write_dicom_sr(
    seg: str | Path, dicom: str | Path, hu_info: str | Path, readout: str | Path, out_sr: str | Path, patient: str
) -> None:
    """The TID 1500 measurement report of one patient's read-out, referencing its SEG's segments."""
    import highdicom as hd

    t0 = time.perf_counter()
    segmentation = hd.seg.segread(seg)
    instances = read_series(dicom, read_json(hu_info)["chosen_series"]["series_uid"], patient)
    sr = build_sr(segmentation, specs_of(segmentation), instances, read_json(readout), __version__, patient)
    _save_dicom(sr, out_sr)
    log.info("patient %s: SR in %.1f s", patient, time.perf_counter() - t0)


def verify_dicom_outputs(
    dicom: str | Path,
    seg: str | Path,
    sr: str | Path,
    out_report: str | Path,
    patient: str,
    raw_dir: str | Path | None = None,
    sheet: str | Path | None = None,
    raw_digest: str = "",
) -> dict:
    """Check the SEG and SR against the raw folder (no identifier) and the anonymized series (same
    patient and study, every reference resolved): ``covidct.deid.verify.verify_derived``."""

    raw = _raw_folder(raw_dir, sheet, patient)
    try:
        report = verify_derived(raw, Path(dicom), [Path(seg), Path(sr)], patient)
    except CovidctError as exc:  # never name the raw folder (its name may carry identifiers)
        raise type(exc)(exc.message, patient, raw_placeholder(patient)) from None
    if not report["passed"]:
        log.error("patient %s: failed check of the SEG and SR: %s", patient, report)
        raise AnonymizationError(
            f"SEG/SR check failed: {report['n_leaks']} leak(s), {len(report['mismatches'])} patient/study "
            f"mismatch(es), {len(report['unknown_references'])} unknown reference(s); details in this job's log",
            patient,
            seg,
        )
    write_json(out_report, report)
    return report


def evaluate_native_lung_mask(
    labels: str | Path,
    out_json: str | Path,
    patient: str,
    sheet: str | Path | None = None,
    right_roi: str | None = None,
    left_roi: str | None = None,
    lesion_roi: str | None = None,
    contour_shift_mm: tuple[float, float] = (0.0, 0.0),
    reference_digest: str = "",
) -> dict:
    """``evaluate_lung_mask`` of the native-grid lung labels (the reference rasterized on the scan's grid)."""

    return evaluate_lung_mask(
        labels, out_json, patient, None, sheet, right_roi, left_roi, lesion_roi, contour_shift_mm, reference_digest
    )


def push_to_pacs(
    dicom: str | Path,
    seg: str | Path,
    sr: str | Path,
    verified: str | Path,
    dicom_verified: str | Path,
    out_receipt: str | Path,
    patient: str,
    push: dict,
) -> dict:
    """Send the anonymized series, its SEG and SR to the research PACS (``push``: the ``pacs.push``
    block), only once both checks passed (``verified``: the anonymized folder; ``dicom_verified``: the
    SEG and SR); the receipt lists what the PACS stored."""

    for report in (verified, dicom_verified):
        if not read_json(report).get("passed"):
            raise AnonymizationError("a verification report did not pass: nothing is pushed", patient, report)
    files = series_files(Path(dicom)) + [Path(seg), Path(sr)]
    receipt = push_files(files, push, patient)
    write_json(out_receipt, receipt)
    return receipt


def _raw_folder(raw_dir: str | Path | None, sheet: str | Path | None, patient: str) -> Path:
    """The raw folder: given (command line) or the sheet's ``dicom_dir`` (read inside the job)."""

    raw = Path(raw_dir) if raw_dir else raw_dicom_dir(sheet, patient)
    if not str(raw).strip() or not raw.is_dir():
        raise CovidctError(f"{SHEET_DICOM_DIR} is not a folder", patient, raw_placeholder(patient))
    return raw


__all__ = [
    "evaluate_native_lung_mask",
    "native_masks",
    "push_to_pacs",
    "verify_dicom_outputs",
    "write_dicom_seg",
    "write_dicom_sr",
]
