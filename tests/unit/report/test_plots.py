"""The report's figures: drawn on covidct.figures (no pyplot), written atomically, one per call."""

from __future__ import annotations

from PIL import Image

from covidct.report import plots
from covidct.report.cohort import cohort_summary


def test_every_figure_is_written_as_a_png(tmp_path):
    plots.training_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, tmp_path / "t1.png", ["loss"])
    plots.training_curves({"loss": [1.0, 0.5], "mae": [9.0, 7.0]}, tmp_path / "t2.png", ["loss", "mae"])
    plots.roc_curve([0, 1, 1, 0], [0.2, 0.8, 0.4, 0.5], tmp_path / "roc.png", 0.75)
    plots.score_scatter([10, 20], [12, 25], tmp_path / "s.png", baseline=[9, 21], baseline_label="seg")
    plots.severity_confusion([10, 50, 90], [12, 65, 85], tmp_path / "c.png")
    plots.calibration([{"mean_predicted": 0.2, "observed": 0.3, "n": 2}], tmp_path / "cal.png")
    plots.bar_counts({"train": {"a": 1, "b": 2}, "val": {"a": 0, "b": 1}}, tmp_path / "b.png", "t", "x")
    sizes = {p.name: Image.open(p).size for p in tmp_path.glob("*.png")}
    assert set(sizes) == {"t1.png", "t2.png", "roc.png", "s.png", "c.png", "cal.png", "b.png"}
    assert sizes["t2.png"][0] > 1.5 * sizes["t1.png"][0]  # one panel per metric
    assert not list(tmp_path.glob(".*tmp*"))


def test_cohort_summary_counts_patients_by_split(tmp_path):
    split = tmp_path / "split.tsv"
    split.write_text(
        "patient_id\tsubject_id\tsplit\tlabel\tscore\n"
        "a\ta\ttrain\t1\t30\nb\tb\ttrain\t0\t\nc\tc\ttest\t1\t85\nd\td\tval\t1\t\n"
    )
    outs = [tmp_path / name for name in ("cohort.csv", "label.png", "severity.png", "ctsi.png")]
    cohort_summary(split, 2, *outs)
    rows = [line.split(",") for line in outs[0].read_text().splitlines()[1:]]
    counts = {(r[0], r[1], r[2]): int(r[3]) for r in rows}
    assert counts[("label", "COVID-19", "train")] == 1 and counts[("label", "negative", "train")] == 1
    assert counts[("severity_class", "Mild", "train")] == 1 and counts[("severity_class", "Critical", "test")] == 1
    assert counts[("ctsi", "7", "train")] == 1 and counts[("label", "unlabeled", "none")] == 2
    assert all(p.is_file() for p in outs[1:])
