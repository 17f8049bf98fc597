"""One function per rule, file in / file out: the contract between the workflow and the library.

The rule ``R`` runs ``covidct.steps.R`` (``workflow/scripts/step.py`` through
``covidct.smk.run_rule``), and the names line up:

- each named input ``x`` of the rule is the argument ``x`` (a path, or a list of paths);
- each named output ``y`` is the argument ``out_y``: every file a step writes is a declared output
  passed in;
- each param ``p`` is the argument ``p``, each wildcard ``w`` the argument ``w``;
- ``sheet`` is the patient sheet of the configuration, read inside the job (a raw folder's name may
  carry real identifiers, so it never passes through Snakemake); ``threads`` the rule's threads.

``tests/unit/test_contract.py`` checks every rule's names against its step's signature. The
command line (``covidct <verb>``) calls the same functions. All real work lives in the modules
they call.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from covidct.errors import AnonymizationError, CovidctError
from covidct.io import atomic_dir, atomic_path, read_json, read_volume, write_json, write_npy, write_volume

log = logging.getLogger(__name__)


def raw_dicom_dir(sheet: str | Path, patient: str) -> Path:
    """The raw DICOM folder of ``patient`` from the patient sheet (never passed through Snakemake,
    whose logs and metadata must not hold a folder name that may carry real identifiers)."""
    import pandas as pd

    table = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    rows = table[table["patient_id"] == patient]
    if len(rows) != 1:
        raise CovidctError(f"{len(rows)} rows for this patient in the sheet", patient, sheet)
    return Path(rows["dicom_dir"].iloc[0])


def _redact(exc: CovidctError, raw_dir: Path, patient: str) -> CovidctError:
    """The same error with the raw folder (whose name may carry real identifiers) replaced by
    ``<dicom_dir of PATIENT>`` and a file by its rank in the folder's sorted listing."""
    if exc.path is None:
        return exc
    path = Path(exc.path)
    where = f"<dicom_dir of {patient}>"
    if path != raw_dir and raw_dir in path.parents:
        from covidct.dicom.files import list_files

        files = list_files(raw_dir)  # the ranks the discovery's skip lists use
        rank = files.index(path) + 1 if path in files else None
        where += f", file {rank} of {len(files)} in sorted order" if rank else ", a file inside"
    elif path != raw_dir:
        return exc  # not under the raw folder: a pseudonymous output path
    return type(exc)(exc.message, patient, where)


def _raw_step(raw_dir: Path, patient: str, work):
    """Run ``work()`` on a raw folder: errors name the patient, never the raw path."""
    try:
        return work()
    except CovidctError as exc:
        raise _redact(exc, raw_dir, patient) from None
    except OSError as exc:
        raise _redact(
            AnonymizationError(f"cannot read the DICOM input ({type(exc).__name__})", patient, exc.filename or raw_dir),
            raw_dir,
            patient,
        ) from None


def _raw_folder(raw_dir: str | Path | None, sheet: str | Path | None, patient: str) -> Path:
    """The raw folder: given (command line), or the sheet's ``dicom_dir`` (workflow), checked."""
    raw = Path(raw_dir) if raw_dir else raw_dicom_dir(sheet, patient)
    if not str(raw).strip() or str(raw) == ".":
        raise CovidctError("the sheet's dicom_dir is empty", patient)
    if not raw.is_dir():
        raise CovidctError(
            "the sheet's dicom_dir does not exist or is not a folder", patient, f"<dicom_dir of {patient}>"
        )
    return raw


# --------------------------------------------------------------------- the demo cohort


def synth_patient(
    patient: str,
    out_dicom: str | Path,
    out_truth: str | Path,
    out_lung_truth: str | Path,
    out_lesion_truth: str | Path,
    out_lobe_truth: str | Path,
) -> dict:
    """Generate one patient of the built-in demo cohort: its DICOM folder and its truth files."""
    from covidct.demo.cohort import DEMO_COHORT
    from covidct.demo.writer import truth_paths, write_patient

    specs = {spec.patient_id: spec for spec in DEMO_COHORT}
    if patient not in specs:
        raise CovidctError(f"not a demo cohort patient (demo ids: {', '.join(specs)})", patient)
    truth_dir = Path(out_truth).parent
    expected = truth_paths(truth_dir, patient)
    declared = {
        "json": Path(out_truth),
        "lung": Path(out_lung_truth),
        "lesion": Path(out_lesion_truth),
        "lobes": Path(out_lobe_truth),
    }
    if declared != expected:
        raise CovidctError(f"the truth files must be named {sorted(map(str, expected.values()))}", patient)
    return write_patient(specs[patient], Path(out_dicom), truth_dir)


def synth_infection_training(out_dir: str | Path, n: int) -> None:
    """The default infection training source: ``n`` synthetic phantoms (not demo patients) as NIfTI."""
    from covidct.demo.cohort import write_infection_training

    with atomic_dir(out_dir) as tmp:
        write_infection_training(tmp, n)


def reject_sheet_row(out_marker: str | Path, message: str, row: str) -> None:
    """A sheet row that cannot be processed (an unsafe patient_id): the job fails with ``message``;
    ``out_marker`` is never written."""
    raise CovidctError(message)


# ------------------------------------------------------------------------ per patient


def anonymize_dicom(
    patient: str,
    out_dicom: str | Path,
    out_summary: str | Path | None = None,
    raw_dir: str | Path | None = None,
    sheet: str | Path | None = None,
    key_file: str | None = None,
    allow_demo_key: bool = False,
    dates: str = "shift",
    raw_digest: str = "",
    demo: list[str] | str = (),
) -> dict:
    """Anonymize a patient's raw DICOM folder into ``out_dicom`` (Basic Profile, keyed pseudonyms).

    Args:
        patient: The pseudonymous id.
        out_dicom: The anonymized folder (flat, one file per CT image).
        out_summary: The anonymizer's summary (counts, transfer syntaxes, and what was skipped in
            the raw folder, by category and rank: never a file name), where the HU step picks it up.
        raw_dir: The raw folder (command line); else it is read from ``sheet`` (workflow).
        sheet: The patient sheet.
        key_file: File holding the key (else ``$COVIDCT_ANON_KEY``).
        allow_demo_key: The public demo key may be used (the generated demo cohort only).
        dates: ``shift`` or ``remove``.
        raw_digest: The keyed hash of the raw folder's path: not used here; the workflow passes it
            so that a changed folder re-runs the job without Snakemake ever seeing the path.
        demo: The generated demo folder this job waits for (demo patients only); the folder read
            is still the sheet's.
    """
    from covidct.deid.keys import load_key
    from covidct.deid.series import anonymize_series_dir

    raw = _raw_folder(raw_dir, sheet, patient)
    key = load_key(key_file or None, allow_demo=allow_demo_key)
    summary = _raw_step(raw, patient, lambda: anonymize_series_dir(raw, Path(out_dicom), key, patient, dates=dates))
    log.info("patient %s: anonymized %s", patient, summary)
    if out_summary is not None:
        write_json(out_summary, summary)
    return summary


def verify_anonymization(
    dicom: str | Path,
    out_report: str | Path,
    patient: str,
    raw_dir: str | Path | None = None,
    sheet: str | Path | None = None,
    raw_digest: str = "",
) -> dict:
    """Check the anonymized folder ``dicom`` against the original; write the report, or fail with the
    failed report in the log (it names keywords and places, never a value).

    The original folder is ``raw_dir``, or the sheet's ``dicom_dir``; ``raw_digest`` as in
    ``anonymize_dicom``.
    """
    import json

    from covidct.deid.verify import verify_anonymization as verify

    raw = _raw_folder(raw_dir, sheet, patient)
    report = _raw_step(raw, patient, lambda: verify(raw, Path(dicom), patient))
    if not report["passed"]:
        log.error("patient %s: failed verification report:\n%s", patient, json.dumps(report, indent=1, default=str))
        raise AnonymizationError(
            f"anonymization verification failed: {len(report.get('leaks', []))} leak(s), "
            f"{report.get('pixel_mismatches', 0)} pixel and {report.get('geometry_mismatches', 0)} geometry "
            f"mismatch(es); the report is in this job's log",
            patient,
            dicom,
        )
    write_json(out_report, report)
    return report


def dicom_to_hu(
    dicom: str | Path,
    out_volume: str | Path,
    out_info: str | Path,
    patient: str,
    series_uid: str | None = None,
    min_slices: int = 3,
    max_slices: int | None = None,
    anonymize_summary: str | Path | None = None,
    verified: str | Path | None = None,
) -> dict:
    """Choose the CT axial series, convert to HU, write an int16 NIfTI with true geometry.

    ``max_slices`` (default ``covidct.dicom.series.MAX_SLICES``) refuses a series too large to hold.
    The JSON names the chosen series (kernel, thickness, description where the anonymizer kept
    one), its compression (lossy or not, and why), the shifted study date, and the files skipped:
    ``files.dicom_dir`` those of the raw folder (from ``anonymize_summary``, the anonymizer's
    summary, when given), ``files.input`` those of the folder this step read. ``verified`` is the
    verification report the workflow waits for (the folder is used only once verified).
    """
    from covidct.dicom.files import describe_skips
    from covidct.dicom.hu import load_series
    from covidct.dicom.series import MAX_SLICES

    image, info = load_series(
        dicom,
        patient,
        series_uid=series_uid or None,
        min_slices=min_slices,
        max_slices=MAX_SLICES if max_slices is None else max_slices,
    )
    files = {"input": info.pop("files"), "dicom_dir": None}
    if anonymize_summary is not None:
        files["dicom_dir"] = read_json(anonymize_summary)["files"]
        log.info(
            "patient %s: the anonymizer skipped %d of %d files of the raw folder: %s",
            patient,
            files["dicom_dir"]["n_skipped"],
            files["dicom_dir"]["n_files"],
            describe_skips(files["dicom_dir"]),
        )
    info["files"] = files
    write_volume(out_volume, image)
    info["patient"] = patient
    write_json(out_info, info)
    log.info("patient %s: HU volume %s, spacing %s", patient, info["shape_zyx"], info["spacing_xyz_mm"])
    return info


def resample_volume(volume: str | Path, out_volume: str | Path, spacing_mm: float, patient: str = "") -> None:
    """Resample a volume to isotropic ``spacing_mm`` on an LPS-aligned grid."""
    from covidct.volume import resample

    write_volume(out_volume, resample(read_volume(volume), spacing_mm))
    log.info("patient %s: resampled to %g mm", patient, spacing_mm)


def segment_lungs(
    volume: str | Path,
    out_mask: str | Path,
    out_labels: str | Path,
    out_provenance: str | Path,
    patient: str,
    backend: str = "threshold",
    weights: str | None = None,
    force_cpu: bool = False,
    batch_size: int = 20,
    threshold: dict | None = None,
) -> dict:
    """Segment the lungs; write a binary mask, left/right labels and provenance JSON."""
    import SimpleITK as sitk

    from covidct.io import sha256_file
    from covidct.lungs.labels import versions, volume_stats
    from covidct.lungs.lungmask import lungmask_lungs, resolve_weights
    from covidct.lungs.qc import mask_qc
    from covidct.lungs.threshold import ThresholdParams, segment_threshold

    t0 = time.perf_counter()
    image = read_volume(volume)
    spacing = image.GetSpacing()
    prov: dict = {"patient": patient, "backend": backend, "versions": versions()}
    hu = sitk.GetArrayViewFromImage(image)
    airways = None
    if backend == "threshold":
        params = ThresholdParams(**(threshold or {}))
        result = segment_threshold(hu, spacing, params, patient)
        labels, stats, airways = result.labels, result.stats, result.airways
        prov["params"] = params.__dict__
    elif backend == "lungmask":
        path = resolve_weights(weights or None, patient)
        prov["weights_file"] = path.name
        prov["weights_sha256"] = sha256_file(path)
        labels, stats = lungmask_lungs(image, path, force_cpu=force_cpu, batch_size=batch_size, patient=patient)
        stats.update(volume_stats(labels, spacing))
        stats["left_right_known"] = True
    else:
        raise CovidctError(f"unknown lung_mask.backend {backend!r}: use 'threshold' or 'lungmask'", patient)
    prov.update(stats)
    prov["qc"] = mask_qc(labels, hu, spacing, airway=airways)
    prov["seconds"] = round(time.perf_counter() - t0, 2)
    for path, array in ((out_mask, (labels > 0).astype(np.uint8)), (out_labels, labels.astype(np.uint8))):
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        write_volume(path, out)
    write_json(out_provenance, prov)
    log.info(
        "patient %s: lungs %.0f mL (%s backend), QC flags: %s",
        patient,
        prov.get("lung_volume_ml", 0),
        backend,
        "; ".join(prov["qc"]["flags"]) or "none",
    )
    return prov


def segment_lobes(
    volume: str | Path,
    out_lobes: str | Path,
    out_provenance: str | Path,
    patient: str,
    model: str = "LTRCLobes_R231",
    weights: str | None = None,
    r231_weights: str | None = None,
    force_cpu: bool = False,
    batch_size: int = 20,
) -> dict:
    """Lobes of one patient from lungmask's LTRCLobes (``model`` LTRCLobes) or its fusion with R231
    (LTRCLobes_R231, the R231 weights of ``lung_mask.weights`` or the hub cache); write the lobe map
    (lungmask's labels: 1 left upper, 2 left lower, 3 right upper, 4 right middle, 5 right lower) and
    its provenance JSON (weights' SHA-256, volume of each lobe)."""
    import SimpleITK as sitk

    from covidct.io import sha256_file
    from covidct.lungs.labels import versions
    from covidct.lungs.lobes import LOBE_MODELS, LOBES, lungmask_lobes, resolve_lobe_weights
    from covidct.lungs.lungmask import resolve_weights

    if model not in LOBE_MODELS:
        raise CovidctError(f"unknown lung_mask.lobes.model {model!r}: use one of {', '.join(LOBE_MODELS)}", patient)
    t0 = time.perf_counter()
    image = read_volume(volume)
    path = resolve_lobe_weights(weights or None, patient)
    fill = resolve_weights(r231_weights or None, patient) if model == "LTRCLobes_R231" else None
    prov: dict = {
        "patient": patient,
        "model": model,
        "weights_file": path.name,
        "weights_sha256": sha256_file(path),
        "r231_weights_file": fill.name if fill else None,
        "r231_weights_sha256": sha256_file(fill) if fill else None,
        "versions": versions(),
    }
    lobes, stats = lungmask_lobes(image, path, fill, force_cpu=force_cpu, batch_size=batch_size, patient=patient)
    prov.update(stats)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    prov["lobe_volumes_ml"] = {
        r.name: round(float(np.count_nonzero(lobes == r.code)) * voxel_ml, 1) for r in LOBES.regions
    }
    prov["seconds"] = round(time.perf_counter() - t0, 2)
    out = sitk.GetImageFromArray(lobes)
    out.CopyInformation(image)
    write_volume(out_lobes, out)
    write_json(out_provenance, prov)
    log.info("patient %s: lobes (%s) %s", patient, model, prov["lobe_volumes_ml"])
    return prov


def export_npy(
    volume: str | Path,
    mask: str | Path,
    out_npy: str | Path,
    patient: str,
    shape=(64, 128, 128),
    margin_mm: float = 5.0,
    hu_window=(-1000.0, 400.0),
) -> np.ndarray:
    """Write the model-ready ``.npy`` (depth, height, width) float32 in [0, 1]."""
    import SimpleITK as sitk

    from covidct.models.inputs import model_array

    image = read_volume(volume)
    lung = sitk.GetArrayFromImage(read_volume(mask))
    if not lung.any():
        raise CovidctError("lung mask is empty: nothing to export", patient, mask)
    array = model_array(
        sitk.GetArrayViewFromImage(image), lung, image.GetSpacing(), tuple(shape), margin_mm, tuple(hu_window)
    )
    write_npy(out_npy, array)
    return array


def lung_reference_path(sheet: str | Path, patient: str) -> Path | None:
    """The patient's lung reference (sheet column ``lung_reference``), read inside the job: the path
    may carry real identifiers and never passes through Snakemake. None when the cell is empty."""
    import pandas as pd

    table = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    rows = table[table["patient_id"] == patient]
    if len(rows) != 1 or "lung_reference" not in table.columns:
        raise CovidctError("no lung_reference for this patient in the sheet", patient, sheet)
    value = rows["lung_reference"].iloc[0].strip()
    return Path(value) if value else None


def evaluate_lung_mask(
    labels: str | Path,
    out_json: str | Path,
    patient: str,
    reference: str | Path | None = None,
    sheet: str | Path | None = None,
    right_roi: str | None = None,
    left_roi: str | None = None,
    lesion_roi: str | None = None,
    contour_shift_mm: tuple[float, float] = (0.0, 0.0),
    reference_digest: str = "",
) -> dict:
    """Compare a patient's lung mask (label map ``labels``) with a reference (RTSTRUCT or NIfTI label
    map): Dice, HD95 and volume difference per lung and both, written to ``out_json``
    (``covidct.lungs.evaluation``).

    The reference is ``reference``, or the sheet's ``lung_reference`` when it is None; errors then
    name it ``<lung_reference of PATIENT>``, never by its path. ``reference_digest`` (the keyed hash
    of that path) is not used here: its change re-runs the job.
    """
    from covidct.lungs.evaluation import LEFT_LUNG_PATTERN, LESION_PATTERN, RIGHT_LUNG_PATTERN, evaluate

    if reference is None:
        reference = lung_reference_path(sheet, patient)
        if reference is None:
            raise CovidctError("the sheet's lung_reference is empty", patient)
        raw = Path(reference)

        def redact(exc: CovidctError) -> CovidctError:
            if exc.path is not None and (Path(exc.path) == raw or raw in Path(exc.path).parents):
                return type(exc)(exc.message, patient, f"<lung_reference of {patient}>")
            return exc
    else:

        def redact(exc: CovidctError) -> CovidctError:
            return exc

    kwargs = {
        "right_pattern": right_roi or RIGHT_LUNG_PATTERN,
        "left_pattern": left_roi or LEFT_LUNG_PATTERN,
        "lesion_pattern": LESION_PATTERN if lesion_roi is None else lesion_roi,
        "shift_mm": tuple(float(v) for v in contour_shift_mm),
    }
    try:
        return evaluate(labels, reference, out_json, patient, **kwargs)
    except CovidctError as exc:
        raise redact(exc) from None
    except OSError as exc:
        raise redact(
            CovidctError(f"cannot read the lung reference ({type(exc).__name__})", patient, exc.filename or reference)
        ) from None


def lung_eval_table(results: list[str | Path], out_csv: str | Path) -> None:
    """The cohort table of lung masks against their references (one row per patient's JSON)."""
    import csv

    from covidct.lungs.evaluation import TABLE_COLUMNS, table_rows

    rows = table_rows([read_json(path) for path in results])
    with atomic_path(out_csv, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def qc_montage(
    volume: str | Path,
    labels: str | Path,
    out_png: str | Path,
    patient: str,
    n_slices: int = 12,
    provenance: str | Path | None = None,
) -> None:
    """Write the QC montage PNG of a patient's lung mask (title: volume, backend, QC flags)."""
    import SimpleITK as sitk

    from covidct.report.montage import montage, write_png

    hu = sitk.GetArrayFromImage(read_volume(volume))
    label_map = sitk.GetArrayFromImage(read_volume(labels))
    title = f"{patient}"
    if provenance:
        prov = read_json(provenance)
        title += f"  lungs {prov.get('lung_volume_ml', 0) / 1000:.2f} L ({prov.get('backend')})"
        flags = prov.get("qc", {}).get("flags")
        if flags is not None:
            title += "  QC: " + ("ok" if not flags else f"{len(flags)} flag(s)\n" + "\n".join(flags))
    write_png(out_png, montage(hu, label_map, n_slices=n_slices), title=title)


def train_infection_unet(
    sources_dirs: list[str],
    out_model: str | Path,
    out_sidecar: str | Path,
    out_metrics: str | Path,
    sources: list[dict],
    infection: dict,
    spacing_mm: float = 1.5,
) -> dict:
    """Cross-validate the infection U-Net variants on the configured ``sources`` (``sources_dirs``: their
    folders, what the job waits for) with the ``infection`` config block, then train the chosen variant
    for the chosen epoch count on all of them."""
    from covidct.infection.train import train

    keys = (
        "size",
        "base_filters",
        "norm",
        "variants",
        "folds",
        "epochs",
        "warmup_epochs",
        "batch_size",
        "learning_rate",
        "retries",
        "seed",
        "augment",
        "tta",
        "max_slices_per_volume",
    )
    settings = {k: infection[k] for k in keys}
    return train(sources, out_model, out_metrics, out_sidecar=out_sidecar, spacing_mm=spacing_mm, **settings)


def evaluate_infection_unet(
    model: str | Path, sidecar: str | Path, out_metrics: str | Path, images: str, masks: str, labels: str = "binary"
) -> dict:
    """Dice/IoU/accuracy/sensitivity/specificity of the U-Net on a test set of images and masks, at the
    threshold (and test-time flips) of its ``sidecar``; per-class Dice for ``labels: types`` masks."""
    from covidct.infection.inference import evaluate_folder

    return evaluate_folder(model, images, masks, out_metrics, labels=labels, sidecar=sidecar)


def segment_infection(
    volume: str | Path,
    mask: str | Path,
    labels: str | Path,
    model: str | Path,
    sidecar: str | Path,
    out_mask: str | Path,
    out_types: str | Path,
    out_json: str | Path,
    out_png: str | Path,
    patient: str,
    n_slices: int = 8,
) -> dict:
    """Infection mask of one patient inside its lung mask, its severity, and a QC overlay PNG. A
    lesion-type model also writes the lesion types (1 ground-glass, 2 consolidation) and their volumes
    and percent of the lung; a binary model writes an all-zero type map (the read-out then uses HU bands)."""
    import SimpleITK as sitk

    from covidct.infection.inference import load_unet, segment_volume, severity
    from covidct.io import sha256_file
    from covidct.report.montage import montage, write_png
    from covidct.severity import SEVERITY_CLASSES, ctsi, severity_class

    image = read_volume(volume)
    hu = sitk.GetArrayFromImage(image)
    lung = sitk.GetArrayFromImage(read_volume(mask)) > 0
    if not lung.any():
        raise CovidctError("lung mask is empty: no infection severity", patient, mask)
    net, settings = load_unet(model, sidecar)
    infected, types = segment_volume(net, settings, hu, lung)
    for array, path in ((infected, out_mask), (types if types is not None else np.zeros_like(infected), out_types)):
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        write_volume(path, out)
    score = severity(infected, lung)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    n_lung = int(lung.sum())
    result = {
        "patient_id": patient,
        "seg_score": round(score, 2),
        "seg_severity_class": SEVERITY_CLASSES[severity_class(score)],
        "seg_ctsi": ctsi(score),
        "infection_volume_ml": round(int(infected.sum()) * voxel_ml, 1),
        "lung_volume_ml": round(n_lung * voxel_ml, 1),
        "lesion_types": "model" if types is not None else None,
        "infection_unet_sha256": sha256_file(model),
        "variant": settings.get("variant"),
    }
    if types is not None:
        for code, name in ((1, "ggo"), (2, "consolidation")):
            n = int(np.count_nonzero(types == code))
            result[f"seg_{name}_ml"] = round(n * voxel_ml, 1)
            result[f"seg_{name}_percent"] = round(100.0 * n / n_lung, 2)
    write_json(out_json, result)
    label_map = sitk.GetArrayFromImage(read_volume(labels))
    kinds = (
        f", ground-glass {result['seg_ggo_percent']:.1f}%, consolidation {result['seg_consolidation_percent']:.1f}%"
        if types is not None
        else ""
    )
    write_png(
        out_png,
        montage(hu, label_map, n_slices=n_slices, overlay=infected),
        title=f"{patient}  infection {score:.1f}% of lung ({result['seg_severity_class']}){kinds}",
    )
    log.info(
        "patient %s: infection %.1f%% of lung (%.0f of %.0f mL)%s",
        patient,
        score,
        result["infection_volume_ml"],
        result["lung_volume_ml"],
        kinds,
    )
    return result


def _same_grid(reference, image, what: str, path: str | Path, patient: str) -> None:
    """``image`` (read from ``path``) lies on ``reference``'s grid, or a clear error."""
    same = (
        reference.GetSize() == image.GetSize()
        and np.allclose(reference.GetSpacing(), image.GetSpacing(), atol=1e-4)
        and np.allclose(reference.GetOrigin(), image.GetOrigin(), atol=1e-3)
        and np.allclose(reference.GetDirection(), image.GetDirection(), atol=1e-6)
    )
    if not same:
        raise CovidctError(f"the {what} is not on the resampled volume's grid", patient, path)


def severity_readout(
    volume: str | Path,
    labels: str | Path,
    infection: str | Path,
    hu_info: str | Path | None,
    out_json: str | Path,
    out_png: str | Path,
    patient: str,
    lobes: str | Path | list | None = None,
    types: str | Path | list | None = None,
    infection_info: str | Path | None = None,
    high_opacity_hu: float = -200.0,
    consolidation_above_hu: float = -200.0,
    min_lesion_ml: float = 0.5,
) -> dict:
    """The clinical severity read-out of one patient (``covidct.severity.readout``): per lobe (``lobes``, a lobe
    model's map) or per geometric zone (no ``lobes``) volume, infected percent and 0-5 score, CTSS or
    zone score, PO and PHO per lung and total, ground-glass and consolidation (from ``types``, a
    lesion-type map 1 ground-glass / 2 consolidation, else HU bands), the severity class of the PO;
    the JSON (with the anonymizer's shifted study date from ``hu_info``, the HU step's JSON, when
    given) and the severity panel PNG.
    All maps lie on the resampled volume's grid; ``lobes``/``types`` may be empty lists (none). When the
    infection step's JSON (``infection_info``) says its model has no lesion-type head, ``types`` is ignored."""
    import SimpleITK as sitk

    from covidct.severity.panel import severity_panel
    from covidct.severity.readout import severity_readout as read_out

    t0 = time.perf_counter()
    image = read_volume(volume)
    arrays = {}
    for what, path in (
        ("lung label map", labels),
        ("infection mask", infection),
        ("lobe map", lobes),
        ("lesion-type map", types),
    ):
        if not path:
            arrays[what] = None
            continue
        other = read_volume(path)
        _same_grid(image, other, what, path, patient)
        arrays[what] = sitk.GetArrayFromImage(other)
    if infection_info and read_json(infection_info).get("lesion_types") != "model":
        arrays["lesion-type map"] = None  # a binary U-Net's all-zero map: HU bands
    lung_labels = arrays["lung label map"]
    if not np.any(lung_labels):
        raise CovidctError("lung mask is empty: no severity read-out", patient, labels)
    hu = sitk.GetArrayFromImage(image)
    readout = read_out(
        hu,
        lung_labels,
        arrays["infection mask"],
        image.GetSpacing(),
        lobes=arrays["lobe map"],
        types=arrays["lesion-type map"],
        high_opacity_hu=high_opacity_hu,
        consolidation_above_hu=consolidation_above_hu,
        min_lesion_ml=min_lesion_ml,
    )
    study = read_json(hu_info).get("study", {}) if hu_info else {}
    result = {
        "patient_id": patient,
        "study_date": study.get("study_date"),
        "study_date_note": study.get("study_date_note"),
        "regions_from": (
            f"lobe map {Path(lobes).name}"
            if lobes and readout.scheme.name == "lobes"
            else "six geometric zones (thirds of each lung's height)"
        ),
        **readout.result,
    }
    total = (
        f"CTSS {result['ctss']}/25"
        if readout.scheme.name == "lobes"
        else f"zone score {result['zone_score']}/30 (zones)"
    )
    date = f"  scan date {result['study_date']} (shifted)" if result["study_date"] else ""
    severity_panel(
        hu,
        readout.regions,
        readout.types,
        result,
        readout.scheme,
        out_png,
        f"{patient}{date}: PO {result['po']:.1f} % ({result['po_severity_class']}), PHO {result['pho']:.1f} %, {total}",
    )
    result["step_seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out_json, result)
    log.info(
        "patient %s: %s, PO %.1f %%, PHO %.1f %%, %s; QC flags: %s",
        patient,
        readout.scheme.name,
        result["po"],
        result["pho"],
        total,
        "; ".join(result["qc"]["flags"]) or "none",
    )
    return result


# ------------------------------------------------------------------------- the cohort


def build_hdf5(
    npy: list[str],
    out_train: str | Path,
    out_val: str | Path,
    out_test: str | Path,
    out_split: str | Path,
    patients: list[dict],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    salt: str = "covidct-split",
    shape=(64, 128, 128),
    hu_window=(-1000.0, 400.0),
    dtype: str = "float16",
) -> dict:
    """Split labeled patients by subject into train/val/test and stream their arrays into three HDF5 files.

    Args:
        npy: One ``.npy`` per entry of ``patients``, same order.
        patients: Labeled patients: dicts with patient_id, label, score ("" if unknown), split ("" or
            pinned) and subject_id ("" = the scan is its own subject).
    """
    import pandas as pd

    from covidct.models.data import write_hdf5
    from covidct.split import SPLITS, assign_split, subject_key

    if len(npy) != len(patients):
        raise CovidctError(f"{len(npy)} arrays for {len(patients)} patients")
    ids = [p["patient_id"] for p in patients]
    subjects = {p["patient_id"]: subject_key(p["patient_id"], p.get("subject_id", "")) for p in patients}
    splits = assign_split(
        ids, val_fraction, test_fraction, salt, {p["patient_id"]: p.get("split", "") for p in patients}, subjects
    )

    def samples(which):
        for path, p in zip(npy, patients):
            if splits[p["patient_id"]] != which:
                continue
            array = np.load(path, mmap_mode="r")
            score = float(p["score"]) if str(p.get("score", "")).strip() else float("nan")
            yield p["patient_id"], np.asarray(array), int(p["label"]), score

    outputs = dict(zip(SPLITS, (out_train, out_val, out_test)))
    counts = {which: write_hdf5(path, samples(which), shape, hu_window, dtype) for which, path in outputs.items()}
    table = pd.DataFrame(
        {
            "patient_id": ids,
            "subject_id": [subjects[i] for i in ids],
            "split": [splits[i] for i in ids],
            "label": [p["label"] for p in patients],
            "score": [p.get("score", "") for p in patients],
        }
    )
    with atomic_path(out_split, suffix=".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    n_subjects = {which: table[table["split"] == which]["subject_id"].nunique() for which in SPLITS}
    log.info("datasets: %s scans; subjects %s", counts, n_subjects)
    return counts


def train_classifier(
    train_set: str | Path,
    val_set: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_training: str | Path,
    out_roc: str | Path,
    train: dict,
) -> dict:
    """Train the COVID-19 classifier with the ``train`` config block (``covidct.models.train``)."""
    from covidct.models.train import train_classifier as fit

    settings = {k: v for k, v in train.items() if k != "scorer"}
    return fit(train_set, val_set, out_model, out_sidecar, out_history, out_metrics, out_training, out_roc, **settings)


def train_scorer(
    train_set: str | Path,
    val_set: str | Path,
    out_model: str | Path,
    out_sidecar: str | Path,
    out_history: str | Path,
    out_metrics: str | Path,
    out_training: str | Path,
    out_scatter: str | Path,
    out_confusion: str | Path,
    train: dict,
) -> dict:
    """Train the severity scorer with the ``train`` config block and its ``scorer`` settings."""
    from covidct.models.train import train_scorer as fit

    settings = {k: v for k, v in train.items() if k != "scorer"}
    scorer = train.get("scorer", {})
    return fit(
        train_set,
        val_set,
        out_model,
        out_sidecar,
        out_history,
        out_metrics,
        out_training,
        out_scatter,
        out_confusion,
        positives_only=scorer.get("positives_only", True),
        loss=scorer.get("loss", "huber"),
        **settings,
    )


def predict(
    npy: list[str],
    split: str | Path,
    classifier: str | Path,
    classifier_sidecar: str | Path,
    scorer: str | Path,
    out_csv: str | Path,
    patient_ids: list[str],
    infection: list[str] | None = None,
    severity: list[str] | None = None,
    labeled: list[str] = (),
) -> None:
    """Predictions for every patient (labeled or not): probability, label, score, class, CTSI, the
    segmentation severity (``seg_*``) from each patient's infection JSON and the clinical read-out
    (CTSS or zone score, per-region scores, PO, PHO, lesion types, PO class) from each patient's
    severity JSON, when given.

    ``split`` is train/val/test from the data sets the models were trained on, ``new`` for a labeled
    patient the models have not seen (``retrain: false``), ``unlabeled`` otherwise."""
    import pandas as pd

    from covidct.models.predict import SEG_COLUMNS, predict_arrays, write_predictions
    from covidct.severity.readout import readout_row

    splits = pd.read_csv(split, sep="\t", dtype=str).set_index("patient_id")["split"].to_dict()
    threshold = float(read_json(classifier_sidecar)["threshold"])
    rows = predict_arrays(((pid, np.load(path)) for pid, path in zip(patient_ids, npy)), classifier, scorer, threshold)
    for row in rows:
        row["split"] = splits.get(row["patient_id"], "unlabeled" if row["patient_id"] not in labeled else "new")
    for row, path in zip(rows, infection or []):
        seg = read_json(path)
        if seg["patient_id"] != row["patient_id"]:
            raise CovidctError(f"infection result {path} is for another patient", row["patient_id"])
        row.update({k: seg[k] for k in SEG_COLUMNS})
    for row, path in zip(rows, severity or []):
        result = read_json(path)
        if result["patient_id"] != row["patient_id"]:
            raise CovidctError(f"severity read-out {path} is for another patient", row["patient_id"])
        row.update(readout_row(result))
    write_predictions(rows, out_csv)


def severity_cohort(readouts: list[str], out_csv: str | Path, patients: list[dict]) -> None:
    """The cohort table of the severity read-outs (``results/severity/cohort.csv``): per patient its
    subject, shifted study date, the sheet's score and the read-out's columns. ``patients``: the
    sheet's rows (patient_id, score, subject_id)."""
    from covidct.severity.cohort import cohort_rows, write_cohort_table

    write_cohort_table(cohort_rows([read_json(path) for path in readouts], patients), out_csv)


def severity_vs_score(table: str | Path, out_png: str | Path) -> None:
    """The cohort plot of PO against the sheet's score, for the patients that have one."""
    from covidct.severity.cohort import plot_po_vs_score, read_cohort_table

    plot_po_vs_score(read_cohort_table(table), out_png)


def severity_followup(table: str | Path, out_png: str | Path) -> None:
    """Each subject's scores over its (shifted) scan dates, for the subjects with several scans."""
    from covidct.severity.cohort import read_cohort_table
    from covidct.severity.followup import follow_up, follow_up_subjects

    subjects, undated = follow_up_subjects(read_cohort_table(table))
    if not subjects:
        log.warning("no subject has a dated scan (dates removed by the anonymizer?): the plot says so")
    follow_up(subjects, out_png, undated)


#: What the demo's metrics page says first.
DEMO_WARNING = (
    "Demo cohort: these numbers only show that the pipeline runs. The synthetic patients are few and "
    "the networks tiny; nothing here measures how well the models work."
)


def evaluate(
    predictions: str | Path,
    split: str | Path,
    classifier_sidecar: str | Path,
    scorer_sidecar: str | Path,
    out_evaluation: str | Path,
    out_roc: str | Path,
    out_calibration: str | Path,
    out_scatter: str | Path,
    out_confusion: str | Path,
    evaluation: dict | None = None,
    demo: bool = False,
) -> dict:
    """Test-split figures of both models (the headline), val figures apart, with bootstrap intervals by
    subject, calibration, baselines, and "not interpretable" below ``evaluation["min_subjects"]``;
    test plots. ``evaluation`` is the config block (bootstrap, seed, min_subjects, confidence,
    calibration_bins)."""
    import pandas as pd

    from covidct.evaluation.reports import evaluate_predictions
    from covidct.report.plots import calibration, roc_curve, score_scatter, severity_confusion

    e = {
        "bootstrap": 2000,
        "seed": 0,
        "min_subjects": 10,
        "confidence": 0.95,
        "calibration_bins": 5,
        **(evaluation or {}),
    }
    preds = pd.read_csv(predictions, dtype={"patient_id": str})
    table = pd.read_csv(split, sep="\t", dtype=str, keep_default_na=False)
    clf, reg = read_json(classifier_sidecar), read_json(scorer_sidecar)
    positives_only = bool(reg.get("positives_only", True))
    result = evaluate_predictions(
        preds,
        table,
        float(clf["threshold"]),
        positives_only,
        float(reg["train_mean"]),
        e["bootstrap"],
        e["seed"],
        e["min_subjects"],
        e["confidence"],
        e["calibration_bins"],
    )
    result["demo"] = demo
    if demo:
        result["warning"] = DEMO_WARNING
    write_json(out_evaluation, result)
    test = table[table["split"] == "test"].merge(
        preds[["patient_id", "covid_probability", "score", "seg_score"]].rename(columns={"score": "predicted"}),
        on="patient_id",
    )
    c = result["classifier"]["test"]
    suffix = "" if c["interpretable"] else f": {c['reason']}"
    auc = c["metrics"]["auc"]["value"] if c["interpretable"] else None
    roc_curve(test["label"].astype(int), test["covid_probability"], out_roc, auc, title=f"ROC (test){suffix}")
    calibration(c["calibration"], out_calibration, title=f"Calibration (test){suffix}")
    scored = test[(test["score"] != "") & ((test["label"] == "1") | (not positives_only))]
    r = result["scorer"]["test"]
    rsuffix = "" if r["interpretable"] else f": {r['reason']}"
    score_scatter(
        scored["score"].astype(float),
        scored["predicted"],
        out_scatter,
        title=f"Severity score (test){rsuffix}",
        baseline=pd.to_numeric(scored["seg_score"], errors="coerce"),
        baseline_label="segmentation (seg_score)",
    )
    severity_confusion(
        scored["score"].astype(float), scored["predicted"], out_confusion, title=f"Severity class (test){rsuffix}"
    )
    log.info(
        "evaluation: test classifier %s; scorer %s", c["reason"] or "interpretable", r["reason"] or "interpretable"
    )
    return result


def cross_validate(
    train_set: str | Path,
    val_set: str | Path,
    split: str | Path,
    out_cv: str | Path,
    folds: int,
    salt: str,
    train: dict,
    evaluation: dict | None = None,
) -> dict:
    """k-fold cross-validation of both models over train + val by subject (``covidct.models.train.cross_validate``)."""
    from covidct.models.train import cross_validate as run

    e = {"bootstrap": 2000, "min_subjects": 10, **(evaluation or {})}
    common = {k: v for k, v in train.items() if k != "scorer"}
    scorer = {
        **common,
        "loss": train.get("scorer", {}).get("loss", "huber"),
        "positives_only": train.get("scorer", {}).get("positives_only", True),
    }
    return run(train_set, val_set, split, out_cv, folds, salt, e["bootstrap"], e["min_subjects"], common, scorer)


def summarize(
    evaluation: str | Path,
    classifier: str | Path,
    scorer: str | Path,
    infection: str | Path,
    split: str | Path,
    out_metrics: str | Path,
    out_cohort: str | Path,
    out_label: str | Path,
    out_severity: str | Path,
    out_ctsi: str | Path,
    n_unlabeled: int = 0,
    cross_validation: str | Path | list | None = None,
) -> None:
    """The metrics page of the report (``covidct.report.metrics_page``), plus the cohort summary
    (``covidct.report.cohort``).

    It leads with the test split's figures and their confidence intervals (or "not interpretable
    (n=...)"), with the baselines beside them; then cross-validation when it was run; then the
    validation figures, apart, as the split that chose checkpoints and threshold. ``classifier``,
    ``scorer`` and ``infection`` are the training metrics of the three models; ``cross_validation``
    the cross-validation results, or nothing (None or an empty list) when it was not run.
    """
    from covidct.report.cohort import cohort_summary
    from covidct.report.metrics_page import metrics_page

    cohort_summary(split, n_unlabeled, out_cohort, out_label, out_severity, out_ctsi)
    page = metrics_page(
        read_json(evaluation),
        read_json(classifier),
        read_json(scorer),
        read_json(infection),
        read_json(cross_validation) if cross_validation else None,
    )  # [] when not run
    with atomic_path(out_metrics, suffix=".html") as tmp:
        tmp.write_text(page)
