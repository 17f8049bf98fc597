"""``covidct <verb>``: each per-patient step on one patient, without Snakemake.

Thin: argparse, then calls into ``covidct.steps``. Defaults match config/config.yaml.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from covidct import __version__
from covidct.errors import CovidctError


def _patient(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient", required=True, help="pseudonymous patient id used in messages and outputs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="covidct", description=__doc__)
    parser.add_argument("--version", action="version", version=f"covidct {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("synth", help="write the synthetic demo cohort (DICOM + patient sheet + truth)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--patients", nargs="*", help="only these demo ids")

    p = sub.add_parser("anonymize", help="anonymize one patient's DICOM folder (PS3.15 Basic Profile)")
    p.add_argument("raw_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    _patient(p)
    p.add_argument("--key-file", help="secret file (else $COVIDCT_ANON_KEY)")
    p.add_argument("--dates", choices=["shift", "remove"], default="shift")
    p.add_argument("--summary", type=Path, help="also write the summary JSON here (what was skipped, by rank)")

    p = sub.add_parser("verify", help="check an anonymized folder against the original")
    p.add_argument("raw_dir", type=Path)
    p.add_argument("anon_dir", type=Path)
    p.add_argument("report", type=Path)
    _patient(p)

    p = sub.add_parser("hu", help="DICOM folder to a HU NIfTI volume")
    p.add_argument("dicom_dir", type=Path)
    p.add_argument("out_volume", type=Path)
    p.add_argument("--info", type=Path, help="series-choice JSON (default: beside the volume)")
    _patient(p)
    p.add_argument("--series-uid")
    p.add_argument("--min-slices", type=int, default=3)
    p.add_argument("--max-slices", type=int, default=5000, help="refuse a series with more slices (default 5000)")
    p.add_argument("--anonymize-summary", type=Path,
                   help="the anonymizer's summary JSON: its skip list goes into the HU JSON")

    p = sub.add_parser("resample", help="resample a volume to isotropic spacing")
    p.add_argument("in_volume", type=Path)
    p.add_argument("out_volume", type=Path)
    p.add_argument("--spacing-mm", type=float, default=1.5)

    p = sub.add_parser("segment", help="lung mask (threshold or lungmask R231)")
    p.add_argument("in_volume", type=Path)
    p.add_argument("out_mask", type=Path)
    _patient(p)
    p.add_argument("--backend", choices=["threshold", "lungmask"], default="threshold")
    p.add_argument("--weights", help="R231 weights file (default: torch hub cache)")
    p.add_argument("--force-cpu", action="store_true")
    p.add_argument("--batch-size", type=int, default=20)

    p = sub.add_parser("export", help="model-ready .npy from a volume and its lung mask")
    p.add_argument("in_volume", type=Path)
    p.add_argument("in_mask", type=Path)
    p.add_argument("out_npy", type=Path)
    _patient(p)
    p.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], metavar=("D", "H", "W"))
    p.add_argument("--margin-mm", type=float, default=5.0)
    p.add_argument("--hu-window", type=float, nargs=2, default=[-1000.0, 400.0], metavar=("LO", "HI"))

    p = sub.add_parser("qc", help="QC montage PNG of a lung mask")
    p.add_argument("in_volume", type=Path)
    p.add_argument("in_labels", type=Path)
    p.add_argument("out_png", type=Path)
    _patient(p)
    p.add_argument("--n-slices", type=int, default=12)

    p = sub.add_parser("run", help="the whole per-patient chain on one DICOM folder")
    p.add_argument("raw_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    _patient(p)
    p.add_argument("--key-file")
    p.add_argument("--backend", choices=["threshold", "lungmask"], default="threshold")
    p.add_argument("--weights")
    p.add_argument("--spacing-mm", type=float, default=1.5)
    p.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], metavar=("D", "H", "W"))
    p = sub.add_parser("predict", help="the whole per-patient chain plus both models on one new patient")
    p.add_argument("raw_dir", type=Path)
    p.add_argument("--patient", default="new01", help="pseudonymous id (default new01)")
    p.add_argument("--models", type=Path, default=Path("results/models"),
                   help="folder with classifier.keras and scorer.keras, and optionally "
                   "infection_unet.keras (default results/models)")
    p.add_argument("--out-dir", type=Path, help="keep the intermediate files here (default: a temporary folder)")
    p.add_argument("--key-file")
    p.add_argument("--backend", choices=["threshold", "lungmask"], default="threshold")
    p.add_argument("--weights")
    p.add_argument("--spacing-mm", type=float, default=1.5)
    p = sub.add_parser("lung-eval", help="Dice/HD95/volume of a lung mask against a reference (RTSTRUCT or label map)")
    p.add_argument("in_labels", type=Path, help="the mask's label map (<patient>_labels.nii.gz; a binary mask works)")
    p.add_argument("reference", type=Path, help="RTSTRUCT file (or a folder with one) or a NIfTI label map "
                   "(1 right, 2 left lung)")
    p.add_argument("out_json", type=Path)
    _patient(p)
    p.add_argument("--right-roi", help="regular expression of the right lung ROI name (full match, any case)")
    p.add_argument("--left-roi", help="regular expression of the left lung ROI name")
    p.add_argument("--lesion-roi", help="regular expression of lesion ROIs added for the 'with lesions' "
                   "figures ('' for none; default: GTV or GTV-1)")
    p.add_argument("--contour-shift-mm", type=float, nargs=2, default=[0.0, 0.0], metavar=("DX", "DY"),
                   help="added to every contour vertex (a structure set written with the pixel-corner "
                   "convention: minus half the CT pixel spacing)")
    p = sub.add_parser("segment-eval", help="Dice/IoU/accuracy/sensitivity/specificity of an infection U-Net")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True, help="folder of slices (e.g. Imgs/)")
    p.add_argument("--masks", type=Path, required=True, help="folder of masks with the same stems (e.g. GT/)")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON")
    p.add_argument("--threshold", type=float, default=0.5)
    return parser


def _predict_one(a: argparse.Namespace) -> None:
    import tempfile

    import numpy as np

    from covidct.models.predict import COLUMNS, SEG_COLUMNS, predict_arrays

    classifier, scorer = a.models / "classifier.keras", a.models / "scorer.keras"
    for model in (classifier, scorer):
        if not model.is_file():
            raise CovidctError("model not found: train first (snakemake) or pass --models", path=model)
    with tempfile.TemporaryDirectory() as tmp:
        a.out_dir = a.out_dir or Path(tmp)
        import json

        shape = json.loads(classifier.with_suffix(".json").read_text())["shape"]
        a.shape = shape
        _run_chain(a)
        array = np.load(a.out_dir / "npy" / f"{a.patient}.npy")
        row = predict_arrays([(a.patient, array)], classifier, scorer)[0]
        unet = a.models / "infection_unet.keras"
        if unet.is_file():
            from covidct import steps

            out, pid = a.out_dir, a.patient
            mask = out / "lung_mask" / f"{pid}.nii.gz"
            seg = steps.segment_infection(out / "resampled" / f"{pid}.nii.gz", mask, _labels_path(mask), unet,
                                          out / "infection_mask" / f"{pid}.nii.gz",
                                          out / "infection_mask" / f"{pid}.json", out / "qc" / f"{pid}_infection.png",
                                          pid)
            row.update({k: seg[k] for k in SEG_COLUMNS})
    row["split"] = "new"
    for col in COLUMNS:
        print(f"{col}\t{row.get(col, '')}")


def _labels_path(mask: Path) -> Path:
    name = mask.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else mask.stem
    return mask.with_name(f"{stem}_labels.nii.gz")


def _run_chain(a: argparse.Namespace) -> None:
    from covidct import steps

    out, pid = a.out_dir, a.patient
    summary = out / "anonymized" / f"{pid}.json"
    steps.anonymize(a.raw_dir, out / "anonymized" / pid, pid, key_file=a.key_file, summary_path=summary)
    steps.verify(a.raw_dir, out / "anonymized" / pid, out / "verify" / f"{pid}.json", pid)
    steps.dicom_to_hu(out / "anonymized" / pid, out / "hu" / f"{pid}.nii.gz", out / "hu" / f"{pid}.json", pid,
                      anonymize_summary=summary)
    steps.resample(out / "hu" / f"{pid}.nii.gz", out / "resampled" / f"{pid}.nii.gz", a.spacing_mm)
    mask = out / "lung_mask" / f"{pid}.nii.gz"
    steps.segment_lungs(out / "resampled" / f"{pid}.nii.gz", mask, _labels_path(mask),
                        out / "lung_mask" / f"{pid}.json", pid, backend=a.backend, weights=a.weights)
    steps.export_npy(out / "resampled" / f"{pid}.nii.gz", mask, out / "npy" / f"{pid}.npy", pid, shape=a.shape)
    steps.qc_montage(out / "resampled" / f"{pid}.nii.gz", _labels_path(mask), out / "qc" / f"{pid}.png", pid,
                     provenance=out / "lung_mask" / f"{pid}.json")
    if a.verb == "run":
        print(f"{pid}: outputs under {out}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``covidct`` command."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from covidct import steps

    try:
        if a.verb == "synth":
            from covidct.demo.cohort import DEMO_COHORT, write_cohort

            specs = [s for s in DEMO_COHORT if not a.patients or s.patient_id in a.patients]
            print(write_cohort(a.out_dir, specs))
        elif a.verb == "anonymize":
            print(steps.anonymize(a.raw_dir, a.out_dir, a.patient, key_file=a.key_file, dates=a.dates,
                                  summary_path=a.summary))
        elif a.verb == "verify":
            steps.verify(a.raw_dir, a.anon_dir, a.report, a.patient)
            print(f"{a.patient}: verification passed, report {a.report}")
        elif a.verb == "hu":
            info = a.info or a.out_volume.with_name(a.out_volume.name.split(".")[0] + ".json")
            steps.dicom_to_hu(a.dicom_dir, a.out_volume, info, a.patient, a.series_uid, a.min_slices,
                              a.max_slices, anonymize_summary=a.anonymize_summary)
        elif a.verb == "resample":
            steps.resample(a.in_volume, a.out_volume, a.spacing_mm)
        elif a.verb == "segment":
            prov = a.out_mask.with_name(a.out_mask.name.split(".")[0] + ".json")
            steps.segment_lungs(a.in_volume, a.out_mask, _labels_path(a.out_mask), prov, a.patient,
                                backend=a.backend, weights=a.weights, force_cpu=a.force_cpu,
                                batch_size=a.batch_size)
        elif a.verb == "export":
            steps.export_npy(a.in_volume, a.in_mask, a.out_npy, a.patient, tuple(a.shape), a.margin_mm,
                             tuple(a.hu_window))
        elif a.verb == "qc":
            steps.qc_montage(a.in_volume, a.in_labels, a.out_png, a.patient, a.n_slices)
        elif a.verb == "run":
            _run_chain(a)
        elif a.verb == "predict":
            _predict_one(a)
        elif a.verb == "lung-eval":
            result = steps.evaluate_lung_mask(a.in_labels, a.out_json, a.patient, reference=a.reference,
                                              right_roi=a.right_roi, left_roi=a.left_roi, lesion_roi=a.lesion_roi,
                                              contour_shift_mm=tuple(a.contour_shift_mm))
            for name, row in result["lungs"].items():
                print(f"{name}\tdice={row['dice']}\thd95_mm={row['hd95_mm']}\tvolume_diff_ml={row['volume_diff_ml']}")
            if "lungs_with_lesions" in result:
                row = result["lungs_with_lesions"]
                print(f"with lesions\tdice={row['dice']}\thd95_mm={row['hd95_mm']}\tvolume_diff_ml={row['volume_diff_ml']}")
        elif a.verb == "segment-eval":
            from covidct.segmentation import evaluate_folder

            result = evaluate_folder(a.model, a.images, a.masks, a.out, a.threshold)
            print(" ".join(f"{k}={v:.4f}" for k, v in result["mean"].items()), f"(n={result['n_images']})")
    except CovidctError as exc:
        print(f"covidct {a.verb}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
