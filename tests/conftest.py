"""Shared test fixtures: real data location, tiny synthetic volumes built on the fly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

# The tiny cohort's session fixtures (tiny_run, tiny_rerun), shared by the workflow and SLURM tests.
pytest_plugins = ["tiny_cohort"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CT = SHARED_DATA / "ct"


def load_bench(name: str):
    """bench/<name>.py as a module (bench/ is no package); loaded once per session."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


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
        lung = (((x - (cx + sign * 0.18 * nx)) / (0.13 * nx)) ** 2 + ((y - cy) / (0.22 * ny)) ** 2
                + ((z - zc) / rz) ** 2) <= 1
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


@pytest.fixture
def phantom():
    return chest_phantom()
