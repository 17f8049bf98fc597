"""The per-patient steps, file in / file out. Workflow scripts and the command
line both call these; all real work lives in the modules they call."""

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
        raise _redact(AnonymizationError(f"cannot read the DICOM input ({type(exc).__name__})", patient,
                                         exc.filename or raw_dir), raw_dir, patient) from None


def anonymize(raw_dir: str | Path | None, out_dir: str | Path, patient: str, key_file: str | None = None,
              allow_demo_key: bool = False, dates: str = "shift", sheet: str | Path | None = None,
              summary_path: str | Path | None = None) -> dict:
    """Anonymize a patient's raw DICOM folder into ``out_dir`` (Basic Profile, keyed pseudonyms).

    The folder is ``raw_dir``, or looked up in ``sheet`` when ``raw_dir`` is None. The summary
    (counts, transfer syntaxes, and what was skipped in the raw folder, by category and rank:
    never a file name) is returned, logged, and written to ``summary_path`` when given, where the
    HU step picks it up for its JSON.
    """
    from covidct.deid.keys import load_key
    from covidct.deid.series import anonymize_series_dir

    raw_dir = Path(raw_dir) if raw_dir is not None else raw_dicom_dir(sheet, patient)
    if not str(raw_dir).strip() or str(raw_dir) == ".":
        raise CovidctError("the sheet's dicom_dir is empty", patient)
    if not raw_dir.is_dir():
        raise CovidctError("the sheet's dicom_dir does not exist or is not a folder", patient,
                           f"<dicom_dir of {patient}>")
    key = load_key(key_file, allow_demo=allow_demo_key)
    summary = _raw_step(raw_dir, patient,
                        lambda: anonymize_series_dir(raw_dir, Path(out_dir), key, patient, dates=dates))
    log.info("patient %s: anonymized %s", patient, summary)
    if summary_path is not None:
        write_json(summary_path, summary)
    return summary


def verify(raw_dir: str | Path | None, anon_dir: str | Path, report_path: str | Path, patient: str,
           sheet: str | Path | None = None) -> dict:
    """Check the anonymized folder against the original; write the report, raise if it failed.

    The original folder is ``raw_dir``, or looked up in ``sheet`` when ``raw_dir`` is None.
    """
    from covidct.deid.verify import verify_anonymization

    raw_dir = Path(raw_dir) if raw_dir is not None else raw_dicom_dir(sheet, patient)
    report = _raw_step(raw_dir, patient, lambda: verify_anonymization(raw_dir, Path(anon_dir), patient))
    if not report["passed"]:
        failed = Path(report_path).with_suffix(".failed.json")
        write_json(failed, report)
        raise AnonymizationError(
            f"anonymization verification failed: {len(report.get('leaks', []))} leak(s), "
            f"{report.get('pixel_mismatches', 0)} pixel and {report.get('geometry_mismatches', 0)} geometry "
            f"mismatch(es); report in {failed}", patient, anon_dir)
    write_json(report_path, report)
    return report


def dicom_to_hu(anon_dir: str | Path, out_volume: str | Path, out_info: str | Path, patient: str,
                series_uid: str | None = None, min_slices: int = 3, max_slices: int | None = None,
                anonymize_summary: str | Path | None = None) -> dict:
    """Choose the CT axial series, convert to HU, write an int16 NIfTI with true geometry.

    ``max_slices`` (default ``covidct.dicom.series.MAX_SLICES``) refuses a series too large to hold.
    The JSON names the chosen series (kernel, thickness, description where the anonymizer kept
    one), its compression (lossy or not, and why), the shifted study date, and the files skipped:
    ``files.dicom_dir`` those of the raw folder (from ``anonymize_summary``, the anonymizer's
    summary, when given), ``files.input`` those of the folder this step read.
    """
    from covidct.dicom.files import describe_skips
    from covidct.dicom.hu import load_series
    from covidct.dicom.series import MAX_SLICES

    image, info = load_series(anon_dir, patient, series_uid=series_uid, min_slices=min_slices,
                              max_slices=MAX_SLICES if max_slices is None else max_slices)
    files = {"input": info.pop("files"), "dicom_dir": None}
    if anonymize_summary is not None:
        files["dicom_dir"] = read_json(anonymize_summary)["files"]
        log.info("patient %s: the anonymizer skipped %d of %d files of the raw folder: %s", patient,
                 files["dicom_dir"]["n_skipped"], files["dicom_dir"]["n_files"], describe_skips(files["dicom_dir"]))
    info["files"] = files
    write_volume(out_volume, image)
    info["patient"] = patient
    write_json(out_info, info)
    log.info("patient %s: HU volume %s, spacing %s", patient, info["shape_zyx"], info["spacing_xyz_mm"])
    return info


def resample(in_volume: str | Path, out_volume: str | Path, spacing_mm: float) -> None:
    """Resample a volume to isotropic ``spacing_mm`` on an LPS-aligned grid."""
    from covidct.volume import resample as resample_image

    write_volume(out_volume, resample_image(read_volume(in_volume), spacing_mm))


def segment_lungs(in_volume: str | Path, out_mask: str | Path, out_labels: str | Path, out_provenance: str | Path,
                  patient: str, backend: str = "threshold", weights: str | None = None, force_cpu: bool = False,
                  batch_size: int = 20, threshold: dict | None = None) -> dict:
    """Segment the lungs; write a binary mask, left/right labels and provenance JSON."""
    import SimpleITK as sitk

    from covidct.io import sha256_file
    from covidct.lungs.labels import versions, volume_stats
    from covidct.lungs.lungmask import lungmask_lungs, resolve_weights
    from covidct.lungs.qc import mask_qc
    from covidct.lungs.threshold import ThresholdParams, segment_threshold

    t0 = time.perf_counter()
    image = read_volume(in_volume)
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
        path = resolve_weights(weights, patient)
        prov["weights_file"] = path.name
        prov["weights_sha256"] = sha256_file(path)
        labels, stats = lungmask_lungs(image, path, force_cpu=force_cpu, batch_size=batch_size,
                                             patient=patient)
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
    log.info("patient %s: lungs %.0f mL (%s backend), QC flags: %s", patient, prov.get("lung_volume_ml", 0), backend,
             "; ".join(prov["qc"]["flags"]) or "none")
    return prov


def export_npy(in_volume: str | Path, in_mask: str | Path, out_npy: str | Path, patient: str,
               shape=(64, 128, 128), margin_mm: float = 5.0, hu_window=(-1000.0, 400.0)) -> np.ndarray:
    """Write the model-ready ``.npy`` (depth, height, width) float32 in [0, 1]."""
    import SimpleITK as sitk

    from covidct.models.inputs import model_array

    image = read_volume(in_volume)
    mask = sitk.GetArrayFromImage(read_volume(in_mask))
    if not mask.any():
        raise CovidctError("lung mask is empty: nothing to export", patient, in_mask)
    array = model_array(sitk.GetArrayViewFromImage(image), mask, image.GetSpacing(), tuple(shape), margin_mm,
                        tuple(hu_window))
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


def evaluate_lung_mask(in_labels: str | Path, out_json: str | Path, patient: str, reference: str | Path | None = None,
                       sheet: str | Path | None = None, right_roi: str | None = None, left_roi: str | None = None,
                       lesion_roi: str | None = None, contour_shift_mm: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Compare a patient's lung mask with a reference (RTSTRUCT or NIfTI label map): Dice, HD95 and
    volume difference per lung and both, written to ``out_json`` (``covidct.lungs.evaluation``).

    The reference is ``reference``, or the sheet's ``lung_reference`` when it is None; errors then
    name it ``<lung_reference of PATIENT>``, never by its path.
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
    kwargs = {"right_pattern": right_roi or RIGHT_LUNG_PATTERN,
              "left_pattern": left_roi or LEFT_LUNG_PATTERN,
              "lesion_pattern": LESION_PATTERN if lesion_roi is None else lesion_roi,
              "shift_mm": tuple(float(v) for v in contour_shift_mm)}
    try:
        return evaluate(in_labels, reference, out_json, patient, **kwargs)
    except CovidctError as exc:
        raise redact(exc) from None
    except OSError as exc:
        raise redact(CovidctError(f"cannot read the lung reference ({type(exc).__name__})", patient,
                                  exc.filename or reference)) from None


def lung_eval_table(in_jsons: list[str | Path], out_csv: str | Path) -> None:
    """The cohort table of lung masks against their references (one row per patient)."""
    import csv

    from covidct.lungs.evaluation import TABLE_COLUMNS, table_rows

    rows = table_rows([read_json(p) for p in in_jsons])
    with atomic_path(out_csv, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def qc_montage(in_volume: str | Path, in_labels: str | Path, out_png: str | Path, patient: str,
               n_slices: int = 12, provenance: str | Path | None = None) -> None:
    """Write the QC montage PNG of a patient's lung mask."""
    import SimpleITK as sitk

    from covidct.report.montage import montage, write_png

    hu = sitk.GetArrayFromImage(read_volume(in_volume))
    labels = sitk.GetArrayFromImage(read_volume(in_labels))
    title = f"{patient}"
    if provenance:
        prov = read_json(provenance)
        title += f"  lungs {prov.get('lung_volume_ml', 0) / 1000:.2f} L ({prov.get('backend')})"
        flags = prov.get("qc", {}).get("flags")
        if flags is not None:
            title += "  QC: " + ("ok" if not flags else f"{len(flags)} flag(s)\n" + "\n".join(flags))
    write_png(out_png, montage(hu, labels, n_slices=n_slices), title=title)


def synth_patient(patient_id: str, dicom_dir: str | Path, truth_dir: str | Path) -> dict:
    """Generate one patient of the built-in demo cohort (DICOM folder + truth files)."""
    from covidct.demo.cohort import DEMO_COHORT
    from covidct.demo.writer import write_patient

    specs = {spec.patient_id: spec for spec in DEMO_COHORT}
    if patient_id not in specs:
        raise CovidctError(f"not a demo cohort patient (demo ids: {', '.join(specs)})", patient_id)
    return write_patient(specs[patient_id], Path(dicom_dir), Path(truth_dir))


def synth_infection_training(out_dir: str | Path, n: int) -> None:
    """The default infection training source: ``n`` synthetic phantoms (not demo patients) as NIfTI."""
    from covidct.demo.cohort import write_infection_training

    with atomic_dir(out_dir) as tmp:
        write_infection_training(tmp, n)


def train_infection_unet(sources: list[dict], out_model: str | Path, out_metrics: str | Path, **params) -> dict:
    """Train the infection U-Net variants on the configured sources; keep the best by val Dice."""
    from covidct import infection

    return infection.train(sources, out_model, out_metrics, **params)


def segment_infection(in_volume: str | Path, in_mask: str | Path, in_labels: str | Path, model: str | Path,
                      out_mask: str | Path, out_json: str | Path, out_png: str | Path, patient: str,
                      n_slices: int = 8) -> dict:
    """Infection mask of one patient inside its lung mask, its severity, and a QC overlay PNG."""
    import SimpleITK as sitk

    from covidct import infection
    from covidct.io import sha256_file
    from covidct.report.montage import montage, write_png
    from covidct.severity import SEVERITY_CLASSES, ctsi, severity_class

    image = read_volume(in_volume)
    hu = sitk.GetArrayFromImage(image)
    lung = sitk.GetArrayFromImage(read_volume(in_mask)) > 0
    if not lung.any():
        raise CovidctError("lung mask is empty: no infection severity", patient, in_mask)
    net, sidecar = infection.load_unet(model)
    mask = infection.segment_volume(net, sidecar, hu, lung)
    out = sitk.GetImageFromArray(mask)
    out.CopyInformation(image)
    write_volume(out_mask, out)
    score = infection.severity(mask, lung)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    result = {"patient_id": patient, "seg_score": round(score, 2),
              "seg_severity_class": SEVERITY_CLASSES[severity_class(score)], "seg_ctsi": ctsi(score),
              "infection_volume_ml": round(int(mask.sum()) * voxel_ml, 1),
              "lung_volume_ml": round(int(lung.sum()) * voxel_ml, 1),
              "infection_unet_sha256": sha256_file(model), "variant": sidecar.get("variant")}
    write_json(out_json, result)
    labels = sitk.GetArrayFromImage(read_volume(in_labels))
    write_png(out_png, montage(hu, labels, n_slices=n_slices, overlay=mask),
              title=f"{patient}  infection {score:.1f}% of lung ({result['seg_severity_class']})")
    log.info("patient %s: infection %.1f%% of lung (%.0f of %.0f mL)", patient, score,
             result["infection_volume_ml"], result["lung_volume_ml"])
    return result


def build_datasets(npys: list[str], patients: list[dict], out_train: str | Path, out_val: str | Path,
                   out_test: str | Path, out_split: str | Path, val_fraction: float = 0.15,
                   test_fraction: float = 0.15, salt: str = "covidct-split", shape=(64, 128, 128),
                   hu_window=(-1000.0, 400.0), dtype: str = "float16") -> dict:
    """Split labeled patients by subject into train/val/test and stream their arrays into three HDF5 files.

    Args:
        npys: One ``.npy`` per entry of ``patients``, same order.
        patients: Labeled patients: dicts with patient_id, label, score ("" if unknown), split ("" or
            pinned) and subject_id ("" = the scan is its own subject).
    """
    import pandas as pd

    from covidct.models.data import write_hdf5
    from covidct.models.split import SPLITS, assign_split, subject_key

    if len(npys) != len(patients):
        raise CovidctError(f"{len(npys)} arrays for {len(patients)} patients")
    ids = [p["patient_id"] for p in patients]
    subjects = {p["patient_id"]: subject_key(p["patient_id"], p.get("subject_id", "")) for p in patients}
    splits = assign_split(ids, val_fraction, test_fraction, salt,
                          {p["patient_id"]: p.get("split", "") for p in patients}, subjects)

    def samples(which):
        for npy, p in zip(npys, patients):
            if splits[p["patient_id"]] != which:
                continue
            array = np.load(npy, mmap_mode="r")
            score = float(p["score"]) if str(p.get("score", "")).strip() else float("nan")
            yield p["patient_id"], np.asarray(array), int(p["label"]), score

    outputs = dict(zip(SPLITS, (out_train, out_val, out_test)))
    counts = {which: write_hdf5(path, samples(which), shape, hu_window, dtype) for which, path in outputs.items()}
    table = pd.DataFrame({"patient_id": ids, "subject_id": [subjects[i] for i in ids],
                          "split": [splits[i] for i in ids], "label": [p["label"] for p in patients],
                          "score": [p.get("score", "") for p in patients]})
    with atomic_path(out_split, suffix=".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    n_subjects = {which: table[table["split"] == which]["subject_id"].nunique() for which in SPLITS}
    log.info("datasets: %s scans; subjects %s", counts, n_subjects)
    return counts


def predict(npys: list[str], patient_ids: list[str], split_table: str | Path, classifier: str | Path,
            scorer: str | Path, out_csv: str | Path, infection: list[str] | None = None,
            labeled: list[str] = ()) -> None:
    """Predictions for every patient (labeled or not): probability, label, score, class, CTSI, and
    the segmentation severity (``seg_*``) from each patient's infection JSON when given.

    ``split`` is train/val from the data sets the models were trained on, ``new`` for a labeled
    patient the models have not seen (``retrain: false``), ``unlabeled`` otherwise."""
    import pandas as pd

    from covidct.models.predict import SEG_COLUMNS, predict_arrays, write_predictions

    splits = pd.read_csv(split_table, sep="\t", dtype=str).set_index("patient_id")["split"].to_dict()
    rows = predict_arrays(((pid, np.load(npy)) for pid, npy in zip(patient_ids, npys)), classifier, scorer)
    for row in rows:
        row["split"] = splits.get(row["patient_id"], "unlabeled" if row["patient_id"] not in labeled else "new")
    for row, path in zip(rows, infection or []):
        seg = read_json(path)
        if seg["patient_id"] != row["patient_id"]:
            raise CovidctError(f"infection result {path} is for another patient", row["patient_id"])
        row.update({k: seg[k] for k in SEG_COLUMNS})
    write_predictions(rows, out_csv)


def evaluate(predictions: str | Path, split_table: str | Path, classifier_sidecar: str | Path,
             scorer_sidecar: str | Path, out_json: str | Path, out_roc: str | Path, out_calibration: str | Path,
             out_scatter: str | Path, out_confusion: str | Path, n_boot: int = 2000, seed: int = 0,
             min_subjects: int = 10, confidence: float = 0.95, calibration_bins: int = 5,
             demo: bool = False) -> dict:
    """Test-split figures of both models (the headline), val figures apart, with bootstrap intervals by
    subject, calibration, baselines, and "not interpretable" below ``min_subjects``; test plots."""
    import pandas as pd

    from covidct.evaluation.reports import evaluate_predictions
    from covidct.report.plots import calibration, roc_curve, score_scatter, severity_confusion

    preds = pd.read_csv(predictions, dtype={"patient_id": str})
    split = pd.read_csv(split_table, sep="\t", dtype=str, keep_default_na=False)
    clf, reg = read_json(classifier_sidecar), read_json(scorer_sidecar)
    result = evaluate_predictions(
        preds, split, float(clf["threshold"]), bool(reg.get("positives_only", True)), float(reg["train_mean"]),
        n_boot, seed, min_subjects, confidence, calibration_bins)
    result["demo"] = demo
    if demo:
        result["warning"] = DEMO_WARNING
    write_json(out_json, result)
    test = split[split["split"] == "test"].merge(preds[["patient_id", "covid_probability", "score", "seg_score"]]
                                                 .rename(columns={"score": "predicted"}), on="patient_id")
    c = result["classifier"]["test"]
    suffix = "" if c["interpretable"] else f": {c['reason']}"
    auc = c["metrics"]["auc"]["value"] if c["interpretable"] else None
    roc_curve(test["label"].astype(int), test["covid_probability"], out_roc, auc, title=f"ROC (test){suffix}")
    calibration(c["calibration"], out_calibration, title=f"Calibration (test){suffix}")
    scored = test[(test["score"] != "") & ((test["label"] == "1") | (not reg.get("positives_only", True)))]
    r = result["scorer"]["test"]
    rsuffix = "" if r["interpretable"] else f": {r['reason']}"
    score_scatter(scored["score"].astype(float), scored["predicted"], out_scatter,
                        title=f"Severity score (test){rsuffix}",
                        baseline=pd.to_numeric(scored["seg_score"], errors="coerce"),
                        baseline_label="segmentation (seg_score)")
    severity_confusion(scored["score"].astype(float), scored["predicted"], out_confusion,
                             title=f"Severity class (test){rsuffix}")
    log.info("evaluation: test classifier %s; scorer %s", c["reason"] or "interpretable",
             r["reason"] or "interpretable")
    return result


#: What the demo's metrics page says first.
DEMO_WARNING = ("Demo cohort: these numbers only show that the pipeline runs. The synthetic patients are few and "
                "the networks tiny; nothing here measures how well the models work.")


def cross_validate(train_h5: str | Path, val_h5: str | Path, split_table: str | Path, out_json: str | Path,
                   folds: int, salt: str, train: dict, n_boot: int = 2000, min_subjects: int = 10) -> dict:
    """k-fold cross-validation of both models over train + val by subject (``covidct.models.train.cross_validate``)."""
    from covidct.models.train import cross_validate as run

    common = {k: v for k, v in train.items() if k != "scorer"}
    scorer = {**common, "loss": train.get("scorer", {}).get("loss", "huber"),
              "positives_only": train.get("scorer", {}).get("positives_only", True)}
    return run(train_h5, val_h5, split_table, out_json, folds, salt, n_boot, min_subjects, common, scorer)


def cohort_summary(split_table: str | Path, n_unlabeled: int, out_csv: str | Path, plot_dir: str | Path) -> None:
    """The cohort's distribution: patients by label, severity class and CTSI, per split."""
    import pandas as pd

    from covidct.models.split import SPLITS
    from covidct.report.plots import bar_counts
    from covidct.severity import SEVERITY_CLASSES, ctsi, severity_class

    t = pd.read_csv(split_table, sep="\t", dtype=str, keep_default_na=False)
    pos = t[t["label"] == "1"]
    scored = pos[pos["score"] != ""]
    by_label, by_class, by_ctsi = {}, {}, {}
    for split in SPLITS:
        s = t[t["split"] == split]
        by_label[split] = {"negative": int((s["label"] == "0").sum()), "COVID-19": int((s["label"] == "1").sum())}
        sc = scored[scored["split"] == split]["score"].astype(float)
        by_class[split] = {c: 0 for c in SEVERITY_CLASSES}
        by_ctsi[split] = {str(i): 0 for i in range(26)}
        for v in sc:
            by_class[split][SEVERITY_CLASSES[severity_class(v)]] += 1
            by_ctsi[split][str(ctsi(v))] += 1
    rows = []
    for kind, table in (("label", by_label), ("severity_class", by_class), ("ctsi", by_ctsi)):
        for split, counts in table.items():
            rows += [{"variable": kind, "value": k, "split": split, "patients": v} for k, v in counts.items()]
    rows.append({"variable": "label", "value": "unlabeled", "split": "none", "patients": int(n_unlabeled)})
    with atomic_path(out_csv, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    plot_dir = Path(plot_dir)
    bar_counts(by_label, plot_dir / "cohort_label.png", "Patients by label", "label")
    bar_counts(by_class, plot_dir / "cohort_severity.png", "COVID-19 patients by severity class",
                     "severity class")
    bar_counts(by_ctsi, plot_dir / "cohort_ctsi.png", "COVID-19 patients by CTSI", "CTSI")


def summarize(evaluation: str | Path, classifier_metrics: str | Path, scorer_metrics: str | Path,
              split_table: str | Path, n_unlabeled: int, out_html: str | Path, out_cohort: str | Path,
              plot_dir: str | Path, infection_metrics: str | Path | None = None,
              cross_validation: str | Path | None = None) -> None:
    """The metrics page of the report, plus the cohort summary.

    It leads with the test split's figures and their confidence intervals (or "not interpretable
    (n=...)"), with the baselines beside them; then cross-validation when it was run; then the
    validation figures, apart, as the split that chose checkpoints and threshold.
    """
    from covidct.report.metrics_page import metrics_page

    cohort_summary(split_table, n_unlabeled, out_cohort, plot_dir)
    page = metrics_page(read_json(evaluation), read_json(classifier_metrics), read_json(scorer_metrics),
                               read_json(infection_metrics) if infection_metrics else None,
                               read_json(cross_validation) if cross_validation else None)
    with atomic_path(out_html, suffix=".html") as tmp:
        tmp.write_text(page)
