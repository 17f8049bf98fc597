"""QC montages of lung masks and infection overlays."""

import numpy as np

from covidct.report.montage import montage


def test_montage_draws_contours_in_side_colours(phantom):
    hu, labels = phantom
    rgb = montage(hu, labels, n_slices=4, columns=2)
    assert rgb.shape == (2 * hu.shape[1], 2 * hu.shape[2], 3) and rgb.dtype == np.uint8
    red = np.all(rgb == (255, 60, 60), axis=2).sum()
    green = np.all(rgb == (60, 220, 60), axis=2).sum()
    assert red > 20 and green > 20
