"""Subject-level train/val/test split and the streaming HDF5 writer/reader.

The split is a keyed hash of the subject's pseudonym (the sheet's ``subject_id``, or the
``patient_id`` of a row without one), mapped to [0, 1) and compared with the test and
validation fractions: a subject's split depends on nothing but its own pseudonym (and the
salt), so it never changes when other patients are added, and every scan of one subject
lands in the same split. Stratification by label and severity band holds in expectation
(each stratum is sampled independently at the same rate); the sheet's optional ``split``
column pins a patient, and with it its whole subject.
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
SPLITS = ("train", "val", "test")


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


def hash_unit(pseudonym: str, salt: str) -> float:
    """A keyed hash of a pseudonym mapped to [0, 1)."""
    digest = hashlib.sha256(f"{salt}\x00{pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of_unit(u: float, val_fraction: float, test_fraction: float) -> str:
    """The split of a hash value: [0, test) test, [test, test + val) val, the rest train.

    >>> [split_of_unit(u, 0.15, 0.15) for u in (0.0, 0.149, 0.15, 0.299, 0.3, 0.99)]
    ['test', 'test', 'val', 'val', 'train', 'train']
    """
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"


def assign_split(patient_ids: Sequence[str], val_fraction: float = 0.15, test_fraction: float = 0.15,
                 salt: str = "covidct-split", pinned: dict[str, str] | None = None,
                 subjects: dict[str, str] | None = None) -> dict[str, str]:
    """Train/val/test split by subject, stable as the cohort grows.

    Args:
        patient_ids: Pseudonymous ids of the scans (rows of the sheet).
        val_fraction: Probability of a subject going to val.
        test_fraction: Probability of a subject going to test.
        salt: Key of the hash; change it to draw another split.
        pinned: ``{patient_id: "train" | "val" | "test"}`` from the sheet ("" = not pinned); a pin
            moves the scan's whole subject, and two different pins within one subject are an error.
        subjects: ``{patient_id: subject pseudonym}``; a scan without one ("" or absent) is its own
            subject. The hash is taken of the subject pseudonym, so renaming a scan's patient_id
            does not move a subject that has a ``subject_id``.

    Returns:
        ``{patient_id: split}``.

    Raises:
        CovidctError: a pin that is not a split name, or conflicting pins within one subject.
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise CovidctError(f"split fractions val {val_fraction} + test {test_fraction} must be >= 0 and below 1")
    pinned = pinned or {}
    subjects = subjects or {}
    subject_of = {pid: subject_key(pid, subjects.get(pid, "")) for pid in patient_ids}
    forced: dict[str, tuple[str, str]] = {}  # subject -> (split, the scan that pinned it)
    for pid in patient_ids:
        pin = pinned.get(pid, "") or ""
        if not pin:
            continue
        if pin not in SPLITS:
            raise CovidctError(f"split {pin!r} is not one of {', '.join(SPLITS)}", pid)
        subject = subject_of[pid]
        if subject in forced and forced[subject][0] != pin:
            other_split, other = forced[subject]
            raise CovidctError(f"subject {subject} is pinned to {other_split} by {other} and to "
                               f"{pin} by this scan: all scans of a subject must be in one split", pid)
        forced[subject] = (pin, pid)
    out = {}
    for pid in patient_ids:
        subject = subject_of[pid]
        if subject in forced:
            out[pid] = forced[subject][0]
        else:
            out[pid] = split_of_unit(hash_unit(subject, salt), val_fraction, test_fraction)
    return out


def subject_key(patient_id: str, subject_id: str = "") -> str:
    """The pseudonym a subject is hashed and grouped by: its ``subject_id``, else the scan's own id.

    One name space: a scan whose ``subject_id`` is another row's ``patient_id`` joins that row's
    subject (the first scan of a person often keeps its id as the subject's).

    >>> subject_key("P1b", "P1"), subject_key("P1"), subject_key("P1", " ")
    ('P1', 'P1', 'P1')
    """
    return (subject_id or "").strip() or patient_id


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
