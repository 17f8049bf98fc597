"""Tests of the synthetic cohort: determinism, true scores, anatomy, DICOM round trip, identifiers."""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from scipy import ndimage

from covidct.demo.anatomy import (
    DIAPHRAGM_MM,
    LABEL_LEFT_LUNG,
    LABEL_RIGHT_LUNG,
    LARYNX_SEMI_AXES_MM,
    LESION_CONSOLIDATION,
    LESION_GGO,
    NECK_SEMI_AXES_MM,
    PHARYNX_SEMI_AXES_MM,
    TRACHEA_RADIUS_MM,
    TRACHEA_XY_MM,
    make_phantom,
    true_score,
)
from covidct.demo.cohort import DEMO_COHORT, sheet_rows, write_cohort
from covidct.demo.identities import (
    PERSON_KEYS,
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    fake_identity,
    inject_identifiers,
    scan_identity,
)
from covidct.demo.spec import LOBE_ORDER, PhantomSpec
from covidct.demo.writer import truth_readout, write_patient, write_series
from covidct.hounsfield import HU_AIR
from covidct.lungs.lobes import LOBE_LLL, LOBE_LUL, LOBE_RLL, LOBE_RML, LOBE_RUL

TINY = PhantomSpec(
    "tiny01", seed=7, covid=True, target_score=30.0, n_slices=12, slice_spacing_mm=25.0, matrix=64, pixel_spacing_mm=6.0
)
MEDIUM = PhantomSpec(
    "med01",
    seed=11,
    covid=True,
    target_score=40.0,
    n_slices=32,
    slice_spacing_mm=10.0,
    matrix=112,
    pixel_spacing_mm=3.4,
)


@pytest.fixture(scope="module")
def medium():
    return make_phantom(MEDIUM)


def _index(phantom, x_mm: float, y_mm: float) -> tuple[int, int]:
    """(y, x) index of the voxel nearest to an in-plane physical point."""
    sx, sy, _ = phantom.spacing
    return round((y_mm - phantom.origin[1]) / sy), round((x_mm - phantom.origin[0]) / sx)


# --- phantom ------------------------------------------------------------------------------


def test_same_seed_same_phantom_other_seed_differs():
    a, b = make_phantom(TINY), make_phantom(TINY)
    assert a.hu.dtype == np.int16 and a.lung_labels.dtype == np.uint8 and a.lesion_mask.dtype == np.uint8
    assert a.hu.shape == (12, 64, 64)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.lung_labels, b.lung_labels)
    np.testing.assert_array_equal(a.lesion_mask, b.lesion_mask)
    assert (a.origin, a.spacing, a.score) == (b.origin, b.spacing, b.score)
    c = make_phantom(replace(TINY, seed=8))
    assert not np.array_equal(a.hu, c.hu)
    assert not np.array_equal(a.lesion_mask, c.lesion_mask)
    assert fake_identity(7) == fake_identity(7)
    assert fake_identity(7)["PatientID"] != fake_identity(8)["PatientID"]


@pytest.mark.parametrize("covid, target", [(False, 0.0), (True, 8.0), (True, 50.0), (True, 84.0)])
def test_score_is_true_by_construction(covid, target):
    spec = replace(TINY, covid=covid, target_score=target)
    p = make_phantom(spec)
    n_lung = int(np.count_nonzero(p.lung_labels))
    n_lesion = int(np.count_nonzero(p.lesion_mask))
    assert n_lung > 3000
    assert n_lesion == int(np.floor(target / 100 * n_lung + 0.5))
    assert p.score == pytest.approx(100.0 * n_lesion / n_lung)
    assert abs(p.score - target) < 0.05
    assert not np.any(p.lesion_mask.astype(bool) & (p.lung_labels == 0)), "lesion outside the lung"
    if not covid:
        assert n_lesion == 0
    assert true_score(spec) == pytest.approx(p.score)


def test_hu_of_lung_lesions_and_air(medium):
    p = medium
    lung = p.lung_labels > 0
    kind = p.lesion_kind
    np.testing.assert_array_equal(kind > 0, p.lesion_mask > 0)
    parenchyma = p.hu[lung & (kind == 0)]
    assert -900 <= np.median(parenchyma) <= -800
    assert np.mean(parenchyma < -700) > 0.9
    ggo, cons = p.hu[kind == LESION_GGO], p.hu[kind == LESION_CONSOLIDATION]
    assert ggo.size > 1000 and cons.size > 100
    assert -750 <= np.median(ggo) <= -250
    assert -100 <= np.median(cons) <= 50
    assert p.hu[0, 0, 0] == HU_AIR and p.hu[-1, -1, 0] == HU_AIR  # corners: air, no noise
    assert p.hu.max() > 600  # bone
    assert p.hu.min() >= -1024 and p.hu.max() <= 3071
    # Lesions prefer posterior lung: their mean y index is behind the lung's.
    assert np.nonzero(p.lesion_mask)[1].mean() > np.nonzero(lung)[1].mean()


def test_neck_airway_enters_from_the_top_and_is_not_lung(medium):
    """The neck (deliberately added): the air column enters at the top slice as larynx and pharynx,
    runs down as the trachea and is never lung; the body there is the neck, not the chest."""
    p = medium
    iy, ix = _index(p, *TRACHEA_XY_MM)
    assert p.hu[-1, iy, ix] < -950
    assert p.lung_labels[-1].max() == 0  # top slice: neck only
    comp, _ = ndimage.label(p.hu < -950)
    airway = comp == comp[-1, iy, ix]
    assert not np.any(airway & (p.lung_labels > 0))
    assert np.count_nonzero(airway.any(axis=(1, 2))) >= 8  # trachea runs down many slices
    sx, sy, sz = p.spacing
    top_area = np.count_nonzero(airway[-1]) * sx * sy
    larynx = np.pi * (
        LARYNX_SEMI_AXES_MM[0] * LARYNX_SEMI_AXES_MM[1] + PHARYNX_SEMI_AXES_MM[0] * PHARYNX_SEMI_AXES_MM[1]
    )
    assert top_area == pytest.approx(larynx, rel=0.5)
    # below the neck, above the lungs' middle: the trachea's own cross-section
    lung_z = np.nonzero(p.lung_labels.any(axis=(1, 2)))[0]
    z_mid = int(lung_z[-1]) - 2
    trachea = airway[z_mid] & (
        np.hypot(*np.meshgrid(np.arange(p.hu.shape[1]) - iy, np.arange(p.hu.shape[2]) - ix, indexing="ij")) * sx
        <= 2 * TRACHEA_RADIUS_MM
    )
    assert np.count_nonzero(trachea) * sx * sy == pytest.approx(np.pi * TRACHEA_RADIUS_MM**2, rel=0.5)
    assert not airway[0].any()  # it ends above the lung bases
    # the neck is narrower than the chest
    width = [np.count_nonzero(p.hu[z, iy] > -500) * sx for z in (-1, z_mid)]  # along the trachea's row
    assert width[0] < 0.6 * width[1]
    assert width[0] <= 2 * NECK_SEMI_AXES_MM[0] + sx


def test_bowel_gas_under_the_diaphragm_is_not_lung():
    """Stomach and colon gas (deliberately added) lie under the left dome, at least DIAPHRAGM_MM
    below the lung, and are never lung (2 mm slices, so the gap is resolved)."""
    p = make_phantom(replace(MEDIUM, n_slices=160, slice_spacing_mm=2.0))
    gas = (p.hu < -950) & ~(p.lung_labels > 0)
    comp, _ = ndimage.label(p.hu < -950)
    top = np.nonzero(p.lung_labels.any(axis=(1, 2)))[0][0]
    low = np.zeros(comp.max() + 1, bool)
    low[np.unique(comp[: top + 3][gas[: top + 3]])] = True
    border = np.concatenate([comp[:, 0].ravel(), comp[:, -1].ravel(), comp[:, :, 0].ravel(), comp[:, :, -1].ravel()])
    low[np.unique(border)] = False  # outside air, above and below the table
    pockets = low[comp] & gas
    sx, sy, sz = p.spacing
    assert np.count_nonzero(pockets) * sx * sy * sz / 1000 > 20  # tens of mL of gas
    assert not np.any(pockets & (p.lung_labels > 0))
    left = np.nonzero(pockets.any(axis=(0, 1)))[0].mean()
    assert left > p.hu.shape[2] / 2  # on the patient's left (high x)
    # most gas has lung above it in its column (it is under the dome), never closer than DIAPHRAGM_MM
    zz, yy, xx = np.nonzero(pockets)
    column = p.lung_labels[:, yy, xx] > 0  # (z, voxel)
    has_lung = column.any(axis=0)
    assert has_lung.mean() > 0.5
    lowest_lung = np.argmax(column, axis=0)[has_lung]
    assert np.all((lowest_lung - zz[has_lung]) * sz > DIAPHRAGM_MM)


def test_left_right_and_lung_shape(medium):
    labels = medium.lung_labels
    right, left = labels == LABEL_RIGHT_LUNG, labels == LABEL_LEFT_LUNG
    # LPS: patient right is low x index.
    assert np.nonzero(right)[2].mean() < np.nonzero(left)[2].mean()
    assert np.count_nonzero(right) > np.count_nonzero(left)
    for mask in (right, left):
        assert ndimage.label(mask)[1] == 1
    per_slice = labels.any(axis=(1, 2))
    assert not per_slice[0] and not per_slice[-1]  # body-only slices at both ends
    assert per_slice.mean() > 0.6  # the top ~16 % of the scan is neck (lungs end at 80-84 % of its height)
    # Apex tapers: the lung area shrinks toward the top.
    area = np.count_nonzero(labels, axis=(1, 2))
    top = np.nonzero(per_slice)[0][-1]
    assert area[top] < 0.5 * area.max()


def test_five_lobes_split_by_fissures_where_anatomy_has_them(medium):
    """Lobes (deliberately added): the lower lobes lie behind and below the upper ones (oblique
    fissure), the right middle lobe in front between them (horizontal fissure); every lung voxel
    has exactly one lobe of its own side, each lobe in one piece, with adult-like shares."""
    lobes, labels = medium.lobes, medium.lung_labels
    np.testing.assert_array_equal(lobes > 0, labels > 0)
    assert set(np.unique(lobes[labels == LABEL_RIGHT_LUNG])) == {LOBE_RUL, LOBE_RML, LOBE_RLL}
    assert set(np.unique(lobes[labels == LABEL_LEFT_LUNG])) == {LOBE_LUL, LOBE_LLL}
    centre = {code: np.array(np.nonzero(lobes == code)).mean(axis=1) for code in range(1, 6)}  # (z, y, x)
    for upper, lower in ((LOBE_RUL, LOBE_RLL), (LOBE_LUL, LOBE_LLL)):
        assert centre[lower][0] < centre[upper][0] and centre[lower][1] > centre[upper][1]  # lower, posterior
    assert centre[LOBE_RML][1] < centre[LOBE_RLL][1] and centre[LOBE_RML][1] < centre[LOBE_RUL][1]  # anterior
    assert centre[LOBE_RLL][0] < centre[LOBE_RML][0] < centre[LOBE_RUL][0]
    n = np.count_nonzero(labels)
    shares = {code: np.count_nonzero(lobes == code) / n for code in range(1, 6)}
    assert 0.03 < shares[LOBE_RML] < 0.15 and all(0.12 < shares[c] < 0.35 for c in (1, 2, 3, 5))
    for code in range(1, 6):
        assert ndimage.label(lobes == code)[1] == 1


def test_lesions_placed_per_lobe_with_exact_fractions():
    involvement = (4.0, 0.0, 55.5, 24.0, 90.0)  # RUL, RML, RLL, LUL, LLL
    spec = replace(MEDIUM, lobe_involvement=involvement)
    p = make_phantom(spec)
    for code, percent in zip(LOBE_ORDER, involvement):
        n_lobe = np.count_nonzero(p.lobes == code)
        n_lesion = np.count_nonzero((p.lobes == code) & (p.lesion_mask > 0))
        assert n_lesion == int(np.floor(percent / 100 * n_lobe + 0.5)), code
    assert true_score(spec) == pytest.approx(p.score)
    truth = truth_readout(p)
    assert [truth["lobes"][k]["score"] for k in ("RUL", "RML", "RLL", "LUL", "LLL")] == [1, 0, 4, 2, 5]
    assert truth["ctss"] == 12 and truth["po"] == pytest.approx(p.score, abs=1e-4)
    kinds = p.lesion_kind[p.lesion_mask > 0]
    assert (kinds == LESION_GGO).any() and (kinds == LESION_CONSOLIDATION).any()
    with pytest.raises(ValueError, match="if and only if"):
        replace(MEDIUM, covid=False, target_score=0.0, lobe_involvement=involvement)
    with pytest.raises(ValueError, match="5 percents"):
        replace(MEDIUM, lobe_involvement=(10.0, 20.0))


def test_follow_up_scans_are_one_person_on_other_days():
    first, later = scan_identity(41, 41, 0), scan_identity(42, 41, 30)
    assert first == fake_identity(41)
    assert {k: later[k] for k in PERSON_KEYS} == {k: first[k] for k in PERSON_KEYS}
    assert later["StudyInstanceUID"] != first["StudyInstanceUID"]
    assert later["SeriesInstanceUID"] == fake_identity(42)["SeriesInstanceUID"]
    days = (datetime.strptime(later["StudyDate"], "%Y%m%d") - datetime.strptime(first["StudyDate"], "%Y%m%d")).days
    assert days == 30 and later["AcquisitionDate"] == later["StudyDate"]


def test_anatomy_is_physically_sized():
    coarse = make_phantom(replace(TINY, covid=False, target_score=0.0))
    fine = make_phantom(
        replace(
            TINY, covid=False, target_score=0.0, matrix=128, pixel_spacing_mm=3.0, n_slices=23, slice_spacing_mm=12.5
        )
    )

    def ml(p):
        return np.count_nonzero(p.lung_labels) * np.prod(p.spacing) / 1000

    assert 2500 < ml(fine) < 8000
    assert ml(coarse) == pytest.approx(ml(fine), rel=0.12)


# --- DICOM --------------------------------------------------------------------------------


def _read_axial(folder: Path):
    """Read the non-localizer series back to a canonical HU volume, as a reader would."""
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    axial = [ds for ds in datasets if "LOCALIZER" not in ds.ImageType]
    assert len({ds.SeriesInstanceUID for ds in axial}) == 1
    iop = np.array(axial[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    axial.sort(key=lambda ds: float(np.dot(np.array(ds.ImagePositionPatient, float), normal)))
    slices = []
    for ds in axial:
        pixels = ds.pixel_array
        hu = pixels.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        if "PixelPaddingValue" in ds:
            hu[pixels == ds.PixelPaddingValue] = HU_AIR
        slices.append(hu)
    volume = np.stack(slices)
    positions = np.array([np.array(ds.ImagePositionPatient, float) for ds in axial])
    if iop[0] < 0:  # column index runs toward patient right: mirror to LPS
        volume = volume[:, :, ::-1]
    if normal[2] < 0:
        volume, positions = volume[::-1], positions[::-1]
    return volume, positions, iop, axial, datasets


VARIANTS = [dict(flip_x=f, descending=d) for f, d in itertools.product((False, True), repeat=2)] + [
    dict(unsigned=True, rescale_slope=0.5),
    dict(padding=-2048, rescale_intercept=-1024, flip_x=True),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_write_patient_reads_back_exactly(tmp_path, variant):
    spec = replace(TINY, **variant)
    phantom = make_phantom(spec)
    truth = write_patient(spec, tmp_path / "dicom" / spec.patient_id, tmp_path / "truth")
    folder = tmp_path / "dicom" / spec.patient_id
    volume, positions, iop, axial, _ = _read_axial(folder)

    np.testing.assert_array_equal(volume, phantom.hu)
    sx, sy, sz = phantom.spacing
    assert [float(v) for v in axial[0].PixelSpacing] == pytest.approx([sy, sx])
    np.testing.assert_allclose(np.diff(positions[:, 2]), sz, atol=1e-3)
    assert float(axial[0].SliceThickness) == pytest.approx(sz)
    expected_row = [-1, 0, 0] if spec.flip_x else [1, 0, 0]
    np.testing.assert_allclose(iop, expected_row + [0, 1, 0])
    first = positions[0].copy()
    if spec.flip_x:  # IPP is the patient's leftmost column; the canonical origin is the rightmost
        first[0] -= (spec.matrix - 1) * sx
    np.testing.assert_allclose(first, phantom.origin, atol=1e-3)

    # InstanceNumber order: 1 is the most inferior slice unless descending.
    by_z = sorted(axial, key=lambda ds: float(ds.ImagePositionPatient[2]))
    numbers = [int(ds.InstanceNumber) for ds in by_z]
    assert numbers == (list(range(spec.n_slices, 0, -1)) if spec.descending else list(range(1, spec.n_slices + 1)))
    # File names are not in position order.
    z_by_name = {Path(ds.filename).name: float(ds.ImagePositionPatient[2]) for ds in axial}
    z_in_name_order = [z_by_name[n] for n in sorted(z_by_name)]
    assert z_in_name_order not in (sorted(z_in_name_order), sorted(z_in_name_order, reverse=True))
    assert int(axial[0].PixelRepresentation) == (0 if spec.unsigned else 1)
    if spec.padding is not None:
        assert int(axial[0].PixelPaddingValue) == spec.padding
        assert np.count_nonzero(axial[0].pixel_array == spec.padding) > 0

    lung = sitk.ReadImage(str(tmp_path / "truth" / f"{spec.patient_id}_lung.nii.gz"))
    np.testing.assert_allclose(lung.TransformIndexToPhysicalPoint((0, 0, 0)), phantom.origin, atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lung), phantom.lung_labels)
    # The first stored pixel of the first slice along the normal is the same point in both.
    expected = (spec.matrix - 1, 0, spec.n_slices - 1) if spec.flip_x else (0, 0, 0)
    ipp = tuple(float(v) for v in axial[0].ImagePositionPatient)
    assert lung.TransformPhysicalPointToIndex(ipp) == expected
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "truth" / f"{spec.patient_id}_lesion.nii.gz")))
    np.testing.assert_array_equal(lesion, phantom.lesion_mask)
    lobes = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "truth" / f"{spec.patient_id}_lobes.nii.gz")))
    np.testing.assert_array_equal(lobes, phantom.lobes)

    saved = json.loads((tmp_path / "truth" / f"{spec.patient_id}.json").read_text())
    assert saved == json.loads(json.dumps(truth))
    assert saved["score"] == pytest.approx(phantom.score)
    assert saved["label"] == 1 and saved["n_slices"] == spec.n_slices
    voxel_ml = np.prod(phantom.spacing) / 1000
    assert saved["lung_volume_ml"] == pytest.approx(np.count_nonzero(phantom.lung_labels) * voxel_ml, rel=1e-6)


def _all_values(ds: Dataset) -> set[str]:
    values = set()
    for elem in ds.iterall():
        if elem.VR in ("SQ",):
            continue
        if isinstance(elem.value, bytes):
            values.add(elem.value.rstrip(b"\0").decode("ascii", "replace"))
        elif isinstance(elem.value, (list, pydicom.multival.MultiValue)):
            values.update(str(v) for v in elem.value)
        else:
            values.add(str(elem.value))
    return values


@pytest.mark.parametrize("localizer", [True, False])
def test_identifiers_present_and_localizer_only_when_asked(tmp_path, localizer):
    spec = replace(TINY, localizer=localizer)
    truth = write_patient(spec, tmp_path / "d", tmp_path / "t")
    identity = fake_identity(spec.seed)
    assert truth["identity"] == identity
    files = sorted((tmp_path / "d").iterdir())
    raw = b"".join(f.read_bytes() for f in files)
    for key, value in identity.items():
        assert value.encode("ascii") in raw, key
    datasets = [pydicom.dcmread(f) for f in files]
    first = next(ds for ds in datasets if "LOCALIZER" not in ds.ImageType)
    found = _all_values(first)
    for key, value in identity.items():
        assert value in found, key
    assert first.OtherPatientIDsSequence[0].PatientID == identity["PatientID"]
    assert first.RequestAttributesSequence[0].ScheduledProcedureStepID == identity["AccessionNumber"]
    block = first.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    assert block[0x01].value == identity["PatientName"]
    assert block[0x02].value == identity["PatientID"]
    assert identity["PatientID"].encode() in block[0x03].value
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and first.Modality == "CT"
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.BurnedInAnnotation == "NO"

    scouts = [ds for ds in datasets if "LOCALIZER" in ds.ImageType]
    assert len(scouts) == (1 if localizer else 0)
    assert len(files) == spec.n_slices + len(scouts)
    for scout in scouts:
        assert scout.SeriesInstanceUID != first.SeriesInstanceUID
        assert scout.StudyInstanceUID == first.StudyInstanceUID
        assert scout.PatientID == identity["PatientID"]
        assert [float(v) for v in scout.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
        assert scout.pixel_array.shape == (128, 128)


def test_inject_identifiers_into_any_dataset():
    identity = fake_identity(3)
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    inject_identifiers(ds, identity)
    for key, value in identity.items():
        assert str(ds[key].value) == value, key
    assert ds.OtherPatientIDsSequence[0].IssuerOfPatientID == identity["IssuerOfPatientID"]
    assert ds.RequestAttributesSequence[0].RequestedProcedureID == identity["AccessionNumber"]
    assert ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[0x02].value == identity["PatientID"]

    kept = Dataset()
    kept.SeriesInstanceUID = "1.2.3.4"
    inject_identifiers(kept, identity, uids=False)
    assert kept.SeriesInstanceUID == "1.2.3.4" and "StudyInstanceUID" not in kept
    assert kept.PatientName == identity["PatientName"]


def test_padding_that_collides_with_real_values_is_refused(tmp_path):
    spec = replace(TINY, padding=HU_AIR)  # signed, intercept 0: -1000 is the air value
    with pytest.raises(ValueError, match="padding"):
        write_series(make_phantom(spec), spec, tmp_path, fake_identity(spec.seed))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patient_id="bad/id"),
        dict(covid=False),
        dict(target_score=120.0),
        dict(rescale_slope=0.3),
        dict(unsigned=True, rescale_intercept=0),
    ],
)
def test_invalid_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        replace(TINY, **kwargs)


# --- cohort -------------------------------------------------------------------------------


def test_demo_cohort_mix():
    specs = DEMO_COHORT
    assert len(specs) == 10
    assert [s.patient_id for s in specs] == [f"demo{i:02d}" for i in range(1, 11)]
    assert len({s.seed for s in specs}) == 10
    positives = [s for s in specs if s.covid]
    assert len(positives) == 6
    assert all(s.target_score == 0 for s in specs if not s.covid)
    # Every severity class 1..4 (1-25, 26-50, 51-75, 76-100 %) is represented.
    assert {min(4, int(np.ceil(s.target_score / 25))) for s in positives} == {1, 2, 3, 4}
    assert sum(s.localizer for s in specs) == 1
    for flag in ("flip_x", "descending", "unsigned"):
        assert any(getattr(s, flag) for s in specs), flag
    assert any(s.padding is not None for s in specs)
    assert any(s.rescale_slope != 1 for s in specs)
    for s in specs:
        assert 160 <= s.matrix <= 192 and 1.9 <= s.pixel_spacing_mm <= 2.3
        assert 40 <= s.n_slices <= 70 and 4 <= s.slice_spacing_mm <= 6
        assert s.matrix * s.pixel_spacing_mm >= 360  # the whole body fits the field of view


def test_sheet_rows():
    rows = sheet_rows(
        DEMO_COHORT, "results/demo/dicom", scores={s.patient_id: s.target_score + 0.004 for s in DEMO_COHORT}
    )
    assert rows[0] == {"patient_id": "demo01", "dicom_dir": "results/demo/dicom/demo01", "label": "1", "score": "8.00"}
    negatives = [r for r in rows if r["label"] == "0"]
    assert len(negatives) == 4 and all(r["score"] == "0" for r in negatives)
    computed = sheet_rows([TINY], "x")[0]
    assert computed["score"] == f"{make_phantom(TINY).score:.2f}"


def test_write_cohort(tmp_path):
    specs = (TINY, replace(TINY, patient_id="tiny02", seed=9, covid=False, target_score=0.0, localizer=True))
    sheet = write_cohort(tmp_path / "cohort", specs, sheet_dicom_root="results/demo/dicom")
    assert sheet == tmp_path / "cohort" / "patients.tsv"
    with open(sheet, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["patient_id"] for r in rows] == ["tiny01", "tiny02"]
    assert rows[0]["dicom_dir"] == "results/demo/dicom/tiny01"
    assert rows[1]["label"] == "0" and rows[1]["score"] == "0"
    truth = json.loads((tmp_path / "cohort" / "truth" / "tiny01.json").read_text())
    assert rows[0]["score"] == f"{truth['score']:.2f}"
    for pid in ("tiny01", "tiny02"):
        assert len(list((tmp_path / "cohort" / "dicom" / pid).glob("*.dcm"))) >= TINY.n_slices
        for suffix in (".json", "_lung.nii.gz", "_lesion.nii.gz", "_lobes.nii.gz"):
            assert (tmp_path / "cohort" / "truth" / f"{pid}{suffix}").is_file()
    assert not [p for p in (tmp_path / "cohort" / "dicom").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="duplicate"):
        write_cohort(tmp_path / "dup", (TINY, TINY))
