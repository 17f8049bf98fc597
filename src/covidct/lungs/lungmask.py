"""The ``lungmask`` R231 U-Net backend (CUDA when available): its weights from a configured file
or the torch hub cache, never downloaded at run time."""

from __future__ import annotations

import os
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


def resolve_weights(weights: str | Path | None, patient: str | None = None) -> Path:
    """The R231 weights file to use: the configured one, else the torch hub cache.

    Raises:
        MissingWeightsError: neither is present (no download is attempted).
    """
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise MissingWeightsError("lung_mask.weights names a file that does not exist", patient, path)
        return path
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    raise MissingWeightsError(
        f"lungmask R231 weights not found and no download is attempted. Either set config "
        f"lung_mask.weights to a local copy of {R231_FILE} (from {R231_URL}), or put that file at {cached} "
        f"(the torch hub cache), or use lung_mask.backend: threshold",
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
