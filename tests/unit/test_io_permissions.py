"""Output permissions follow the umask (docs/outputs.md): files 0666 & ~umask, folders 0777 & ~umask."""

from __future__ import annotations

import os

import numpy as np
import pytest

from covidct.io import atomic_dir, write_json, write_npy


@pytest.mark.parametrize(
    "mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)]
)
def test_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_npy(tmp_path / "a.npy", np.zeros(3))
        with atomic_dir(tmp_path / "series") as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "1.dcm").write_bytes(b"x")
    finally:
        os.umask(old)
    for name in ("a.json", "a.npy", "series/sub/1.dcm"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == file_mode, name
    for name in ("series", "series/sub"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == dir_mode, name
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left
