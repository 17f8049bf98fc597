"""Patient-level train/val split and the streaming HDF5 writer/reader.

The split is a keyed hash of the pseudonymous id, compared with the validation
fraction: a patient's split depends on nothing but its own id (and the salt), so
it never changes when other patients are added. Stratification by label and
severity band holds in expectation (each stratum is sampled independently at
the same rate); the sheet's optional ``split`` column pins a patient.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.io import atomic_path

log = logging.getLogger(__name__)

#: Severity classes of the original study: lower bounds of Low, Mild, Moderate, Severe, Critical.
SEVERITY_BOUNDS = (0, 20, 40, 60, 80)
SEVERITY_CLASSES = ("Low", "Mild", "Moderate", "Severe", "Critical")
SPLITS = ("train", "val")


def severity_class(score: float) -> int:
    """Index of the severity class of a score (0 Low .. 4 Critical).

    >>> [severity_class(s) for s in (0, 19.9, 20, 59, 60, 79.99, 80, 100)]
    [0, 0, 1, 2, 3, 3, 4, 4]
    """
    if not 0 <= score <= 100:
        raise ValueError(f"score {score} outside 0-100")
    return int(np.searchsorted(SEVERITY_BOUNDS, score, side="right") - 1)


def ctsi(score: float) -> int:
    """CT severity index of the original study: score // 4 (0-25).

    >>> [ctsi(s) for s in (0, 3.9, 4, 50, 100)]
    [0, 0, 1, 12, 25]
    """
    return int(float(score) // 4)


def hash_unit(patient_id: str, salt: str) -> float:
    """A keyed hash of a pseudonymous id mapped to [0, 1)."""
    digest = hashlib.sha256(f"{salt}\x00{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(patient_ids: Sequence[str], val_fraction: float = 0.2, salt: str = "covidct-split",
                 pinned: dict[str, str] | None = None) -> dict[str, str]:
    """Train/val split, stable as the cohort grows.

    Args:
        patient_ids: Pseudonymous ids.
        val_fraction: Probability of a patient going to val.
        salt: Key of the hash; change it to draw another split.
        pinned: ``{patient_id: "train" | "val"}`` from the sheet, which wins.

    Returns:
        ``{patient_id: split}``.
    """
    pinned = pinned or {}
    out = {}
    for pid in patient_ids:
        forced = pinned.get(pid, "")
        if forced:
            if forced not in SPLITS:
                raise CovidctError(f"split {forced!r} is not one of {', '.join(SPLITS)}", pid)
            out[pid] = forced
        else:
            out[pid] = "val" if hash_unit(pid, salt) < val_fraction else "train"
    return out


def write_hdf5(path: str | Path, samples: Iterable[tuple[str, np.ndarray, int, float]], shape: Sequence[int],
               hu_window: Sequence[float], dtype: str = "float16") -> int:
    """Stream ``(patient_id, array, label, score)`` samples into an HDF5 file, atomically.

    One sample per chunk, gzip-compressed; memory does not grow with the number of
    samples (each array is written and dropped). Datasets: ``images`` (N, D, H, W, 1),
    ``labels`` uint8, ``scores`` float32, ``patient_ids``; attributes say how
    to get HU back: ``hu = value * (hu_max - hu_min) + hu_min``.

    Returns:
        The number of samples written.
    """
    import h5py

    shape = tuple(int(s) for s in shape)
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            images = f.create_dataset("images", shape=(0, *shape, 1), maxshape=(None, *shape, 1), dtype=dtype,
                                      chunks=(1, *shape, 1), compression="gzip", compression_opts=1, shuffle=True)
            labels = f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype="uint8", chunks=(1024,))
            scores = f.create_dataset("scores", shape=(0,), maxshape=(None,), dtype="float32", chunks=(1024,))
            ids = f.create_dataset("patient_ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(),
                                   chunks=(1024,))
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
            images.attrs["axes"] = "sample, depth (inferior->superior), height (anterior->posterior), " \
                                   "width (patient right->left), channel"
    return n


def read_hdf5(path: str | Path) -> dict:
    """Small HDF5 files whole (tests, metrics): images, labels, scores, patient_ids."""
    import h5py

    with h5py.File(path, "r") as f:
        return {
            "images": f["images"][...],
            "labels": f["labels"][...],
            "scores": f["scores"][...],
            "patient_ids": [s.decode() if isinstance(s, bytes) else s for s in f["patient_ids"][...]],
            "attrs": dict(f["images"].attrs),
        }
