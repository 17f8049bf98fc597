"""Each benchmark that runs Snakemake asks for exactly the jobs it says it times: a dry run of its
targets on a small sheet resolves to exactly its rules (asking for `all` once pulled in a U-Net's
training and the per-patient bench stopped measuring the per-patient chain)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from helpers import REPO, snakemake, write_config


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dry_run_jobs(work: Path, sheet_rows: list[str], targets: list[str]) -> dict[str, int]:
    """{rule: jobs} of a dry run of ``targets`` on a sheet of ``sheet_rows``."""
    sheet = work / "patients.tsv"
    sheet.write_text("patient_id\tdicom_dir\tlabel\tscore\n" + "".join(f"{row}\n" for row in sheet_rows))
    config = write_config(work, sheet)
    proc = snakemake(work, config, *targets, "-n", "--quiet", "rules", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Job stats:" in out, out[-3000:]
    table = out[out.index("Job stats:") :].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def test_per_patient_bench_times_exactly_the_chain(tmp_path):
    bench = _bench("per_patient")
    jobs = _dry_run_jobs(tmp_path, ["bench300\traw/bench300\t\t"], bench.targets("bench300"))
    assert jobs == dict.fromkeys(bench.RULES, 1)


def test_dag_bench_resolves_to_its_rules(tmp_path):
    bench, n = _bench("dag"), 2
    sheet = tmp_path / "sheet.tsv"
    bench.write_sheet(sheet, n)
    rows = sheet.read_text().splitlines()[1:]
    jobs = _dry_run_jobs(tmp_path, rows, bench.targets())
    assert jobs == dict.fromkeys(bench.PER_PATIENT_RULES, n) | dict.fromkeys(bench.COHORT_RULES, 1)
