"""The data sets of the 3D models: the streaming HDF5 writer (one sample per chunk, memory flat
in the number of patients) and a reader for small files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError
from covidct.io import atomic_path


def write_hdf5(
    path: str | Path,
    samples: Iterable[tuple[str, np.ndarray, int, float]],
    shape: Sequence[int],
    hu_window: Sequence[float],
    dtype: str = "float16",
) -> int:
    """Stream ``(patient_id, array, label, score)`` samples into an HDF5 file, atomically.

    One sample per chunk, gzip-compressed; memory does not grow with the number of
    samples (each array is written and dropped). Datasets: ``images`` (N, D, H, W, 1),
    ``labels`` uint8, ``scores`` float32, ``patient_ids``; attributes say how
    to get HU back: ``hu = value * (hu_max - hu_min) + hu_min``.

    Returns:
        The number of samples written.
    """
    import h5py

    shape = tuple(int(s) for s in shape)
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            images = f.create_dataset(
                "images",
                shape=(0, *shape, 1),
                maxshape=(None, *shape, 1),
                dtype=dtype,
                chunks=(1, *shape, 1),
                compression="gzip",
                compression_opts=1,
                shuffle=True,
            )
            labels = f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype="uint8", chunks=(1024,))
            scores = f.create_dataset("scores", shape=(0,), maxshape=(None,), dtype="float32", chunks=(1024,))
            ids = f.create_dataset(
                "patient_ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(1024,)
            )
            n = 0
            for pid, array, label, score in samples:
                if tuple(array.shape) != shape:
                    raise CovidctError(f"array shape {array.shape} differs from the configured {shape}", pid)
                for ds in (images, labels, scores, ids):
                    ds.resize(n + 1, axis=0)
                images[n] = array.astype(dtype)[..., None]
                labels[n] = label
                scores[n] = score
                ids[n] = pid
                n += 1
            images.attrs["hu_min"], images.attrs["hu_max"] = float(hu_window[0]), float(hu_window[1])
            images.attrs["description"] = "lung-masked CT, HU clipped to [hu_min, hu_max] and scaled to [0, 1]"
            images.attrs["axes"] = (
                "sample, depth (inferior->superior), height (anterior->posterior), width (patient right->left), channel"
            )
    return n


def read_hdf5(path: str | Path) -> dict:
    """Small HDF5 files whole (tests, metrics): images, labels, scores, patient_ids."""
    import h5py

    with h5py.File(path, "r") as f:
        return {
            "images": f["images"][...],
            "labels": f["labels"][...],
            "scores": f["scores"][...],
            "patient_ids": [s.decode() if isinstance(s, bytes) else s for s in f["patient_ids"][...]],
            "attrs": dict(f["images"].attrs),
        }
