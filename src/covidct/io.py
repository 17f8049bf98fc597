"""Readers and writers. Every writer is atomic: a temporary file in the target
folder, then ``os.replace``; a crash never leaves a half-written output. A temporary
file left by a killed job (``kill -9``, power loss) is removed when that output is
written again. A full disk (or an exceeded quota) is a ``CovidctError`` naming the
output, not a traceback.

Permissions follow the umask, as any file the user's programs create: an output file is
``0o666 & ~umask`` and an output folder ``0o777 & ~umask`` (``0644``/``0755`` under the usual umask
022, ``0664``/``0775`` for a group sharing results under 002). The temporary names are made private
while they are written and get these modes before they are renamed into place."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from covidct.errors import CovidctError

#: errno values meaning the output does not fit, and how a user is told.
_NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def _no_space_error(exc: BaseException, path: Path) -> CovidctError | None:
    """A clear error for a full disk or quota while writing ``path``; None for other errors."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return CovidctError(f"cannot write this output: {_NO_SPACE[exc.errno]}", path=path)
    return None


def _umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _finish_mode(path: Path, folder: bool = False) -> None:
    """Give a finished temporary output the mode the umask gives new files (or folders, recursively)."""
    mask = _umask()
    if not folder:
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def _remove_stale(folder: Path, *patterns: str) -> None:
    """Remove what a killed writer of the same output left behind (files or folders)."""
    for stale in (p for pattern in patterns for p in folder.glob(pattern)):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffix(es) so that writers which pick the
    format from the extension (SimpleITK, numpy) still work. Temporary files of the
    same output left by a killed run (``.<stem>.*.tmp<suffix>``, and helper files
    ``.<stem>.*.tmp<suffix>.raw.*``) are removed first.

    Args:
        path: The final output path.
        suffix: Suffix for the temporary file; defaults to the final path's suffixes.

    Yields:
        The temporary path to write to.

    Raises:
        CovidctError: the disk is full or the quota exceeded (``path`` is left as it was).
    """
    path = Path(path)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    stem = path.name.split(".")[0]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stale = f".{glob.escape(stem)}.*.tmp{glob.escape(suffix)}"
        _remove_stale(path.parent, stale, stale + ".raw.*")
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp" + suffix, dir=path.parent)
    except OSError as exc:
        raise (_no_space_error(exc, path) or exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _finish_mode(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        clear = _no_space_error(exc, path)
        if clear is not None:
            raise clear from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it onto ``path`` on success.

    An existing ``path`` is replaced only once the new content is complete. Temporary
    folders of the same output left by a killed run are removed first.

    Args:
        path: The final output folder.

    Yields:
        The temporary folder to fill.

    Raises:
        CovidctError: the disk is full or the quota exceeded (``path`` is left as it was).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path.parent, f".{glob.escape(path.name)}.*.tmp")
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise (_no_space_error(exc, path) or exc) from exc
    try:
        yield tmp
        _finish_mode(tmp, folder=True)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        clear = _no_space_error(exc, path)
        if clear is not None:
            raise clear from exc
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Save an array as ``.npy``, atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def read_volume(path: str | Path):
    """Read a NIfTI (or any SimpleITK-readable) volume as a ``SimpleITK.Image``."""

    return sitk.ReadImage(str(path))


def write_volume(path: str | Path, image, compress: bool = True) -> None:
    """Write a ``SimpleITK.Image`` atomically; the format follows the suffix.

    ``.nii.gz`` is written as plain NIfTI, then gzip-compressed with ISA-L
    (python-isal, about 4x faster than ITK's zlib on noisy CT) when it is installed.
    """

    path = Path(path)
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; plain ITK compression still works
        igzip = None
    if compress and igzip is not None and path.name.endswith(".nii.gz"):
        with atomic_path(path) as tmp:
            raw = tmp.with_name(tmp.name + ".raw.nii")  # a helper: removed with ``path``'s stale files
            try:
                sitk.WriteImage(image, str(raw), useCompression=False)
                with open(raw, "rb") as src, igzip.open(tmp, "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, length=1 << 22)
            finally:
                raw.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
