"""Each benchmark that runs Snakemake asks for exactly the jobs it says it times: a dry run of its
targets on a small sheet resolves to exactly its rules (asking for `all` once pulled in a U-Net's
training and the per-patient bench stopped measuring the per-patient chain)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
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
    expected = dict.fromkeys(bench.PER_PATIENT_RULES, n) | dict.fromkeys(bench.COHORT_RULES, 1)
    assert jobs == expected | {bench.FOLD_RULE: bench.fold_jobs()}


# Snakemake's own set of local rules, from its API in a subprocess (the API changes the working directory).
_LOCAL_RULES = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    configs = ConfigSettings(configfiles=[Path(sys.argv[2])])
    wf = api.workflow(resource_settings=ResourceSettings(), config_settings=configs, storage_settings=StorageSettings(),
                      workdir=Path(sys.argv[1]), snakefile=Path(sys.argv[3]))
    print(json.dumps(sorted(wf._workflow._localrules)))
"""


def test_dag_bench_finds_the_local_rules_snakemake_finds(tmp_path):
    """bench/dag.py leaves local rules out of the SLURM job count: its list is Snakemake's, on a sheet
    that switches on the optional local rules (scores, a follow-up subject)."""
    sheet = tmp_path / "patients.tsv"
    sheet.write_text("patient_id\tdicom_dir\tlabel\tscore\tsubject_id\np1\traw/p1\t1\t20\ts1\np2\traw/p2\t0\t0\ts1\n")
    config = write_config(tmp_path, sheet)
    proc = subprocess.run(
        [sys.executable, "-c", _LOCAL_RULES, str(tmp_path), str(config), str(REPO / "Snakefile")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(json.loads(proc.stdout.strip().splitlines()[-1])) == _bench("dag").local_rules()
