"""Infection segmentation on 2D CT slices and patient volumes.

- ``unet``: the network (GroupNorm U-Net, infection or lesion-type head), its losses and mask metrics.
- ``data``: slice preparation shared by training and inference, training sources, folds.
- ``augment``: geometric, elastic and intensity augmentation.
- ``train``: the schedule, degenerate-run detection, k-fold cross-validation and the final model.
- ``inference``: patient volumes (infection and lesion types), severity, test-folder evaluation.
"""

from covidct.infection.data import (
    SliceGroup,
    assign_folds,
    load_image_folder,
    load_sources,
    prepare_mask,
    prepare_slice,
    restore_slice,
)
from covidct.infection.inference import evaluate_folder, load_unet, segment_volume, severity
from covidct.infection.train import cross_validate, train
from covidct.infection.unet import build_unet, mask_metrics, mean_metrics, standardize

__all__ = [
    "SliceGroup",
    "assign_folds",
    "build_unet",
    "cross_validate",
    "evaluate_folder",
    "load_image_folder",
    "load_sources",
    "load_unet",
    "mask_metrics",
    "mean_metrics",
    "prepare_mask",
    "prepare_slice",
    "restore_slice",
    "segment_volume",
    "severity",
    "standardize",
    "train",
]
