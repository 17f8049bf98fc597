"""Follow-up: each subject's severity over its scan dates (the anonymizer's shifted dates: intervals
exact, dates not real), from the cohort table of read-outs (``covidct.severity.cohort``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from covidct.figures import figure, save


def follow_up_subjects(rows: Sequence[dict]) -> tuple[dict[str, list[dict]], list[str]]:
    """The subjects with several scans, each scan with its days since the subject's first dated scan.

    Args:
        rows: Cohort table rows (COHORT_KEYS and the read-out's columns; ``study_date`` YYYYMMDD or empty).

    Returns:
        ``(subjects, undated)``: subject id -> its dated scans (dicts with ``patient_id``, ``days``,
        ``po``, ``pho``, ``scheme``, ``ctss``, ``zone_score``), for subjects with at least two scans;
        and the patient ids of their scans without a date.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if str(row.get("subject_id", "")).strip():
            groups.setdefault(str(row["subject_id"]), []).append(row)
    subjects, undated = {}, []
    for subject, scans in groups.items():
        if len(scans) < 2:
            continue
        dated = []
        for scan in scans:
            date = str(scan.get("study_date") or "").strip()
            if not date:
                undated.append(scan["patient_id"])
                continue
            dated.append((datetime.strptime(date, "%Y%m%d").date(), scan))
        if not dated:
            continue
        first = min(d for d, _ in dated)

        def number(value):
            return None if value in (None, "") else float(value)

        subjects[subject] = [
            {
                "patient_id": scan["patient_id"],
                "days": (d - first).days,
                "po": float(scan["po"]),
                "pho": float(scan["pho"]),
                "scheme": scan["region_scheme"],
                "ctss": number(scan["ctss"]),
                "zone_score": number(scan["zone_score"]),
            }
            for d, scan in sorted(dated, key=lambda item: item[0])
        ]
    return subjects, sorted(undated)


def follow_up(subjects: dict[str, list[dict]], path: str | Path, undated: Sequence[str] = ()) -> None:
    """Each subject's scores over its scan dates: PO and PHO (left), CTSS or zone score (right),
    against days since the subject's first scan (the anonymizer's shifted dates: the intervals are
    exact, the dates are not real).

    Args:
        subjects: subject id -> its scans, dicts with ``days`` (since its first scan), ``po``, ``pho``,
            ``scheme`` and ``ctss`` or ``zone_score``.
        path: The PNG.
        undated: Scans left out for want of a (shifted) date, named in the title.
    """
    fig = figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for subject, scans in sorted(subjects.items()):
        scans = sorted(scans, key=lambda s: s["days"])
        days = [s["days"] for s in scans]
        (line,) = left.plot(days, [s["po"] for s in scans], "-o", label=f"{subject} PO")
        left.plot(days, [s["pho"] for s in scans], ":s", color=line.get_color(), label=f"{subject} PHO")
        totals = [s["ctss"] if s["scheme"] == "lobes" else s["zone_score"] for s in scans]
        markers = ["o" if s["scheme"] == "lobes" else "^" for s in scans]
        right.plot(days, totals, "-", color=line.get_color(), label=subject)
        for d, t, m in zip(days, totals, markers):
            right.plot([d], [t], m, color=line.get_color())
    left.set_xlabel("days since the subject's first scan")
    left.set_ylabel("% of lung")
    left.set_ylim(0, 100)
    left.legend(fontsize=7)
    left.set_title("PO (solid) and PHO (dotted)", fontsize=9)
    right.set_xlabel("days since the subject's first scan")
    right.set_ylabel("CTSS, lobes (o, 0-25) / zone score, zones (^, 0-30)")
    right.set_ylim(0, 30)
    right.legend(fontsize=7)
    right.set_title("lobe / zone severity score", fontsize=9)
    if not subjects:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no dated scans (dates removed by the anonymizer)", ha="center", transform=ax.transAxes)
    note = f"; left out, no shifted date: {', '.join(undated)}" if undated else ""
    fig.suptitle(f"Follow-up scans by subject (dates shifted by the anonymizer, intervals exact){note}", fontsize=9)
    save(fig, path)
