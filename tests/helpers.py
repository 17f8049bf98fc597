"""Shared test helpers: where the real data is, tiny synthetic volumes built on the fly, and running
the workflow in a temporary folder (as OGI's tests/integration/runner.py does). ``covidct.testing``
holds the builders the benchmarks share (the leak oracle, the transfer-syntax transcoder)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from covidct.demo.spec import PhantomSpec

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CT = SHARED_DATA / "ct"


#: A phantom with lobes and lesions placed per lobe (the severity read-out's tests and its step's).
PER_LOBE = PhantomSpec("lobes01", 21, True, 30.0, 32, 10.0, 112, 3.4, lobe_involvement=(3.0, 18.0, 60.0, 0.0, 80.0))


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


def snakemake_command(
    workdir: Path, configfile: Path | None, *args: str, key: str | None = None, timeout: int = 900, kill: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a snakemake run on the repository's Snakefile in ``workdir``.

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
    return cmd, env


def snakemake(
    workdir: Path, configfile: Path | None, *args: str, key: str | None = None, timeout: int = 900, kill: bool = False
) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile with ``workdir`` as working directory."""
    cmd, env = snakemake_command(workdir, configfile, *args, key=key, timeout=timeout, kill=kill)
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout + 30)


class BackgroundRun:
    """A snakemake run started now and collected later (its output in files, not pipes that could fill)."""

    def __init__(self, workdir: Path, configfile: Path | None, *args: str, timeout: int = 900, **kwargs):
        cmd, env = snakemake_command(workdir, configfile, *args, timeout=timeout, kill=True, **kwargs)
        self.args, self.timeout = cmd, timeout
        self.logs = (workdir.parent / f"{workdir.name}.stdout", workdir.parent / f"{workdir.name}.stderr")
        self._out, self._err = open(self.logs[0], "w+"), open(self.logs[1], "w+")
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self._out, stderr=self._err, text=True, start_new_session=True
        )

    def result(self) -> subprocess.CompletedProcess:
        """Wait for the run (it is killed at its timeout) and return what it printed."""
        code = self.proc.wait(timeout=self.timeout + 60)
        outputs = []
        for fh in (self._out, self._err):
            fh.seek(0)
            outputs.append(fh.read())
            fh.close()
        return subprocess.CompletedProcess(self.args, code, *outputs)

    def printed(self) -> str:
        """What the run has printed so far (stdout and stderr)."""
        return "".join(path.read_text(errors="replace") for path in self.logs)

    def stop(self) -> None:
        """Kill the run if it is still going (a session that never collects it)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # timeout, snakemake and its jobs: the run's own group
            self.proc.wait()


#: The rules that run once per patient of the sheet (the whole-workflow tests count their jobs).
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


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    counts: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return counts
    for line in lines[start + 3 :]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def require_shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip with a clear message where it is absent (a user's clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not present at {path} (only in the development checkout)")
    return path


def chest_phantom(shape=(40, 64, 64), spacing=(5.0, 5.0, 5.0), seed=0, trachea=True, noise=10.0):
    """A tiny chest: body ellipse (+40 HU), two ellipsoid lungs (-850 HU), optional trachea (-1000 HU).

    Returns ``(hu, lung_labels)`` with axes (z, y, x), x toward patient left (label 1 = right = low x).
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    cy, cx = ny / 2, nx / 2
    hu = np.full(shape, -1000.0)
    body = ((x - cx) / (0.42 * nx)) ** 2 + ((y - cy) / (0.32 * ny)) ** 2 <= 1
    hu[body] = 40.0
    labels = np.zeros(shape, np.uint8)
    zc, rz = nz * 0.45, nz * 0.38
    for value, sign in ((1, -1), (2, 1)):
        lung = (
            ((x - (cx + sign * 0.18 * nx)) / (0.13 * nx)) ** 2 + ((y - cy) / (0.22 * ny)) ** 2 + ((z - zc) / rz) ** 2
        ) <= 1
        labels[lung & body] = value
    hu[labels > 0] = -850.0
    if trachea:
        tr = (((x - cx) / 2.0) ** 2 + ((y - (cy - 0.05 * ny)) / 2.0) ** 2 <= 1) & (z > zc) & body
        hu[tr] = -1000.0
        labels[tr] = 0
    hu += rng.normal(0, noise, shape) * body
    return np.clip(hu, -1024, 3071).astype(np.int16), labels


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def slices_by_position(folder: Path) -> list[Path]:
    """The files of a single-series folder, ordered along z (ImagePositionPatient)."""
    import pydicom

    files = [p for p in folder.iterdir() if p.is_file()]
    return sorted(files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
