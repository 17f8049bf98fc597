"""DAG construction time and memory of a dry run for large cohorts, and the number of cluster
jobs with and without the SLURM profile's grouping.

The sheets hold N placeholder patients (labeled, half positive) whose DICOM folders do not
exist: a dry run never opens them, so this measures Snakemake's own work (parsing the sheet,
validating it, building and scheduling the DAG) of the whole workflow a user runs (`all`): the
per-patient rules of PER_PATIENT_RULES for each patient, the cohort rules of COHORT_RULES, and one job of
FOLD_RULE per variant and fold of the infection U-Net's cross-validation (fold_jobs()).

    python bench/dag.py [--sizes 1000 5000] [--jobs-for 100]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What the dry run of targets() resolves to on a labeled sheet (tests/unit/test_bench_targets.py checks it).
PER_PATIENT_RULES = [
    "anonymize_dicom",
    "verify_anonymization",
    "dicom_to_hu",
    "segment_lungs",
    "export_npy",
    "qc_montage",
    "segment_infection",
    "severity_readout",
]
COHORT_RULES = [
    "synth_infection_training",
    "train_infection_unet",
    "build_hdf5",
    "train_classifier",
    "train_scorer",
    "predict",
    "evaluate",
    "summarize",
    "severity_cohort",
    "severity_vs_score",
    "all",
]
# One job per variant and fold of the infection U-Net's cross-validation (config/config.yaml's infection block).
FOLD_RULE = "cross_validate_infection_unet"
RULES = PER_PATIENT_RULES + COHORT_RULES + [FOLD_RULE]


def fold_jobs() -> int:
    """The FOLD_RULE jobs of the dry run: config.yaml's infection variants x folds."""
    import yaml

    infection = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["infection"]
    return len(infection["variants"]) * infection["folds"]


def targets() -> list[str]:
    """The targets of the timed dry run: the whole workflow, as a user runs it."""
    return ["all"]


def local_rules() -> set[str]:
    """Rules named in a `localrules:` directive (Snakefile and rules files): they run where Snakemake
    runs, not as cluster jobs. A dry run prints them as `rule` like the others."""
    names = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for block in re.findall(r"^[ \t]*localrules:[ \t]*\n((?:[ \t]+\w+,?[ \t]*\n)+)", path.read_text(), re.M):
            names.update(re.findall(r"\w+", block))
    return names


def write_sheet(path: Path, n: int) -> None:
    lines = ["patient_id\tdicom_dir\tlabel\tscore"]
    lines += [f"P{i:06d}\t/data/raw/P{i:06d}\t{i % 2}\t{(i * 7) % 100 if i % 2 else 0}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def dry_run(work: Path, sheet: Path, *extra: str) -> tuple[float, float, str]:
    """(seconds, peak RSS MB of the snakemake process, output) of one dry run."""
    env = dict(os.environ, COVIDCT_ANON_KEY="benchmark-key-not-secret")
    cmd = [
        sys.executable,
        "-c",
        "import resource, runpy, sys; sys.argv = ['snakemake'] + sys.argv[1:];\n"
        "try:\n    runpy.run_module('snakemake', run_name='__main__')\n"
        "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)",
        "-s",
        str(REPO / "Snakefile"),
        *targets(),  # before the options: --config takes several values
        "--directory",
        str(work),
        "-n",
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        "--config",
        f"patients={sheet}",
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"dry run failed:\n{out[-3000:]}")
    peak = re.search(r"PEAK_RSS_KB (\d+)", out)
    return seconds, int(peak.group(1)) / 1024 if peak else float("nan"), out


def job_stats(output: str) -> dict[str, int]:
    """The dry run's 'Job stats' table as {rule: jobs}."""
    if "Job stats:" not in output:
        raise SystemExit(f"no job stats in the dry run output:\n{output[-2000:]}")
    table = output[output.index("Job stats:") :].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--jobs-for", type=int, default=100)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'patients':>8} {'jobs':>7} {'dry run s':>9} {'peak RSS MB':>11}")
        for n in a.sizes:
            sheet = tmp / f"sheet{n}.tsv"
            write_sheet(sheet, n)
            seconds, peak, out = dry_run(tmp / f"w{n}", sheet, "--quiet", "rules")
            print(f"{n:>8} {sum(job_stats(out).values()):>7} {seconds:>9.1f} {peak:>11.0f}", flush=True)
        n = a.jobs_for
        sheet = tmp / f"sheet{n}.tsv"
        write_sheet(sheet, n)
        _, _, plain = dry_run(tmp / "plain", sheet)
        singles = sum(v for k, v in job_stats(plain).items() if k != "all")
        # The profile's groups, printed by a dry run as one "Group job" each.
        _, _, grouped = dry_run(
            tmp / "grouped",
            sheet,
            "--profile",
            str(REPO / "profiles" / "slurm"),
        )
        groups = len(re.findall(r"Group job \w+", grouped))
        # jobs outside groups are printed unindented ("rule build_hdf5:"); local rules run where
        # Snakemake runs, not on the cluster
        local = local_rules()
        ungrouped = re.findall(r"^rule (\w+):", grouped, re.M)
        rest = len([r for r in ungrouped if r not in local])
        n_local = len([r for r in ungrouped if r in local])
        print(
            f"\nSLURM jobs for {n} patients: {singles} without grouping, {groups + rest} with the profile's "
            f"grouping ({groups} group jobs + {rest} aggregate jobs; {n_local} local jobs besides)"
        )


if __name__ == "__main__":
    main()
