"""The subject-level train/val/test split: stable as the cohort grows, by subject, pinned rows."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.errors import CovidctError
from covidct.split import assign_split, hash_unit


def test_split_is_stable_when_patients_are_added():
    first = [f"P{i:04d}" for i in range(600)]
    before = assign_split(first)
    after = assign_split(first + [f"N{i:04d}" for i in range(900)])
    assert all(after[p] == before[p] for p in first)
    shares = {s: sum(v == s for v in before.values()) / len(first) for s in ("train", "val", "test")}
    assert abs(shares["test"] - 0.15) < 0.045 and abs(shares["val"] - 0.15) < 0.045, shares
    # another salt draws another split; the salt is the key
    assert assign_split(first, salt="other") != before
    # other fractions: the three shares follow
    other = assign_split(first, val_fraction=0.2, test_fraction=0.3)
    assert abs(sum(v == "test" for v in other.values()) / len(first) - 0.3) < 0.06


def test_split_is_stratified_by_label_and_severity_band():
    rng = np.random.default_rng(0)
    ids = [f"S{i:05d}" for i in range(4000)]
    strata = rng.integers(0, 6, len(ids))  # negative + five severity bands
    split = assign_split(ids, val_fraction=0.2, test_fraction=0.1)
    for s in range(6):
        members = [p for p, k in zip(ids, strata) if k == s]
        for which, frac in (("val", 0.2), ("test", 0.1)):
            share = sum(split[p] == which for p in members) / len(members)
            assert abs(share - frac) < 0.045, (s, which, share)


def test_no_subject_straddles_splits_and_adding_scans_moves_no_one():
    rng = np.random.default_rng(3)
    ids, subjects = _scans(300, rng)
    split = assign_split(ids, subjects=subjects)
    by_subject = {}
    for pid in ids:
        by_subject.setdefault(subjects[pid], set()).add(split[pid])
    assert all(len(v) == 1 for v in by_subject.values())
    assert {next(iter(v)) for v in by_subject.values()} == {"train", "val", "test"}
    # a follow-up scan of an existing subject and new subjects: nobody moves, the follow-up joins its subject
    more_ids, more_subjects = _scans(200, rng, prefix="N")
    follow_up = {"S0007_scan9": "S0007"}
    after = assign_split(ids + more_ids + list(follow_up), subjects={**subjects, **more_subjects, **follow_up})
    assert all(after[p] == split[p] for p in ids)
    assert after["S0007_scan9"] == split["S0007_scan0"]
    # the split is the subject's: renaming a scan's patient_id does not move it
    renamed = assign_split(["renamed"] + ids[1:], subjects={**subjects, "renamed": subjects[ids[0]]})
    assert renamed["renamed"] == split[ids[0]]


def test_a_pin_moves_the_whole_subject_and_conflicting_pins_are_an_error():
    rng = np.random.default_rng(4)
    ids, subjects = _scans(50, rng)
    natural = assign_split(ids, subjects=subjects)
    target = next(p for p in ids if natural[p] != "test" and sum(subjects[q] == subjects[p] for q in ids) > 1)
    pinned = assign_split(ids, pinned={target: "test"}, subjects=subjects)
    mates = [p for p in ids if subjects[p] == subjects[target]]
    assert all(pinned[p] == "test" for p in mates)
    assert all(pinned[p] == natural[p] for p in ids if subjects[p] != subjects[target])
    with pytest.raises(CovidctError, match=f"patient {mates[1]}.*subject {subjects[target]} is pinned to test"):
        assign_split(ids, pinned={mates[0]: "test", mates[1]: "train"}, subjects=subjects)


def test_pinned_split_wins_and_bad_value_is_an_error():
    ids = [f"P{i}" for i in range(50)]
    natural = assign_split(ids)
    flipped = {p: ("train" if natural[p] != "train" else "test") for p in ids[:5]}
    pinned = assign_split(ids, pinned=flipped)
    assert all(pinned[p] == flipped[p] for p in ids[:5])
    assert all(pinned[p] == natural[p] for p in ids[5:])
    with pytest.raises(CovidctError, match="patient P0"):
        assign_split(ids, pinned={"P0": "holdout"})
    with pytest.raises(CovidctError, match="fractions"):
        assign_split(ids, val_fraction=0.6, test_fraction=0.5)
    assert 0 <= hash_unit("P0", "x") < 1


def _scans(n_subjects, rng, prefix="S"):
    """Rows of several scans per subject (1 to 4), each scan with its own id."""
    ids, subjects = [], {}
    for s in range(n_subjects):
        for k in range(int(rng.integers(1, 5))):
            pid = f"{prefix}{s:04d}_scan{k}"
            ids.append(pid)
            subjects[pid] = f"{prefix}{s:04d}"
    return ids, subjects
