"""Run the workflow in a temporary folder, as OGI's tests/integration/runner.py does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_config(workdir: Path, patients: Path, **overrides) -> Path:
    """The repository's config with ``patients`` and top-level blocks overridden."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["patients"] = str(patients)
    for key, value in overrides.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, configfile: Path | None, *args: str, key: str | None = None,
              timeout: int = 900, kill: bool = False) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile with ``workdir`` as working directory.

    ``kill``: run under ``timeout -s KILL`` (the SLURM executor ignores SIGTERM while it polls).
    """
    env = dict(os.environ)
    env.pop("COVIDCT_ANON_KEY", None)
    if key is not None:
        env["COVIDCT_ANON_KEY"] = key
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if kill:
        cmd = ["timeout", "-s", "KILL", str(timeout)] + cmd
    cmd += list(args)  # targets first: --configfile and --config take several values
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout + 30)


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    counts: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return counts
    for line in lines[start + 3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts
