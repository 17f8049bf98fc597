"""Real CT from ../shared/data/ct, read in place (never copied into the repository)."""

import numpy as np
import pytest
import SimpleITK as sitk

from covidct.dicom.hu import load_series
from covidct.errors import DicomInputError
from covidct.lungs.threshold import threshold_lungs
from covidct.volume import resample
from helpers import dice, require_shared_data


@pytest.fixture(scope="module")
def a0002_masks():
    out = {}
    for kernel in ("B40f", "B70f"):
        folder = require_shared_data("ct", "lung_pet_ct_dx_A0002", kernel)
        image, info = load_series(folder, "A0002")
        res = resample(image, 1.5)
        labels, stats = threshold_lungs(sitk.GetArrayViewFromImage(res), res.GetSpacing(), patient="A0002")
        out[kernel] = (image, info, labels, stats)
    return out


def test_a0002_geometry_and_hu(a0002_masks):
    image, info, _, _ = a0002_masks["B40f"]
    assert image.GetSize() == (512, 512, 30)
    assert image.GetSpacing() == pytest.approx((0.6465, 0.6465, 8.0), abs=1e-3)
    arr = sitk.GetArrayViewFromImage(image)
    assert arr.dtype == np.int16
    assert arr.min() >= -1024 and arr.max() <= 3071
    # air outside the body reads about -1000 HU (padding mapped to air)
    assert np.median(arr[:, :20, :20]) == pytest.approx(-1000, abs=30)


@pytest.mark.parametrize("kernel", ["B40f", "B70f"])
def test_a0002_lung_volume_is_plausible(a0002_masks, kernel):
    stats = a0002_masks[kernel][3]
    assert 2000 <= stats["lung_volume_ml"] <= 8000
    assert stats["left_right_known"]
    assert 0.3 < stats["right_volume_ml"] / stats["lung_volume_ml"] < 0.7


def test_a0002_two_kernels_agree(a0002_masks):
    assert dice(a0002_masks["B40f"][2] > 0, a0002_masks["B70f"][2] > 0) >= 0.99
    for kernel in ("B40f", "B70f"):
        assert a0002_masks[kernel][3]["airway_found"] and a0002_masks[kernel][3]["airway_volume_ml"] > 5


@pytest.fixture(scope="module")
def lung1_003():
    """LUNG1-003 as the workflow sees it (resampled to 1.5 mm), its threshold mask and the RTSTRUCT lungs
    rasterized on the mask grid: as given, and moved by minus half a CT pixel (the structure set sits half a
    pixel off its CT, see README)."""
    from covidct.lungs.evaluation import reference_labels
    from covidct.lungs.threshold import segment_threshold

    folder = require_shared_data("ct", "nsclc_radiomics_LUNG1-003")
    image, _ = load_series(folder / "ct", "L1003")
    res = resample(image, 1.5)
    hu = sitk.GetArrayFromImage(res)
    result = segment_threshold(hu, res.GetSpacing(), patient="L1003")
    refs = {}
    half = image.GetSpacing()[0] / 2
    for name, shift in (("as_given", (0.0, 0.0)), ("half_pixel", (-half, -half))):
        refs[name] = reference_labels(folder / "rtstruct", res, "L1003", lesion_pattern=None, shift_mm=shift)
    return res, hu, result, refs


def test_lung1_003_mask_matches_the_rtstruct(lung1_003):
    from covidct.lungs.evaluation import compare, dice

    res, hu, result, refs = lung1_003
    spacing = tuple(res.GetSpacing()[::-1])
    given = dice(result.labels > 0, refs["as_given"][0] > 0)
    moved = compare(result.labels, refs["half_pixel"][0], spacing)
    # measured 0.970 (0.966 before the rebuild) as given, 0.978 against the contours moved half a pixel;
    # the 0.98 is not reached (README "Lung masks": a threshold at the reference boundary scores 0.975)
    assert given >= 0.965
    assert moved["both"]["dice"] >= 0.975
    assert min(moved["right"]["dice"], moved["left"]["dice"]) >= 0.96
    assert moved["both"]["hd95_mm"] <= 6.0
    assert abs(moved["both"]["volume_diff_percent"]) < 3


def test_lung1_003_no_airway_above_the_carina_no_mask_below_the_diaphragm(lung1_003):
    res, hu, result, refs = lung1_003
    mask = result.labels > 0
    ref = refs["as_given"][0] > 0
    airways = result.airways
    assert airways.found and airways.carina_z is not None
    zs = np.nonzero(ref.any(axis=(1, 2)))[0]
    assert zs[0] < airways.carina_z < zs[-1]
    above = np.zeros(mask.shape, bool)
    above[airways.carina_z + 1 :] = True
    assert not (mask & above & airways.mask).any()  # the trachea is out
    assert (mask & above & ~ref & (hu < -900)).sum() * 1.5**3 / 1000 < 0.5  # no air outside the lungs up there
    # gas under the diaphragm: air (HU < -900) in the mask below the reference lungs' floor in its column, in
    # the lower third of the lungs (3.5 mL before the rebuild); hardly any mask below their lowest slice
    has = ref.any(axis=0)
    floor = np.where(has, np.argmax(ref, axis=0), 0)
    z = np.arange(mask.shape[0])[:, None, None]
    lower = z < zs[0] + (zs[-1] - zs[0]) // 3
    assert not (mask & lower & has[None] & (z < floor[None]) & (hu < -900)).any()
    assert (mask & (z < zs[0])).sum() * 1.5**3 / 1000 < 0.5
    assert result.stats["airway_volume_ml"] > 20


def test_jpeg2000_series_decodes_to_hu():
    image, info = load_series(require_shared_data("ct", "jpeg2000_abdomen_20slices"), "J2K")
    assert image.GetSize() == (512, 512, 20)
    assert image.GetSpacing() == pytest.approx((0.9766, 0.9766, 2.0), abs=1e-3)
    arr = sitk.GetArrayViewFromImage(image)
    centre = arr[:, 200:312, 200:312]
    # abdomen: soft tissue dominates the centre (liver/bowel/muscle -100..+100 HU)
    assert -150 < np.median(centre) < 150
    assert np.median(arr[:, :10, :10]) <= -900


def test_jpeg2000_abdomen_has_no_lungs():
    image, _ = load_series(require_shared_data("ct", "jpeg2000_abdomen_20slices"), "J2K")
    res = resample(image, 1.5)
    with pytest.raises(Exception, match="no lungs found"):
        threshold_lungs(sitk.GetArrayViewFromImage(res), res.GetSpacing(), patient="J2K")


def test_minimal_header_two_slices_is_too_few():
    folder = require_shared_data("ct", "minimal_header_2slices")
    with pytest.raises(DicomInputError, match=r"2 slice\(s\); at least 3") as err:
        load_series(folder, "MIN")
    assert "patient MIN" in str(err.value) and "minimal_header_2slices" in str(err.value)


def test_coronal_series_is_refused():
    sbu = require_shared_data("ct", "covid19_ny_sbu_slices")
    folder = sorted(p for p in sbu.iterdir() if p.is_dir())[0] / "coronal"
    with pytest.raises(DicomInputError, match="no axial CT series.*coronal"):
        load_series(folder, "SBU", min_slices=1)
