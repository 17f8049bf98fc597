"""Infection segmentation on 2D CT slices and patient volumes.

- ``lungs2d``: the lungs of a 2D grey-level slice (the lung finder of 2D sources).
- ``inputs``: the input space: every slice cropped to its lungs, turned, calibrated inside them.
- ``unet``: the network (BatchNorm U-Net, infection or lesion-type head), its losses and mask metrics.
- ``data``: training sources (2D images, 3D volumes, lesion-free volumes) in the input space, folds.
- ``augment``: geometric, elastic and intensity augmentation in the input space.
- ``train``: the schedule, degenerate-run detection, k-fold cross-validation and the final model.
- ``inference``: patient volumes (infection and lesion types), severity, test-folder evaluation.
"""

from covidct.infection.data import SliceGroup, assign_folds, load_image_folder, load_sources
from covidct.infection.inference import evaluate_folder, load_unet, segment_volume, severity
from covidct.infection.inputs import Frame, frame_image, frame_volume, from_input, mask_to_input, to_input
from covidct.infection.lungs2d import find_lungs
from covidct.infection.train import cross_validate, train
from covidct.infection.unet import build_unet, mask_metrics, mean_metrics

__all__ = [
    "Frame",
    "SliceGroup",
    "assign_folds",
    "build_unet",
    "cross_validate",
    "evaluate_folder",
    "find_lungs",
    "frame_image",
    "frame_volume",
    "from_input",
    "load_image_folder",
    "load_sources",
    "load_unet",
    "mask_metrics",
    "mask_to_input",
    "mean_metrics",
    "segment_volume",
    "severity",
    "to_input",
    "train",
]
