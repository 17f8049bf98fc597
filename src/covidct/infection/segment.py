"""A trained infection U-Net on one patient's volume: ``segment(volume, lung, model)`` returns one
``InfectionSegmentation`` for every model, binary or with a lesion-type head (an all-zero type map for
a binary model, and ``typed`` False). Built on ``covidct.infection.inference`` (``load_unet``,
``segment_volume``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidct.infection.inference import load_unet, segment_volume
from covidct.io import sha256_file
from covidct.volume import Volume


@dataclass(frozen=True)
class InfectionSegmentation:
    """The infection of a volume.

    Attributes:
        infected: uint8 infection mask (0/1) inside the lung, on the volume's grid.
        types: uint8 lesion types of the infected voxels (1 ground-glass, 2 consolidation); all zero
            when the model has no lesion-type head.
        typed: Whether the model has a lesion-type head.
        variant: The model's training variant (its sidecar's).
        model_sha256: The model file's SHA-256.
    """

    infected: np.ndarray
    types: np.ndarray
    typed: bool
    variant: str | None
    model_sha256: str


def segment(
    volume: Volume, lung: np.ndarray, model: str | Path, sidecar: str | Path | None = None
) -> InfectionSegmentation:
    """Infection and lesion types of a HU volume inside its lung mask (``lung > 0``), by the U-Net saved
    at ``model`` with its ``sidecar`` (default: the JSON beside it)."""
    net, settings = load_unet(model, sidecar)
    infected, types = segment_volume(net, settings, volume.array, np.asarray(lung) > 0)
    typed = types is not None
    return InfectionSegmentation(
        infected,
        types if typed else np.zeros_like(infected),
        typed,
        settings.get("variant"),
        sha256_file(model),
    )
