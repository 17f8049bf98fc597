"""The ``lungmask`` R231 U-Net backend (CUDA when available), and the weights of every lungmask model
(R231 here, LTRCLobes in ``covidct.lungs.lobes``): from a configured file or the torch hub cache,
never downloaded at run time (``resolve_weights``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidct.errors import CovidctError, MissingWeightsError

R231_FILE = "unet_r231-d5d2fc3d.pth"


R231_URL = "https://github.com/JoHof/lungmask/releases/download/v0.0/unet_r231-d5d2fc3d.pth"


def hub_weights_path(file_name: str = R231_FILE) -> Path:
    """Where ``torch.hub`` keeps a lungmask weights file (``$TORCH_HOME/hub/checkpoints``; R231's
    by default, the lobe model's for ``covidct.lungs.lobes``)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints" / file_name


@dataclass(frozen=True)
class WeightsFile:
    """A lungmask model's weights, as the configuration names them and the hub cache holds them.

    Attributes:
        model: lungmask's model name (``R231``, ``LTRCLobes``).
        file: The file name (as released, and as ``torch.hub`` caches it).
        url: Where the file is released (named in messages; nothing is downloaded).
        config_key: The configuration key that names a local copy.
        otherwise: What a user can do instead, for the message when the file is missing.
    """

    model: str
    file: str
    url: str
    config_key: str
    otherwise: str


R231 = WeightsFile("R231", R231_FILE, R231_URL, "lung_mask.weights", "use lung_mask.backend: threshold")


def resolve_weights(weights: str | Path | None, patient: str | None = None, model: WeightsFile = R231) -> Path:
    """The weights file of ``model`` (R231 by default) to use: the configured one, else the torch hub cache.

    Raises:
        MissingWeightsError: neither is present (no download is attempted).
    """
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise MissingWeightsError(f"{model.config_key} names a file that does not exist", patient, path)
        return path
    cached = hub_weights_path(model.file)
    if cached.is_file():
        return cached
    raise MissingWeightsError(
        f"lungmask {model.model} weights not found and no download is attempted. Either set config "
        f"{model.config_key} to a local copy of {model.file} (from {model.url}), or put that file at {cached} "
        f"(the torch hub cache), or {model.otherwise}",
        patient,
    )


def lungmask_lungs(
    image, weights: Path, force_cpu: bool = False, batch_size: int = 20, patient: str | None = None
) -> tuple[np.ndarray, dict]:
    """Run lungmask R231 on a SimpleITK HU image.

    Args:
        image: HU image (any orientation; lungmask reorients internally).
        weights: R231 state dict file.
        force_cpu: Do not use CUDA even if present.
        batch_size: Slices per forward pass.
        patient: Pseudonymous id for messages.

    Returns:
        ``(labels, stats)``, labels (z, y, x) uint8 1 right / 2 left on the image grid.
    """
    import torch
    from lungmask import LMInferer

    try:
        inferer = LMInferer(
            modelname="R231", modelpath=str(weights), force_cpu=force_cpu, batch_size=batch_size, tqdm_disable=True
        )
    except Exception as exc:
        raise CovidctError(f"cannot load R231 weights ({type(exc).__name__}: {exc})", patient, weights) from None
    labels = inferer.apply(image).astype(np.uint8)
    stats = {"device": str(inferer.device), "cuda_available": torch.cuda.is_available()}
    return labels, stats
