"""Stored pixel values to HU."""

import numpy as np

from covidct.dicom.hu import to_hu
from covidct.hounsfield import HU_AIR


def test_to_hu_applies_rescale_and_maps_padding_to_air():
    stored = np.array([[0, 1024, 2048], [-2000, 5, 100]], np.int16)
    hu = to_hu(stored, slope=1.0, intercept=-1024.0, padding_value=5)
    assert hu.dtype == np.int16
    assert hu.tolist() == [[-1024, 0, 1024], [HU_AIR, HU_AIR, -924]]
    # slope 0.5 and values beyond the HU range are clipped
    assert to_hu(np.array([8000]), 0.5, 0.0).tolist() == [3071]
    # -3024 padding (GE) is far below air: becomes air without a PixelPaddingValue
    assert to_hu(np.array([-3024]), 1.0, 0.0).tolist() == [HU_AIR]
