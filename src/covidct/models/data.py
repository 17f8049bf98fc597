"""The data sets of the 3D models: the streaming HDF5 writer (one sample per chunk, memory flat
in the number of patients) and a reader for small files."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from covidct import config
from covidct.errors import CovidctError
from covidct.io import atomic_path
from covidct.split import SPLITS, assign_split, subject_key

log = logging.getLogger(__name__)


def write_hdf5(
    path: str | Path,
    samples: Iterable[tuple[str, np.ndarray, int, float]],
    shape: Sequence[int],
    hu_window: Sequence[float],
    dtype: str = config.default("dataset.dtype"),
) -> int:
    """Stream ``(patient_id, array, label, score)`` samples into an HDF5 file, atomically.

    One sample per chunk, gzip-compressed; memory does not grow with the number of
    samples (each array is written and dropped). Datasets: ``images`` (N, D, H, W, 1),
    ``labels`` uint8, ``scores`` float32, ``patient_ids``; attributes say how
    to get HU back: ``hu = value * (hu_max - hu_min) + hu_min``.

    Returns:
        The number of samples written.
    """
    shape = tuple(int(s) for s in shape)
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            images = f.create_dataset(
                "images",
                shape=(0, *shape, 1),
                maxshape=(None, *shape, 1),
                dtype=dtype,
                chunks=(1, *shape, 1),
                compression="gzip",
                compression_opts=1,
                shuffle=True,
            )
            labels = f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype="uint8", chunks=(1024,))
            scores = f.create_dataset("scores", shape=(0,), maxshape=(None,), dtype="float32", chunks=(1024,))
            ids = f.create_dataset(
                "patient_ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(1024,)
            )
            n = 0
            for pid, array, label, score in samples:
                if tuple(array.shape) != shape:
                    raise CovidctError(f"array shape {array.shape} differs from the configured {shape}", pid)
                for ds in (images, labels, scores, ids):
                    ds.resize(n + 1, axis=0)
                images[n] = array.astype(dtype)[..., None]
                labels[n] = label
                scores[n] = score
                ids[n] = pid
                n += 1
            images.attrs["hu_min"], images.attrs["hu_max"] = float(hu_window[0]), float(hu_window[1])
            images.attrs["description"] = "lung-masked CT, HU clipped to [hu_min, hu_max] and scaled to [0, 1]"
            images.attrs["axes"] = (
                "sample, depth (inferior->superior), height (anterior->posterior), width (patient right->left), channel"
            )
    return n


def read_hdf5(path: str | Path) -> dict:
    """Small HDF5 files whole (tests, metrics): images, labels, scores, patient_ids."""
    with h5py.File(path, "r") as f:
        return {
            "images": f["images"][...],
            "labels": f["labels"][...],
            "scores": f["scores"][...],
            "patient_ids": [s.decode() if isinstance(s, bytes) else s for s in f["patient_ids"][...]],
            "attrs": dict(f["images"].attrs),
        }


def build_datasets(
    npy: Sequence[str | Path],
    patients: Sequence[dict],
    out_sets: Sequence[str | Path],
    out_split: str | Path,
    val_fraction: float,
    test_fraction: float,
    salt: str,
    shape: Sequence[int],
    hu_window: Sequence[float],
    dtype: str = config.default("dataset.dtype"),
) -> dict[str, int]:
    """Split labeled patients by subject into train/val/test (``covidct.split``) and stream their arrays
    into one HDF5 file per split; write the split table.

    Args:
        npy: One ``.npy`` per entry of ``patients``, same order.
        patients: Labeled patients: dicts with patient_id, label, score ("" if unknown), split ("" or
            pinned) and subject_id ("" = the scan is its own subject).
        out_sets: The train, val and test HDF5 files (SPLITS' order).
        out_split: The split table (TSV: patient_id, subject_id, split, label, score).
        val_fraction, test_fraction, salt: The split (``assign_split``).
        shape, hu_window, dtype: The arrays' shape, their HU window, the storage type (``write_hdf5``).

    Returns:
        The scans in each split.
    """
    if len(npy) != len(patients):
        raise CovidctError(f"{len(npy)} arrays for {len(patients)} patients")
    ids = [p["patient_id"] for p in patients]
    subjects = {p["patient_id"]: subject_key(p["patient_id"], p.get("subject_id", "")) for p in patients}
    pinned = {p["patient_id"]: p.get("split", "") for p in patients}
    splits = assign_split(ids, val_fraction, test_fraction, salt, pinned, subjects)

    def samples(which):
        for path, p in zip(npy, patients):
            if splits[p["patient_id"]] != which:
                continue
            array = np.load(path, mmap_mode="r")
            score = float(p["score"]) if str(p.get("score", "")).strip() else float("nan")
            yield p["patient_id"], np.asarray(array), int(p["label"]), score

    counts = {which: write_hdf5(path, samples(which), shape, hu_window, dtype) for which, path in zip(SPLITS, out_sets)}
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
