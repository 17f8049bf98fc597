"""The lung mask of a volume, from the backend the configuration names (``lung_mask.backend``).

``segment(volume, patient, settings)`` returns one ``LungSegmentation`` whatever the backend, as
lungmask's ``LMInferer(modelname).apply(image)`` returns one label map whatever the model: the label
map (0 background, 1 right, 2 left, 3 side unknown) on the volume's grid and its provenance (backend,
package versions, the backend's settings or weights, lung volumes, QC flags). A backend is a function
in ``BACKENDS``: it gets the volume, the patient and the settings, and returns the label map, what it
adds to the provenance, and the airways it found (for the QC; None when it found none).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from covidct import config
from covidct.errors import CovidctError
from covidct.io import sha256_file
from covidct.lungs.labels import versions, volume_stats
from covidct.lungs.lungmask import lungmask_lungs, resolve_weights
from covidct.lungs.qc import mask_qc
from covidct.lungs.threshold import ThresholdParams, segment_threshold
from covidct.volume import Volume


@dataclass(frozen=True)
class LungMaskSettings:
    """The ``lung_mask`` configuration block (defaults: the schema's).

    Attributes:
        backend: A key of BACKENDS.
        weights: lungmask's R231 weights file ("" or None: the torch hub cache).
        force_cpu: lungmask on the CPU even with CUDA.
        batch_size: Slices per lungmask forward pass.
        threshold: The threshold backend's parameters (``ThresholdParams`` fields; missing ones default).
        workers: Processes the threshold backend may use (not configuration: the job's threads).
    """

    backend: str = config.default("lung_mask.backend")
    weights: str | None = config.default("lung_mask.weights")
    force_cpu: bool = config.default("lung_mask.force_cpu")
    batch_size: int = config.default("lung_mask.batch_size")
    threshold: dict = field(default_factory=dict)
    workers: int = 1


@dataclass(frozen=True)
class LungSegmentation:
    """A lung mask and how it was found.

    Attributes:
        labels: uint8 label map on the volume's grid (1 right, 2 left, 3 side unknown).
        provenance: Backend, versions, settings or weights, volumes, ``qc`` (flags and figures).
    """

    labels: np.ndarray
    provenance: dict

    @property
    def mask(self) -> np.ndarray:
        """The binary lung mask (uint8): every lung voxel, whatever its side."""
        return (self.labels > 0).astype(np.uint8)


Backend = Callable[[Volume, str, LungMaskSettings], tuple[np.ndarray, dict, object]]


def _threshold(volume: Volume, patient: str, settings: LungMaskSettings) -> tuple[np.ndarray, dict, object]:
    params = ThresholdParams(**(settings.threshold or {}))
    result = segment_threshold(volume.array, volume.spacing, params, patient, workers=settings.workers)
    return result.labels, {"params": params.__dict__, **result.stats}, result.airways


def _lungmask(volume: Volume, patient: str, settings: LungMaskSettings) -> tuple[np.ndarray, dict, object]:
    path = resolve_weights(settings.weights or None, patient)
    provenance = {"weights_file": path.name, "weights_sha256": sha256_file(path)}
    labels, stats = lungmask_lungs(
        volume.to_image(), path, force_cpu=settings.force_cpu, batch_size=settings.batch_size, patient=patient
    )
    provenance.update(stats)
    provenance.update(volume_stats(labels, volume.spacing))
    provenance["left_right_known"] = True
    return labels, provenance, None


#: The lung mask backends by their ``lung_mask.backend`` name.
BACKENDS: dict[str, Backend] = {"threshold": _threshold, "lungmask": _lungmask}


def segment(volume: Volume, patient: str, settings: LungMaskSettings | None = None) -> LungSegmentation:
    """The lungs of a HU volume by the backend ``settings.backend``, with their QC.

    Raises:
        CovidctError: an unknown backend, or the backend's own (no lungs found, weights missing).
    """
    settings = settings or LungMaskSettings()
    if settings.backend not in BACKENDS:
        names = " or ".join(repr(name) for name in BACKENDS)
        raise CovidctError(f"unknown lung_mask.backend {settings.backend!r}: use {names}", patient)
    started = time.perf_counter()
    labels, found, airways = BACKENDS[settings.backend](volume, patient, settings)
    provenance = {"patient": patient, "backend": settings.backend, "versions": versions(), **found}
    provenance["qc"] = mask_qc(labels, volume.array, volume.spacing, airway=airways)
    provenance["seconds"] = round(time.perf_counter() - started, 2)
    return LungSegmentation(labels.astype(np.uint8), provenance)
