"""Crash and resume: ``kill -9`` in the middle of a multi-patient run, then what a user does; and a
full disk while an output is written.

After ``kill -9``, Snakemake 9 refuses the next run ("LockException ... Directory cannot be locked",
the lock of the killed run is still there). What a user does, as README's troubleshooting says:

    snakemake --unlock <same targets and config>
    snakemake --rerun-incomplete <same targets and config>

The second run must re-run exactly the jobs that had not finished, leave the outputs of finished
jobs untouched (same mtime and bytes), and leave every output readable and no temporary file
anywhere under results/ (a job killed while writing leaves its ``.<name>.*.tmp*`` file; the
re-run of that job removes it).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from covidct import io, steps
from covidct.demo.spec import PhantomSpec
from covidct.demo.writer import write_patient
from covidct.errors import CovidctError
from helpers import REPO, write_config

KEY = "test-key-0123456789abcdef"
PATIENTS = [PhantomSpec(f"cr0{i}", 600 + i, False, 0.0, 26, 10.0, 72, 5.0) for i in range(1, 5)]
TARGETS = [f"results/npy/{s.patient_id}.npy" for s in PATIENTS] + [f"results/qc/{s.patient_id}.png" for s in PATIENTS]
#: anonymize_dicom, verify_anonymization, dicom_to_hu, segment_lungs, export_npy, qc_montage
JOBS_PER_PATIENT = 6


def _command(work: Path, config: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, COVIDCT_ANON_KEY=KEY, PYTHONUNBUFFERED="1")  # a killed run's log is complete
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        *TARGETS,
        *args,
        "--cores",
        "1",
        "--configfile",
        str(config),
    ]
    return cmd, env


def _run(work: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd, env = _command(work, config, *args)
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)


def _incomplete(work: Path) -> set[str]:
    """Outputs Snakemake marks as being written (its markers are the base64 of the output path)."""
    marked = set()
    folder = work / ".snakemake" / "incomplete"
    for marker in folder.iterdir() if folder.is_dir() else []:
        try:
            marked.add(base64.urlsafe_b64decode(marker.name).decode())
        except (binascii.Error, UnicodeDecodeError):
            continue
    return marked


def _jobs(log: str) -> list[tuple[str, str, list[str]]]:
    """(rule, patient, outputs) of every job a Snakemake log says it started."""
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?: {4}.*\n)+)", log, re.M):
        body = m.group(2)
        outputs = re.search(r"^ {4}output: (.*)$", body, re.M)
        patient = re.search(r"^ {4}wildcards: patient=(\w+)", body, re.M)
        jobs.append((m.group(1), patient.group(1) if patient else "", outputs.group(1).split(", ") if outputs else []))
    return jobs


def _started(outputs: set[str], log: str) -> bool:
    """Whether the log shows the start of the job writing ``outputs``."""
    return any(out in outs for _, _, outs in _jobs(log) for out in outputs)


def _under(rel: str, outputs: set[str]) -> bool:
    return any(rel == out or rel.startswith(out + "/") for out in outputs)


def _plant_stale_temp(work: Path, output: str) -> Path:
    """What ``kill -9`` during the write of ``output`` leaves beside it (io.atomic_path / atomic_dir names)."""
    path = work / output
    if "anonymized" in path.parts and not path.suffix:  # a directory output (not the summary JSON beside it)
        stale = path.with_name(f".{path.name}.k9dead0.tmp")
        stale.mkdir(parents=True)
        (stale / "1.2.3.dcm").write_bytes(b"half a file")
    else:
        stem, suffix = path.name.split(".", 1)
        stale = path.with_name(f".{stem}.k9dead0.tmp.{suffix}")
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"half a file")
    return stale


def test_kill_9_mid_run_then_unlock_and_rerun_incomplete(tmp_path):
    work = tmp_path
    lines = ["patient_id\tdicom_dir\tlabel\tscore"]
    for spec in PATIENTS:
        write_patient(spec, work / "raw" / spec.patient_id, work / "truth")
        lines.append(f"{spec.patient_id}\traw/{spec.patient_id}\t\t")
    (work / "patients.tsv").write_text("\n".join(lines) + "\n")
    config = write_config(
        work, work / "patients.tsv", resample={"spacing_mm": 5.0}, export={"shape": [16, 32, 32]}, qc={"n_slices": 4}
    )

    # 1. run, with the first patient first, and kill -9 the whole process group once that patient's
    #    array is complete and another job is running
    cmd, env = _command(work, config, "--prioritize", TARGETS[0], TARGETS[len(PATIENTS)])
    with open(work / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        try:
            while True:
                assert proc.poll() is None, (
                    "the run ended before it could be killed: " + (work / "first.log").read_text()
                )
                assert time.monotonic() < deadline, "no array after 180 s"
                running = _incomplete(work)
                done = [p for p in (work / "results" / "npy").glob("*.npy") if f"results/npy/{p.name}" not in running]
                # the marker is set just after Snakemake logged the job: wait for that log line too
                if done and running and _started(running, (work / "first.log").read_text()):
                    break
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the whole group: Snakemake and its running job
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first = (work / "first.log").read_text()
    running = _incomplete(work)
    assert running, "no job was running at the kill"
    n_finished = len(re.findall(r"^Finished jobid: \d+", first, re.M))
    assert n_finished == len(_jobs(first)) - 1  # every started job but the killed one had finished
    complete = {}
    for path in sorted((work / "results").rglob("*")):
        rel = path.relative_to(work).as_posix()
        if path.is_file() and not rel.startswith(("results/logs/", "results/benchmarks/")) and not _under(rel, running):
            complete[rel] = (path.stat().st_mtime_ns, path.read_bytes())
    assert any(rel.endswith(".npy") for rel in complete)
    stale = [_plant_stale_temp(work, out) for out in sorted(running)]

    # 2. what a user tries first: the same command; the lock of the killed run stops it
    again = _run(work, config)
    assert again.returncode != 0
    assert "LockException" in again.stderr and "--unlock" in again.stderr
    # 3. unlock, then re-run what was incomplete
    unlock = _run(work, config, "--unlock")
    assert unlock.returncode == 0, unlock.stderr
    rerun = _run(work, config, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    rerun_jobs = _jobs(rerun.stderr + rerun.stdout)
    assert len(rerun_jobs) == JOBS_PER_PATIENT * len(PATIENTS) - n_finished
    rerun_outputs = {out for _, _, outs in rerun_jobs for out in outs}
    assert running <= rerun_outputs, "the job killed mid-run was not re-run"
    assert not [rel for rel in complete if _under(rel, rerun_outputs)], "a finished job ran again"
    changed = [
        rel
        for rel, (mtime, data) in complete.items()
        if (work / rel).stat().st_mtime_ns != mtime or (work / rel).read_bytes() != data
    ]
    assert changed == []

    # every output is whole, and nothing temporary is left
    for target in TARGETS:
        assert (work / target).is_file(), target
    results = work / "results"
    assert [p for p in stale if p.exists()] == []
    assert [p.relative_to(work).as_posix() for p in results.rglob("*") if ".tmp" in p.name] == []
    counts = {".nii.gz": 0, ".npy": 0, ".json": 0, ".png": 0}
    for path in results.rglob("*"):
        if path.name.endswith(".nii.gz"):
            assert sitk.ReadImage(str(path)).GetSize()[2] > 0
            counts[".nii.gz"] += 1
        elif path.suffix == ".npy":
            assert np.load(path).shape == (16, 32, 32)
            counts[".npy"] += 1
        elif path.suffix == ".json":
            json.loads(path.read_text())
            counts[".json"] += 1
        elif path.suffix == ".png":
            Image.open(path).verify()
            counts[".png"] += 1
    n = len(PATIENTS)
    # hu, resampled, lung mask and labels; npy; anonymization summary, verify, hu info, lung provenance; qc
    assert counts == {".nii.gz": 4 * n, ".npy": n, ".json": 4 * n, ".png": n}
    print(
        f"killed with {n_finished} of {JOBS_PER_PATIENT * n} jobs finished ({len(complete)} complete files), "
        f"running: {sorted(running)}; re-run: {len(rerun_jobs)} jobs {[(r, p) for r, p, _ in rerun_jobs]}"
    )


# --- full disk --------------------------------------------------------------------------------------------


def _fails_midway(err: int):
    """A writer that puts half its bytes on disk, then fails as a full disk (or quota) does."""

    def write(target, *args, **kwargs):  # np.save(path, array) or Path.write_text(self, text)
        assert isinstance(target, Path) and target.is_absolute(), target
        with open(target, "ab") as fh:
            fh.write(b"\x93NUMPY half")
        raise OSError(err, os.strerror(err))

    return write


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


@pytest.mark.parametrize(
    "err,words", [(errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded")]
)
def test_full_disk_while_writing_an_array_is_a_clear_error(tmp_path, monkeypatch, err, words):
    monkeypatch.setattr(np, "save", _fails_midway(err))
    out = tmp_path / "npy" / "p01.npy"
    with pytest.raises(CovidctError) as e:
        io.write_npy(out, np.zeros((4, 4), np.float32))
    assert str(e.value) == f"file {out}: cannot write this output: {words}"
    assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == err
    assert not out.exists()
    assert _temporaries(tmp_path) == []


def test_full_disk_keeps_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "hu" / "p01.json"
    io.write_json(out, {"run": 1})
    before = out.read_bytes()
    monkeypatch.setattr(Path, "write_text", _fails_midway(errno.ENOSPC))
    with pytest.raises(CovidctError, match="cannot write this output: no space left on device"):
        io.write_json(out, {"run": 2})
    assert out.read_bytes() == before
    assert _temporaries(tmp_path) == []


def test_other_write_errors_are_not_disguised(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "save", _fails_midway(errno.EIO))
    with pytest.raises(OSError) as e:
        io.write_npy(tmp_path / "p01.npy", np.zeros(3))
    assert e.value.errno == errno.EIO and not isinstance(e.value, CovidctError)
    assert _temporaries(tmp_path) == []


def test_full_disk_in_the_hu_step_names_the_output_and_leaves_nothing(tmp_path, monkeypatch):
    spec = PhantomSpec("p01", 7, False, 0.0, 6, 5.0, 32, 10.0)
    write_patient(spec, tmp_path / "dicom", tmp_path / "truth")
    out = tmp_path / "results" / "hu"
    volume = out / "p01.nii.gz"

    # the disk fills while the volume is compressed, after the plain NIfTI was written
    def copy_until_full(src, dst, length=0):
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.shutil, "copyfileobj", copy_until_full)
    with pytest.raises(CovidctError) as e:
        steps.dicom_to_hu(tmp_path / "dicom", volume, out / "p01.json", "p01")
    assert str(e.value) == f"file {volume}: cannot write this output: no space left on device"
    assert sorted(p.name for p in out.iterdir()) == []


def test_stale_temporaries_of_an_output_are_removed_when_it_is_written(tmp_path):
    out = tmp_path / "lung_mask"
    out.mkdir()
    stale = [out / ".p01.abc123.tmp.nii.gz", out / ".p01.abc123.tmp.nii.gz.raw.nii"]
    other = [out / ".p01_labels.abc123.tmp.nii.gz", out / ".p01.abc123.tmp.json", out / ".p02.abc123.tmp.nii.gz"]
    for p in stale + other:
        p.write_bytes(b"left by kill -9")
    image = sitk.GetImageFromArray(np.zeros((3, 4, 4), np.uint8))
    io.write_volume(out / "p01.nii.gz", image)
    assert [p.name for p in stale if p.exists()] == []
    assert [p.name for p in other if not p.exists()] == []  # other outputs' temporaries are theirs
    assert sitk.ReadImage(str(out / "p01.nii.gz")).GetSize() == (4, 4, 3)
