"""Subject-level train/val/test split.

The split is a keyed hash of the subject's pseudonym (the sheet's ``subject_id``, or the
``patient_id`` of a row without one), mapped to [0, 1) and compared with the test and
validation fractions: a subject's split depends on nothing but its own pseudonym (and the
salt), so it never changes when other patients are added, and every scan of one subject
lands in the same split. Stratification by label and severity band holds in expectation
(each stratum is sampled independently at the same rate); the sheet's optional ``split``
column pins a patient, and with it its whole subject."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pandas as pd

from covidct.errors import CovidctError

SPLITS = ("train", "val", "test")


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


def assign_split(
    patient_ids: Sequence[str],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    salt: str = "covidct-split",
    pinned: dict[str, str] | None = None,
    subjects: dict[str, str] | None = None,
) -> dict[str, str]:
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
            raise CovidctError(
                f"subject {subject} is pinned to {other_split} by {other} and to "
                f"{pin} by this scan: all scans of a subject must be in one split",
                pid,
            )
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


def read_split_table(path) -> pd.DataFrame:
    """The data sets' split table (``results/dataset/split.tsv``: patient_id, subject_id, split, label,
    score) as text, an empty cell ``""``."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
