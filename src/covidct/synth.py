"""A deterministic synthetic chest CT cohort, written as real DICOM.

The built-in demo cohort lets the whole workflow run without any patient data. Each
patient is a phantom built in mm on a canonical LPS grid (``x`` to the patient's left,
``y`` posterior, ``z`` superior; ``z`` index 0 is the most inferior slice): air, a
patient table, body outline with subcutaneous fat and muscle, ribs, spine, sternum,
mediastinal fat, heart and aorta, two lungs with a branching vessel tree, trachea and
main bronchi, and for COVID-positive patients ground-glass and consolidation lesions
that fill an exact fraction of the lung, so the score is true by construction.

The phantom is written as a real CT series (one file per slice, shuffled file names,
varying orientation sign, slice order, pixel encoding and padding) whose headers carry
realistic but FAKE identifiers, so that the anonymization step has something to remove.
Everything is deterministic per ``PhantomSpec.seed``.

Array code (``make_phantom``) knows nothing of files; the writers are at the end.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from covidct.io import atomic_dir, atomic_path, write_json, write_volume

if TYPE_CHECKING:
    import pydicom
    import SimpleITK

log = logging.getLogger(__name__)

# --- Hounsfield units -------------------------------------------------------------------
HU_AIR = -1000
HU_MIN = -1024
HU_MAX = 3071
HU_FAT = -100
HU_MEDIASTINAL_FAT = -80
HU_SOFT_TISSUE = 35
HU_MUSCLE = 40
HU_BLOOD = 40
HU_AORTA = 45
HU_LIVER = 55
HU_LUNG = -850
#: Dependent (posterior) lung is this much denser than anterior lung.
HU_LUNG_AP_GRADIENT = 40
HU_RIB = 700
HU_CORTICAL_BONE = 800
HU_CANCELLOUS_BONE = 250
HU_DISC = 90
HU_CSF = 15
HU_TABLE = 200
#: Ground-glass opacity, from the lesion rim to its dense core.
HU_GGO = (-700, -300)
#: Consolidation (inside the clinical -100..+50 band).
HU_CONSOLIDATION = (-80, 30)
NOISE_SIGMA_HU = 20.0

# --- Labels -----------------------------------------------------------------------------
LABEL_RIGHT_LUNG = 1
LABEL_LEFT_LUNG = 2
LESION_GGO = 1
LESION_CONSOLIDATION = 2

# --- Geometry (mm, LPS, body centred on x = y = 0) --------------------------------------
BODY_SEMI_AXES_MM = (170.0, 120.0)
FAT_THICKNESS_MM = 12.0
#: Body surface to the inner thoracic wall (lateral, antero-posterior).
CHEST_WALL_MM = (30.0, 25.0)
PLEURA_MM = 3.0
TABLE_GAP_MM = 18.0
TABLE_THICKNESS_MM = 6.0
TABLE_CURVATURE_PER_MM = 0.0012
TABLE_HALF_WIDTH_MM = 200.0
TRACHEA_XY_MM = (0.0, 20.0)
TRACHEA_RADIUS_MM = 9.0
AIRWAY_WALL_MM = 2.0
#: Right and left main bronchus: end point relative to the carina (x, y, z) and radii.
BRONCHUS_END_MM = {LABEL_RIGHT_LUNG: (-30.0, -2.0, -22.0), LABEL_LEFT_LUNG: (40.0, 0.0, -35.0)}
BRONCHUS_RADII_MM = {LABEL_RIGHT_LUNG: (7.0, 6.0), LABEL_LEFT_LUNG: (6.5, 5.5)}
#: Fraction of the lung height (base to apex) at which the carina lies.
CARINA_HEIGHT = 0.62
#: Central mediastinal column kept free of lung: |x - centre| < half width.
MEDIASTINUM_X_MM = 5.0
MEDIASTINUM_HALF_WIDTH_MM = 20.0
ESOPHAGUS_XY_MM = (4.0, 40.0)
ESOPHAGUS_RADIUS_MM = 7.0
SPINE_RADIUS_MM = 17.0
SPINE_CORTEX_MM = 2.5
SPINAL_CANAL_RADIUS_MM = 8.0
VERTEBRA_PERIOD_MM = 26.0
DISC_MM = 5.0
RIB_HALF_THICKNESS_MM = 4.5
RIB_HALF_LENGTH_MM = 9.0
RIBS_PER_RADIAN = 9.0 / np.pi
AORTA_RADIUS_MM = 14.0
KEEPOUT_MARGIN_MM = 4.0
VESSEL_ROOT_RADIUS_MM = 4.5
VESSEL_ROOT_LENGTH_MM = 40.0
VESSEL_MIN_RADIUS_MM = 0.8
VESSEL_MAX_DEPTH = 7
#: Child/parent radius and length ratios at each bifurcation.
VESSEL_RADIUS_RATIO = 0.79
VESSEL_LENGTH_RATIO = (0.68, 0.82)
#: Segmental trunks leaving each hilum (right lung; mirrored in x for the left).
VESSEL_TRUNKS = ((-0.3, 0.05, 0.95), (-0.6, -0.6, 0.5), (-0.9, 0.0, 0.1), (-0.6, -0.7, -0.3),
                 (-0.4, 0.8, 0.2), (-0.5, 0.5, -0.7), (-0.6, -0.2, -0.75))
#: Neck: above the lung apex by NECK_START_MM the body narrows to the neck (semi-axes, centre y),
#: with a fat rim, a cervical vertebra and, from LARYNX_START_MM higher, the larynx around the
#: trachea and the pharynx behind it: air that enters the scan from the top and is not lung.
NECK_START_MM = 12.0
NECK_SEMI_AXES_MM = (60.0, 50.0)
NECK_CENTRE_Y_MM = 30.0
NECK_FAT_MM = 8.0
CERVICAL_SPINE_XY_MM = (0.0, 62.0)
CERVICAL_SPINE_RADIUS_MM = 11.0
LARYNX_START_MM = 20.0
LARYNX_SEMI_AXES_MM = (12.0, 14.0)
PHARYNX_XY_MM = (0.0, 38.0)
PHARYNX_SEMI_AXES_MM = (16.0, 5.0)
#: Gas below the diaphragm, which must never join a lung: the stomach under the left dome (gas in
#: its anterior part, fluid behind; centre relative to the left lung's footprint centre and the top of
#: the left dome, semi-axes) and pockets of the colon's splenic flexure (dx, dy, depth under the dome
#: top, radius). All stay at least DIAPHRAGM_MM below the dome (the diaphragm muscle).
DIAPHRAGM_MM = 4.0
STOMACH_OFFSET_MM = (10.0, -15.0, -25.0)
STOMACH_SEMI_AXES_MM = (45.0, 35.0, 22.0)
STOMACH_FLUID_LEVEL_MM = -5.0
COLON_GAS_MM = ((48.0, -40.0, 12.0, 13.0), (35.0, -62.0, 28.0, 10.0))
#: Lesion texture: smooth noise on physical lattices (step mm, smoothing in steps, weight).
LESION_NOISE_OCTAVES = ((8.0, 1.2, 1.0), (4.0, 1.0, 0.35))

# --- DICOM --------------------------------------------------------------------------------
UID_ROOT = "1.2.826.0.1.3680043.8.498."
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PRIVATE_GROUP = 0x0009
PRIVATE_CREATOR = "ACME_CT 1.0"
LOCALIZER_SIZE = 128
_PATIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class PhantomSpec:
    """One synthetic patient: anatomy seed, label, target score and acquisition.

    Attributes:
        patient_id: Pseudonymous id (letters, digits, ``_``, ``-``), names folders.
        seed: Seed of everything random about this patient (>= 0).
        covid: The label.
        target_score: Percent of lung volume involved by lesions (0 for negatives).
        n_slices: Number of axial slices.
        slice_spacing_mm: Distance between slice centres (= SliceThickness).
        matrix: Rows = columns.
        pixel_spacing_mm: In-plane pixel size.
        flip_x: Row cosine (-1, 0, 0): column index increases toward patient right.
        descending: InstanceNumber 1 is the most superior slice.
        unsigned: PixelRepresentation 0 (uint16) instead of 1 (int16).
        padding: Stored value outside the circular reconstruction field of view, written
            as PixelPaddingValue; None for no padding.
        localizer: The folder also holds a one-image coronal LOCALIZER series.
        rescale_slope: RescaleSlope; 1/slope must be an integer (1, 0.5, ...).
        rescale_intercept: RescaleIntercept (integer); None: 0 if signed, -1024 if unsigned.
    """

    patient_id: str
    seed: int
    covid: bool
    target_score: float
    n_slices: int
    slice_spacing_mm: float
    matrix: int
    pixel_spacing_mm: float
    flip_x: bool = False
    descending: bool = False
    unsigned: bool = False
    padding: int | None = None
    localizer: bool = False
    rescale_slope: float = 1.0
    rescale_intercept: float | None = None

    def __post_init__(self) -> None:
        if not _PATIENT_ID_RE.match(self.patient_id):
            raise ValueError(f"patient_id {self.patient_id!r}: only letters, digits, _ and - are allowed")
        if self.seed < 0:
            raise ValueError(f"{self.patient_id}: seed must be >= 0")
        if not 0.0 <= self.target_score <= 100.0:
            raise ValueError(f"{self.patient_id}: target_score must lie in [0, 100]")
        if not self.covid and self.target_score != 0:
            raise ValueError(f"{self.patient_id}: a negative patient has target_score 0")
        if self.n_slices < 3 or self.matrix < 16:
            raise ValueError(f"{self.patient_id}: need at least 3 slices and a 16x16 matrix")
        if self.slice_spacing_mm <= 0 or self.pixel_spacing_mm <= 0:
            raise ValueError(f"{self.patient_id}: spacings must be positive")
        inverse = 1.0 / self.rescale_slope if self.rescale_slope > 0 else 0.0
        if self.rescale_slope <= 0 or abs(inverse - round(inverse)) > 1e-9:
            raise ValueError(f"{self.patient_id}: rescale_slope must be 1/k for an integer k >= 1")
        if self.intercept != round(self.intercept):
            raise ValueError(f"{self.patient_id}: rescale_intercept must be an integer")
        if self.unsigned and self.intercept > HU_MIN:
            raise ValueError(f"{self.patient_id}: unsigned pixels need rescale_intercept <= {HU_MIN}")
        if self.padding is not None:
            lo, hi = (0, 65535) if self.unsigned else (-32768, 32767)
            if not lo <= self.padding <= hi:
                raise ValueError(f"{self.patient_id}: padding {self.padding} does not fit the pixel type")

    @property
    def intercept(self) -> float:
        """The RescaleIntercept actually written."""
        if self.rescale_intercept is not None:
            return float(self.rescale_intercept)
        return float(HU_MIN) if self.unsigned else 0.0


DEMO_COHORT: tuple[PhantomSpec, ...] = (
    PhantomSpec("demo01", 1101, True, 8.0, 60, 5.0, 176, 2.2),
    PhantomSpec("demo02", 1102, True, 27.0, 52, 6.0, 192, 2.0, flip_x=True, padding=-2048,
                rescale_intercept=-1024),
    PhantomSpec("demo03", 1103, False, 0.0, 70, 4.5, 168, 2.3, descending=True, unsigned=True),
    PhantomSpec("demo04", 1104, True, 44.0, 64, 5.0, 184, 2.1, localizer=True),
    PhantomSpec("demo05", 1105, False, 0.0, 48, 6.0, 180, 2.15, flip_x=True, descending=True),
    PhantomSpec("demo06", 1106, True, 63.0, 66, 4.8, 172, 2.25, descending=True, padding=-2000),
    PhantomSpec("demo07", 1107, True, 84.0, 56, 5.5, 188, 2.05, unsigned=True, rescale_slope=0.5),
    PhantomSpec("demo08", 1108, False, 0.0, 62, 5.0, 168, 2.3, padding=-2048, rescale_intercept=-1024),
    PhantomSpec("demo09", 1109, True, 35.0, 44, 6.0, 176, 2.2, flip_x=True, unsigned=True),
    PhantomSpec("demo10", 1110, False, 0.0, 58, 5.0, 192, 2.0, descending=True),
)
#: The demo sheet pins its splits: with 10 patients a hashed 70/15/15 split could leave val or
#: test empty or one-class; pinned, each holds one COVID-19 and one negative patient.
DEMO_SPLITS = {**{f"demo{i:02d}": "train" for i in (1, 2, 3, 6, 7, 10)},
               "demo04": "test", "demo05": "test", "demo08": "val", "demo09": "val"}


@dataclass
class Phantom:
    """A synthetic CT volume on the canonical LPS grid, with its ground truth.

    Attributes:
        hu: int16 (z, y, x); x to patient left, y posterior, z superior; z=0 most inferior.
        lung_labels: uint8, 0 outside, 1 right lung, 2 left lung (vessels and lesions
            inside the lung included; trachea and main bronchi excluded).
        lesion_mask: uint8, 1 where a lesion is (a subset of the lung).
        spacing: (x, y, z) in mm.
        origin: LPS position (mm) of the centre of voxel (0, 0, 0).
        score: Percent of lung voxels inside ``lesion_mask``, counted from the arrays.
        lesion_kind: uint8, 0 none, 1 ground glass (LESION_GGO), 2 consolidation.
    """

    hu: np.ndarray
    lung_labels: np.ndarray
    lesion_mask: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    score: float
    lesion_kind: np.ndarray | None = field(default=None, repr=False)


# ========================================================================================
# Geometry helpers (pure array code)
# ========================================================================================


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]  # (z, y, x)
    origin: tuple[float, float, float]  # (x, y, z)
    spacing: tuple[float, float, float]  # (x, y, z)

    @property
    def xs(self) -> np.ndarray:
        return self.origin[0] + self.spacing[0] * np.arange(self.shape[2])

    @property
    def ys(self) -> np.ndarray:
        return self.origin[1] + self.spacing[1] * np.arange(self.shape[1])

    @property
    def zs(self) -> np.ndarray:
        return self.origin[2] + self.spacing[2] * np.arange(self.shape[0])

    def index(self, point: np.ndarray) -> tuple[int, int, int] | None:
        """Nearest voxel (z, y, x) of a physical point, or None outside the grid."""
        ijk = np.rint((np.asarray(point) - np.asarray(self.origin)) / np.asarray(self.spacing)).astype(int)
        x, y, z = (int(v) for v in ijk)
        if 0 <= z < self.shape[0] and 0 <= y < self.shape[1] and 0 <= x < self.shape[2]:
            return z, y, x
        return None

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) of the voxels whose centres lie in the physical box."""
        o, s = np.asarray(self.origin), np.asarray(self.spacing)
        i0 = np.maximum(np.ceil((np.asarray(lo) - o) / s).astype(int), 0)
        i1 = np.minimum(np.floor((np.asarray(hi) - o) / s).astype(int) + 1, self.shape[::-1])
        if np.any(i1 <= i0):
            return None
        return slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0])


@dataclass(frozen=True)
class _Anatomy:
    """Per-seed anatomical variation, independent of the voxel grid."""

    body_a: float
    body_b: float
    shift_x: float
    shift_y: float
    z_top_gap: float
    t_base: float
    t_apex: float
    lung_scale: float
    dome_right: float
    dome_left: float
    heart_dx: float
    heart_dy: float
    rib_phase: float
    vertebra_phase: float


@dataclass(frozen=True)
class _LungSide:
    label: int
    cx: float
    cy: float
    ax: float
    ay: float
    z_base: float
    z_apex: float
    dome: float

    def in_plane(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Squared normalised in-plane radius (1 on the lung's base ellipse)."""
        return ((x - self.cx) / self.ax) ** 2 + ((y - self.cy) / self.ay) ** 2

    def height(self, z: np.ndarray) -> np.ndarray:
        """0 at the base, 1 at the apex."""
        return (z - self.z_base) / (self.z_apex - self.z_base)

    def width2(self, z: np.ndarray) -> np.ndarray:
        """Squared relative width at height z: 1 at and below the base, tapering to 0 at the apex."""
        s = self.height(z)
        w2 = np.clip(1.0 - np.clip(s, 0.0, 1.0) ** 2.5, 0.0, 1.0)
        return np.where(s < 0, 1.0, w2)

    def diaphragm(self, u2: np.ndarray) -> np.ndarray:
        """z of the diaphragm dome under the lung (highest at the footprint centre)."""
        return self.z_base + self.dome * np.clip(1.0 - u2, 0.0, 1.0)


@dataclass
class _Layout:
    grid: _Grid
    anat: _Anatomy
    sides: tuple[_LungSide, _LungSide]
    z_carina: float
    heart_c: np.ndarray
    heart_r: np.ndarray
    aorta_asc: tuple[float, float]
    aorta_desc: tuple[float, float]
    z_arch: float


def _anatomy(seed: int) -> _Anatomy:
    rng = np.random.default_rng([seed, 1])
    u = rng.uniform
    return _Anatomy(
        body_a=BODY_SEMI_AXES_MM[0] + u(-4, 4),
        body_b=BODY_SEMI_AXES_MM[1] + u(-4, 4),
        shift_x=round(u(-6, 6) * 2) / 2,
        shift_y=round(u(-12, 12) * 2) / 2,
        z_top_gap=round(u(20, 80) * 2) / 2,
        t_base=u(0.06, 0.10),
        t_apex=u(0.80, 0.84),
        lung_scale=u(0.95, 1.05),
        dome_right=u(0.19, 0.23),
        dome_left=u(0.14, 0.18),
        heart_dx=u(-5, 5),
        heart_dy=u(-5, 5),
        rib_phase=u(0, 2 * np.pi),
        vertebra_phase=u(0, VERTEBRA_PERIOD_MM),
    )


def _layout(spec: PhantomSpec) -> _Layout:
    anat = _anatomy(spec.seed)
    m, s, n, dz = spec.matrix, spec.pixel_spacing_mm, spec.n_slices, spec.slice_spacing_mm
    x0 = round(anat.shift_x - (m - 1) / 2 * s, 3)
    y0 = round(anat.shift_y - (m - 1) / 2 * s, 3)
    z0 = round(-anat.z_top_gap - (n - 1) * dz, 3)
    grid = _Grid((n, m, m), (x0, y0, z0), (float(s), float(s), float(dz)))
    zmin, zmax = grid.zs[0], grid.zs[-1]
    z_base = zmin + anat.t_base * (zmax - zmin)
    z_apex = zmin + anat.t_apex * (zmax - zmin)
    height = z_apex - z_base
    sc = anat.lung_scale
    right = _LungSide(LABEL_RIGHT_LUNG, -78.0, 8.0, 64.0 * sc, 90.0 * sc, z_base, z_apex, anat.dome_right * height)
    left = _LungSide(LABEL_LEFT_LUNG, 80.0, 8.0, 60.0 * sc, 88.0 * sc, z_base, z_apex, anat.dome_left * height)
    heart_c = np.array([20.0 + anat.heart_dx, -22.0 + anat.heart_dy, z_base + 0.2 * height])
    heart_r = np.array([62.0, 50.0, 0.22 * height])
    z_carina = z_base + CARINA_HEIGHT * height
    return _Layout(grid, anat, (right, left), z_carina, heart_c, heart_r,
                   aorta_asc=(8.0, -15.0), aorta_desc=(24.0, 52.0), z_arch=z_carina + 20.0)


def _segment_distance(
    grid: _Grid, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, margin: float
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Signed distance (mm) to a tapered capsule from p0 (radius r0) to p1 (radius r1).

    Computed only in the bounding box grown by ``margin``; None if that box is empty.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    pad = max(r0, r1) + margin
    box = grid.box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad)
    if box is None:
        return None
    sz, sy, sx = box
    dx = (grid.xs[sx] - p0[0])[None, None, :]
    dy = (grid.ys[sy] - p0[1])[None, :, None]
    dzz = (grid.zs[sz] - p0[2])[:, None, None]
    v = p1 - p0
    vv = float(v @ v)
    if vv > 0:
        t = np.clip((dx * v[0] + dy * v[1] + dzz * v[2]) / vv, 0.0, 1.0)
    else:
        t = np.zeros((1, 1, 1))
    dist = np.sqrt((dx - t * v[0]) ** 2 + (dy - t * v[1]) ** 2 + (dzz - t * v[2]) ** 2)
    return box, dist - (r0 + (r1 - r0) * t)


def _ellipsoid(
    grid: _Grid, centre: np.ndarray, semi: np.ndarray
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Bool ellipsoid inside its bounding box."""
    box = grid.box(centre - semi, centre + semi)
    if box is None:
        return None
    sz, sy, sx = box
    q = (((grid.xs[sx] - centre[0]) / semi[0]) ** 2)[None, None, :] \
        + (((grid.ys[sy] - centre[1]) / semi[1]) ** 2)[None, :, None] \
        + (((grid.zs[sz] - centre[2]) / semi[2]) ** 2)[:, None, None]
    return box, q <= 1.0


def _paint(volume: np.ndarray, result, value, where: np.ndarray | None = None) -> None:
    """Set ``value`` inside a (box, mask) result, optionally only where ``where`` holds."""
    if result is None:
        return
    box, mask = result
    if where is not None:
        mask = mask & where[box]
    volume[box][mask] = value


def _capsule_mask(grid: _Grid, p0, p1, r0: float, r1: float) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    res = _segment_distance(grid, p0, p1, r0, r1, 0.0)
    return None if res is None else (res[0], res[1] <= 0.0)


def _lesion_count(target_score: float, n_lung: int) -> int:
    """round(target/100 * n_lung), halves rounded up."""
    return int(np.floor(target_score / 100.0 * n_lung + 0.5))


# ========================================================================================
# Phantom construction
# ========================================================================================


def _keepout(lay: _Layout) -> np.ndarray:
    """Where lung may not be: mediastinal column, heart, aorta, spine (with margins)."""
    g = lay.grid
    nz, ny, nx = g.shape
    xs, ys, zs = g.xs, g.ys, g.zs
    m = KEEPOUT_MARGIN_MM
    out = np.zeros(g.shape, bool)
    column = np.abs(xs - MEDIASTINUM_X_MM) < MEDIASTINUM_HALF_WIDTH_MM
    out[:, :, column] = True
    spine_y = lay.anat.body_b - CHEST_WALL_MM[1] - 33.0
    spine2d = (xs[None, :] ** 2 + (ys[:, None] - spine_y) ** 2) < (SPINE_RADIUS_MM + m) ** 2
    out |= spine2d[None]
    _paint(out, _ellipsoid(g, lay.heart_c, lay.heart_r + 2 * m), True)
    for (ax, ay), z_lo, z_hi in _aorta_tubes(lay):
        _paint(out, _capsule_mask(g, (ax, ay, z_lo), (ax, ay, z_hi), AORTA_RADIUS_MM + m, AORTA_RADIUS_MM + m), True)
    a0, a1 = lay.aorta_asc, lay.aorta_desc
    _paint(out, _capsule_mask(g, (*a0, lay.z_arch), (*a1, lay.z_arch), AORTA_RADIUS_MM + m, AORTA_RADIUS_MM + m),
           True)
    return out


def _aorta_tubes(lay: _Layout) -> list[tuple[tuple[float, float], float, float]]:
    z_lo = lay.grid.zs[0] - 10.0
    heart_top = lay.heart_c[2] + 0.5 * lay.heart_r[2]
    return [(lay.aorta_asc, heart_top, lay.z_arch), (lay.aorta_desc, z_lo, lay.z_arch)]


def _airways(lay: _Layout) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Trachea and main bronchi as capsules (p0, p1, r0, r1) of the lumen."""
    tx, ty = TRACHEA_XY_MM
    carina = np.array([tx, ty, lay.z_carina])
    top = np.array([tx, ty, lay.grid.zs[-1] + 20.0])
    out = [(carina, top, TRACHEA_RADIUS_MM, TRACHEA_RADIUS_MM)]
    for label in (LABEL_RIGHT_LUNG, LABEL_LEFT_LUNG):
        end = carina + np.array(BRONCHUS_END_MM[label])
        r0, r1 = BRONCHUS_RADII_MM[label]
        out.append((carina, end, r0, r1))
    return out


def _lungs(lay: _Layout) -> np.ndarray:
    """uint8 lung labels: ellipsoidal lungs with domed bases and tapering apexes, clipped
    to the thoracic cavity, kept out of the mediastinum, airways carved out."""
    g = lay.grid
    xs, ys, zs = g.xs, g.ys, g.zs
    a_c = lay.anat.body_a - CHEST_WALL_MM[0] - PLEURA_MM
    b_c = lay.anat.body_b - CHEST_WALL_MM[1] - PLEURA_MM
    cavity_inner = (xs[None, :] / a_c) ** 2 + (ys[:, None] / b_c) ** 2 < 1.0
    keep = ~_keepout(lay)
    labels = np.zeros(g.shape, np.uint8)
    for side in lay.sides:
        u2 = side.in_plane(xs[None, :], ys[:, None])
        w2 = side.width2(zs)
        mask = (u2[None] < w2[:, None, None]) & (zs[:, None, None] >= side.diaphragm(u2)[None])
        mask &= cavity_inner[None] & keep & (labels == 0)
        labels[mask] = side.label
    for p0, p1, r0, r1 in _airways(lay):
        _paint(labels, _capsule_mask(g, p0, p1, r0 + AIRWAY_WALL_MM, r1 + AIRWAY_WALL_MM), 0)
    # Keep one connected piece per lung (thin slivers cut off by the keep-outs go).
    for side in lay.sides:
        comp, n = ndimage.label(labels == side.label)
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:]
            labels[(comp > 0) & (comp != 1 + int(np.argmax(sizes)))] = 0
    return labels


def _body_and_bones(lay: _Layout, hu: np.ndarray) -> np.ndarray:
    """Paint table, body wall, cavity contents, mediastinum, heart, aorta, bones, the gas below the
    diaphragm and the neck.

    Returns:
        The (z, y, x) mask of body and table, for the noise.
    """
    g, anat = lay.grid, lay.anat
    xs, ys, zs = g.xs, g.ys, g.zs
    X, Y = xs[None, :], ys[:, None]
    a, b = anat.body_a, anat.body_b
    a_c, b_c = a - CHEST_WALL_MM[0], b - CHEST_WALL_MM[1]

    # Table: a curved plate under the body, concave toward the patient, never touching it.
    y_top = b + TABLE_GAP_MM - TABLE_CURVATURE_PER_MM * X ** 2
    table = (Y >= y_top) & (Y < y_top + TABLE_THICKNESS_MM) & (np.abs(X) <= TABLE_HALF_WIDTH_MM)
    body = (X / a) ** 2 + (Y / b) ** 2 <= 1.0
    muscle = (X / (a - FAT_THICKNESS_MM)) ** 2 + (Y / (b - FAT_THICKNESS_MM)) ** 2 <= 1.0
    cavity = (X / a_c) ** 2 + (Y / b_c) ** 2 <= 1.0
    cavity_inner = (X / (a_c - PLEURA_MM)) ** 2 + (Y / (b_c - PLEURA_MM)) ** 2 <= 1.0
    hu[:, table] = HU_TABLE
    hu[:, body] = HU_FAT
    hu[:, muscle] = HU_MUSCLE
    hu[:, cavity] = HU_SOFT_TISSUE

    # Diaphragm: below it, liver on the right, stomach/spleen soft tissue on the left.
    right, left = lay.sides
    on_right = X < MEDIASTINUM_X_MM
    z_dia = np.where(on_right, right.diaphragm(right.in_plane(X, Y)), left.diaphragm(left.in_plane(X, Y)))
    below = zs[:, None, None] < z_dia[None]
    abdomen_hu = np.where(on_right, HU_LIVER, HU_SOFT_TISSUE).astype(np.float32)
    hu[:] = np.where(below & cavity[None], abdomen_hu[None], hu)
    hu[(~below) & cavity_inner[None]] = HU_MEDIASTINAL_FAT

    # Heart (resting on the diaphragm), aorta, esophagus.
    above = ~below
    _paint(hu, _ellipsoid(g, lay.heart_c, lay.heart_r), HU_BLOOD, above)
    for (ax, ay), z_lo, z_hi in _aorta_tubes(lay):
        _paint(hu, _capsule_mask(g, (ax, ay, z_lo), (ax, ay, z_hi), AORTA_RADIUS_MM, AORTA_RADIUS_MM), HU_AORTA)
    _paint(hu, _capsule_mask(g, (*lay.aorta_asc, lay.z_arch), (*lay.aorta_desc, lay.z_arch),
                             AORTA_RADIUS_MM, AORTA_RADIUS_MM), HU_AORTA)
    esophagus = (X - ESOPHAGUS_XY_MM[0]) ** 2 + (Y - ESOPHAGUS_XY_MM[1]) ** 2 <= ESOPHAGUS_RADIUS_MM ** 2
    hu[:, esophagus] = np.where(above[:, esophagus], HU_MUSCLE, hu[:, esophagus])

    # Spine: vertebral body (cortex, cancellous core, discs), canal, arch, spinous process.
    spine_y = b_c - 33.0
    r2 = X ** 2 + (Y - spine_y) ** 2
    vb = r2 <= SPINE_RADIUS_MM ** 2
    core = r2 <= (SPINE_RADIUS_MM - SPINE_CORTEX_MM) ** 2
    disc = np.mod(zs - anat.vertebra_phase, VERTEBRA_PERIOD_MM) < DISC_MM
    hu[:, vb] = HU_CORTICAL_BONE
    hu[:, core] = HU_CANCELLOUS_BONE
    hu[disc[:, None, None] & vb[None]] = HU_DISC
    canal_y = spine_y + SPINE_RADIUS_MM + SPINAL_CANAL_RADIUS_MM + 1.0
    rc2 = X ** 2 + (Y - canal_y) ** 2
    arch = (rc2 <= (SPINAL_CANAL_RADIUS_MM + 6.0) ** 2) & (Y >= canal_y - 6.0)
    spinous = (X / 4.0) ** 2 + ((Y - canal_y - 18.0) / 6.0) ** 2 <= 1.0
    hu[:, arch | spinous] = HU_RIB
    hu[:, rc2 <= SPINAL_CANAL_RADIUS_MM ** 2] = HU_CSF
    _bowel_gas(lay, hu, below & cavity_inner[None])

    # Sternum: anterior midline, in the upper two thirds of the chest.
    st_y = -(b_c + 6.0)
    q = (X / 16.0) ** 2 + ((Y - st_y) / 6.0) ** 2
    height = right.z_apex - right.z_base
    z_st = (zs >= right.z_base + 0.25 * height) & (zs <= right.z_apex - 0.05 * height)
    sternum_hu = np.where(q <= 0.35, HU_CANCELLOUS_BONE, HU_CORTICAL_BONE)
    hu[z_st] = np.where((q <= 1.0)[None], sternum_hu[None], hu[z_st])

    # Ribs: separate ovals on a ring in the chest wall; the pattern turns slowly with z
    # (ribs slope down anteriorly). Computed on the ring's pixels only.
    ra, rb = a_c + 8.0, b_c + 8.0
    Xf, Yf = np.broadcast_arrays(X, Y)
    rho = np.sqrt((Xf / ra) ** 2 + (Yf / rb) ** 2)
    dist = np.sqrt(Xf ** 2 + Yf ** 2)
    radial = dist * (1.0 - 1.0 / np.maximum(rho, 1e-6))
    ring = np.abs(radial) < RIB_HALF_THICKNESS_MM + 1.0
    iy, ix = np.nonzero(ring)
    theta = np.arctan2(np.abs(Xf[iy, ix]), Yf[iy, ix])  # 0 posterior, pi anterior
    local_r = (dist / np.maximum(rho, 1e-6))[iy, ix]
    spacing = 1.0 / RIBS_PER_RADIAN
    phase = anat.rib_phase + zs * (spacing / 60.0)
    dtheta = np.mod(theta[None, :] - phase[:, None], spacing) - spacing / 2
    q = (dtheta * local_r[None, :] / RIB_HALF_LENGTH_MM) ** 2 + (radial[iy, ix][None, :] / RIB_HALF_THICKNESS_MM) ** 2
    allowed = (theta > np.radians(18)) & (theta < np.radians(145))
    rib = (q <= 1.0) & allowed[None, :]
    zi, k = np.nonzero(rib)
    hu[zi, iy[k], ix[k]] = np.where(q[zi, k] <= 0.3, HU_CANCELLOUS_BONE + 50, HU_RIB)
    objects = np.broadcast_to(body | table, hu.shape).copy()
    _neck(lay, hu, objects, table)
    return objects


def _bowel_gas(lay: _Layout, hu: np.ndarray, abdomen: np.ndarray) -> None:
    """Stomach and colon gas under the left dome of the diaphragm, DIAPHRAGM_MM below it."""
    g = lay.grid
    left = lay.sides[1]
    top = left.z_base + left.dome
    u2 = left.in_plane(g.xs[None, :], g.ys[:, None])
    under = g.zs[:, None, None] < (left.diaphragm(u2) - DIAPHRAGM_MM)[None]
    allowed = abdomen & under
    dx, dy, dz = STOMACH_OFFSET_MM
    centre = np.array([left.cx + dx, left.cy + dy, top + dz])
    res = _ellipsoid(g, centre, np.array(STOMACH_SEMI_AXES_MM))
    if res is not None:
        box, mask = res
        gas = mask & (g.ys[box[1]] < centre[1] + STOMACH_FLUID_LEVEL_MM)[None, :, None]
        _paint(hu, (box, gas), HU_AIR, allowed)
    for dx, dy, depth, radius in COLON_GAS_MM:
        centre = np.array([left.cx + dx, left.cy + dy, top - depth])
        _paint(hu, _ellipsoid(g, centre, np.full(3, radius)), HU_AIR, allowed)


def _neck(lay: _Layout, hu: np.ndarray, objects: np.ndarray, table: np.ndarray) -> None:
    """Above the lung apex: the neck, with the larynx and pharynx above the trachea."""
    g = lay.grid
    z_neck = max(side.z_apex for side in lay.sides) + NECK_START_MM
    neck_z = g.zs > z_neck
    if not neck_z.any():
        return
    X, Y = g.xs[None, :], g.ys[:, None]
    na, nb = NECK_SEMI_AXES_MM
    neck = (X / na) ** 2 + ((Y - NECK_CENTRE_Y_MM) / nb) ** 2 <= 1.0
    inner = (X / (na - NECK_FAT_MM)) ** 2 + ((Y - NECK_CENTRE_Y_MM) / (nb - NECK_FAT_MM)) ** 2 <= 1.0
    sx_, sy_ = CERVICAL_SPINE_XY_MM
    vert = (X - sx_) ** 2 + (Y - sy_) ** 2 <= CERVICAL_SPINE_RADIUS_MM ** 2
    canal = (X - sx_) ** 2 + (Y - sy_ - CERVICAL_SPINE_RADIUS_MM - 6.0) ** 2 <= 5.0 ** 2
    plane = np.full(neck.shape, HU_AIR, np.float32)
    plane[table] = HU_TABLE
    plane[neck] = HU_FAT
    plane[inner] = HU_MUSCLE
    plane[vert] = HU_CORTICAL_BONE
    plane[canal] = HU_CSF
    hu[neck_z] = plane
    objects[neck_z] = (neck | table)[None]


def _upper_airway(lay: _Layout, hu: np.ndarray) -> None:
    """The larynx around the trachea and the pharynx behind it, high in the neck (air)."""
    g = lay.grid
    upper = g.zs > max(side.z_apex for side in lay.sides) + NECK_START_MM + LARYNX_START_MM
    if not upper.any():
        return
    X, Y = g.xs[None, :], g.ys[:, None]
    tx, ty = TRACHEA_XY_MM
    la, lb = LARYNX_SEMI_AXES_MM
    px, py = PHARYNX_XY_MM
    pa, pb = PHARYNX_SEMI_AXES_MM
    air = (((X - tx) / la) ** 2 + ((Y - ty) / lb) ** 2 <= 1.0) | (((X - px) / pa) ** 2 + ((Y - py) / pb) ** 2 <= 1.0)
    hu[np.ix_(upper, np.ones(g.shape[1], bool), np.ones(g.shape[2], bool))] = np.where(
        air[None], np.float32(HU_AIR), hu[upper])


def _smooth_noise_at(rng: np.random.Generator, points: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     step: float, sigma: float) -> np.ndarray:
    """Smooth unit-variance noise defined on a physical lattice, sampled at ``points`` (n, 3) xyz."""
    shape = tuple(int(np.ceil((h - l) / step)) + 2 for l, h in zip(lo[::-1], hi[::-1]))  # z, y, x
    lattice = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    lattice /= max(float(lattice.std()), 1e-6)
    coords = ((points - lo) / step)[:, ::-1].T
    return ndimage.map_coordinates(lattice, coords, order=1, mode="nearest")


def _lesions(spec: PhantomSpec, lay: _Layout, labels: np.ndarray, lung_idx: tuple[np.ndarray, ...]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Choose exactly round(target% of the lung) lesion voxels and give them HU.

    Lesions are the lung voxels of highest priority, a smooth noise field plus a bias
    toward peripheral, posterior and basal lung: thresholding it gives smooth irregular
    blobs, and the threshold falls exactly at the requested count (the last blob is
    trimmed). The deeper inside a lesion (higher above the threshold), the denser: a
    ground-glass rim and, for the top fraction, consolidation.

    Returns:
        Per lung voxel: lesion kind (0, LESION_GGO, LESION_CONSOLIDATION) and lesion HU.
    """
    g = lay.grid
    zi, yi, xi = lung_idx
    n_lung = zi.size
    n_les = _lesion_count(spec.target_score, n_lung)
    kind = np.zeros(n_lung, np.uint8)
    les_hu = np.zeros(n_lung, np.float32)
    if n_les == 0:
        return kind, les_hu
    rng = np.random.default_rng([spec.seed, 3])
    X, Y, Z = g.xs[xi], g.ys[yi], g.zs[zi]
    points = np.column_stack([X, Y, Z])
    lo = np.array([-220.0, -220.0, g.zs[0] - 20.0])
    hi = np.array([220.0, 220.0, g.zs[-1] + 20.0])
    priority = np.zeros(n_lung, np.float64)
    for step, sigma, weight in LESION_NOISE_OCTAVES:
        priority += weight * _smooth_noise_at(rng, points, lo, hi, step, sigma)
    lab = labels[zi, yi, xi]
    for side in lay.sides:
        sel = lab == side.label
        u2 = side.in_plane(X[sel], Y[sel])
        periph = np.sqrt(u2 / np.maximum(side.width2(Z[sel]), 1e-6))
        posterior = (Y[sel] - side.cy) / side.ay
        basal = 1.0 - np.clip(side.height(Z[sel]), 0.0, 1.0)
        priority[sel] += 1.2 * np.clip(periph, 0.0, 1.0) + 0.5 * posterior + 0.3 * basal
    order = np.argsort(-priority, kind="stable")
    chosen = order[:n_les]
    depth = priority[chosen] - priority[order[n_les - 1]]
    cons_fraction = 0.1 + 0.3 * spec.target_score / 100.0
    d_c = max(float(np.quantile(depth, 1.0 - cons_fraction)), 1e-6)
    d_max = max(float(depth.max()), d_c + 1e-6)
    is_cons = depth > d_c
    ggo = np.clip(depth / d_c, 0.0, 1.0) ** 0.8
    cons = np.clip((depth - d_c) / (d_max - d_c), 0.0, 1.0) ** 0.5
    kind[chosen] = np.where(is_cons, LESION_CONSOLIDATION, LESION_GGO)
    les_hu[chosen] = np.where(is_cons,
                              HU_CONSOLIDATION[0] + (HU_CONSOLIDATION[1] - HU_CONSOLIDATION[0]) * cons,
                              HU_GGO[0] + (HU_GGO[1] - HU_GGO[0]) * ggo)
    return kind, les_hu


def _random_unit_perpendicular(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    v = rng.standard_normal(3)
    v -= (v @ d) * d
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _hila(lay: _Layout) -> dict[int, np.ndarray]:
    """Where each lung's vessel tree starts (beside the main bronchus' end)."""
    return {LABEL_RIGHT_LUNG: np.array([-24.0, 2.0, lay.z_carina - 26.0]),
            LABEL_LEFT_LUNG: np.array([34.0, 4.0, lay.z_carina - 36.0])}


def _vessel_tree(
    spec: PhantomSpec, lay: _Layout, labels: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Branching vessel segments (p0, p1, r0, r1) grown from each hilum, kept inside the lung."""
    rng = np.random.default_rng([spec.seed, 2])
    g = lay.grid
    segments = []
    hila = _hila(lay)

    def inside(p: np.ndarray, label: int) -> bool:
        idx = g.index(p)
        return idx is not None and labels[idx] == label

    for label, hilum in hila.items():
        mirror = np.array([1.0 if label == LABEL_RIGHT_LUNG else -1.0, 1.0, 1.0])
        stack = []
        for d in VESSEL_TRUNKS:
            d = np.array(d) * mirror + 0.1 * rng.standard_normal(3)
            stack.append((hilum, d / np.linalg.norm(d), VESSEL_ROOT_LENGTH_MM, VESSEL_ROOT_RADIUS_MM, 0))
        while stack:
            p0, d, length, radius, depth = stack.pop()
            p1 = None
            for frac in (1.0, 0.6):
                cand = p0 + d * length * frac
                if inside(cand, label) and (depth == 0 or inside((p0 + cand) / 2, label)):
                    p1 = cand
                    break
            if p1 is None:
                continue
            segments.append((p0, p1, radius, radius * 0.85))
            child_r = radius * VESSEL_RADIUS_RATIO
            if depth >= VESSEL_MAX_DEPTH or child_r < VESSEL_MIN_RADIUS_MM:
                continue
            perp = _random_unit_perpendicular(rng, d)
            for sign in (1.0, -1.0):
                nd = d + sign * rng.uniform(0.45, 0.8) * perp + 0.15 * rng.standard_normal(3)
                nd /= np.linalg.norm(nd)
                stack.append((p1, nd, length * rng.uniform(*VESSEL_LENGTH_RATIO), child_r, depth + 1))
    return segments


def make_phantom(spec: PhantomSpec) -> Phantom:
    """Build the synthetic chest CT of one patient (deterministic per ``spec``).

    Args:
        spec: The patient's specification.

    Returns:
        The phantom: HU volume, lung labels, lesion mask and geometry, on the canonical
        LPS grid (z index 0 most inferior, x toward the patient's left).
    """
    started = time.perf_counter()
    lay = _layout(spec)
    g = lay.grid
    hu = np.full(g.shape, HU_AIR, np.float32)
    objects = _body_and_bones(lay, hu)
    labels = _lungs(lay)
    lung = labels > 0
    lung_idx = np.nonzero(lung)

    # Lung parenchyma with a gravity gradient, then lesions, then vessels over both.
    zi, yi, xi = lung_idx
    lab = labels[lung_idx]
    cy = np.where(lab == LABEL_RIGHT_LUNG, lay.sides[0].cy, lay.sides[1].cy)
    ay = np.where(lab == LABEL_RIGHT_LUNG, lay.sides[0].ay, lay.sides[1].ay)
    lung_hu = HU_LUNG + 0.5 * HU_LUNG_AP_GRADIENT * np.clip((g.ys[yi] - cy) / ay, -1.0, 1.0)
    kind_at, les_hu = _lesions(spec, lay, labels, lung_idx)
    lung_hu = np.where(kind_at > 0, les_hu, lung_hu).astype(np.float32)
    hu[lung_idx] = lung_hu

    voxel = min(g.spacing[0], g.spacing[1])
    alpha = np.zeros(g.shape, np.float32)
    for p0, p1, r0, r1 in _vessel_tree(spec, lay, labels):
        res = _segment_distance(g, p0, p1, r0, r1, voxel)
        if res is not None:
            box, sd = res
            np.maximum(alpha[box], np.clip(0.5 - sd / voxel, 0.0, 1.0), out=alpha[box])
    a = alpha[lung_idx]
    hu[lung_idx] = hu[lung_idx] * (1.0 - a) + HU_BLOOD * a
    # Pulmonary artery roots: mediastinum to each hilum (outside the lung only).
    trunk = np.array([18.0, -28.0, lay.z_carina - 35.0])
    for end in _hila(lay).values():
        res = _capsule_mask(g, trunk, end, 9.0, 7.0)
        if res is not None:
            box, mask = res
            mask &= ~lung[box] & (hu[box] < 0)
            hu[box][mask] = HU_BLOOD

    # Airways: wall then lumen (never lung).
    for p0, p1, r0, r1 in _airways(lay):
        _paint(hu, _capsule_mask(g, p0, p1, r0 + AIRWAY_WALL_MM, r1 + AIRWAY_WALL_MM), HU_MUSCLE)
    for p0, p1, r0, r1 in _airways(lay):
        _paint(hu, _capsule_mask(g, p0, p1, r0, r1), HU_AIR)
    _upper_airway(lay, hu)

    # Noise inside the body and table; air outside stays exact.
    rng = np.random.default_rng([spec.seed, 4])
    noise = rng.standard_normal(g.shape, dtype=np.float32)
    hu += np.where(objects, noise * np.float32(NOISE_SIGMA_HU), np.float32(0))
    if spec.padding is not None:
        hu[:, ~_fov_disc(spec)] = HU_AIR
    hu_i = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)

    lesion_kind = np.zeros(g.shape, np.uint8)
    lesion_kind[lung_idx] = kind_at
    lesion_mask = (lesion_kind > 0).astype(np.uint8)
    n_lung = int(lung.sum())
    score = 100.0 * float(lesion_mask.sum()) / n_lung if n_lung else 0.0
    log.info("phantom %s: %s voxels, lung %d voxels, score %.3f (target %.1f) in %.2f s", spec.patient_id,
             "x".join(map(str, g.shape)), n_lung, score, spec.target_score, time.perf_counter() - started)
    return Phantom(hu=hu_i, lung_labels=labels, lesion_mask=lesion_mask, spacing=g.spacing, origin=g.origin,
                   score=score, lesion_kind=lesion_kind)


def _fov_disc(spec: PhantomSpec) -> np.ndarray:
    """(y, x) bool: pixels inside the circular reconstruction field of view."""
    c = (spec.matrix - 1) / 2.0
    i = np.arange(spec.matrix) - c
    return i[:, None] ** 2 + i[None, :] ** 2 <= (spec.matrix / 2.0) ** 2


def true_score(spec: PhantomSpec) -> float:
    """The score ``make_phantom(spec).score`` will have, from the lung labels alone.

    Args:
        spec: The patient's specification.

    Returns:
        Percent of lung voxels that are lesion.
    """
    if spec.target_score == 0:
        return 0.0
    n_lung = int(np.count_nonzero(_lungs(_layout(spec))))
    return 100.0 * _lesion_count(spec.target_score, n_lung) / n_lung if n_lung else 0.0


# ========================================================================================
# Fake identifiers
# ========================================================================================

_SURNAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Kowalczyk", "Haddad", "Fitzgerald", "Nakamura",
             "Oyelaran", "Petrovic", "Delacroix", "Brennan", "Castellanos", "Eriksen", "Van Dijk", "Achterberg",
             "Mensah", "Rossi", "Sokolova", "Quintero", "Abernathy", "Yilmaz", "Whitcombe", "Dubois",
             "Kaczmarek", "Ferreira", "Nguyen", "Holloway", "Marchetti", "Adeyemi")
_GIVEN_F = ("Amara", "Ingrid", "Sofia", "Yuki", "Agnieszka", "Leila", "Maeve", "Camila", "Freya", "Nadia",
            "Chiara", "Ebele", "Margot", "Hana", "Rosalind")
_GIVEN_M = ("Tobias", "Kwame", "Henrik", "Mateo", "Rashid", "Dmitri", "Liam", "Kenji", "Oskar", "Emeka",
            "Julien", "Tomasz", "Arjun", "Bram", "Callum")
_INSTITUTIONS = (
    ("St. Brigid Regional Hospital", "1200 Larkspur Avenue, Millbrook, OH 43001", "SBRH"),
    ("Harbourview University Medical Centre", "45 Quayside Road, Port Ellery, ME 04112", "HUMC"),
    ("Mount Calder General Hospital", "88 Calder Ridge Drive, Ashford Falls, CO 80921", "MCGH"),
    ("Riverside Lutheran Clinic", "3 Old Mill Lane, Westbury-on-Severn, GL9 4QT", "RLC"),
)
_STUDY_DESCRIPTIONS = ("CT CHEST WITHOUT CONTRAST", "CT THORAX LOW DOSE", "CT CHEST HRCT COVID PROTOCOL")
_SERIES_DESCRIPTIONS = ("AXIAL LUNG 5MM", "Thorax 5.0 Br60 lung", "CHEST AXIAL STANDARD")
_MANUFACTURERS = (("SIEMENS", "SOMATOM Definition AS", "B60f"), ("GE MEDICAL SYSTEMS", "LightSpeed VCT", "LUNG"),
                  ("TOSHIBA", "Aquilion ONE", "FC52"), ("Philips", "Ingenuity CT", "YB"))

#: Identity keys that are top-level DICOM keywords of the same name.
IDENTITY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime",
    "AccessionNumber", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "StationName", "StudyID", "StudyDescription",
    "SeriesDescription", "DeviceSerialNumber",
)
#: Identity keys that are UIDs.
IDENTITY_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def _person(rng: np.random.Generator, initial: bool = False) -> tuple[str, str]:
    sex = "F" if rng.random() < 0.5 else "M"
    given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
    name = f"{rng.choice(_SURNAMES)}^{given}"
    if initial:
        name += "^" + "ABCDEFGHJKLMNPRSTW"[int(rng.integers(18))]
    return name, sex


def fake_identity(seed: int) -> dict[str, str]:
    """Realistic but FAKE identifiers for one synthetic patient, deterministic per seed.

    Args:
        seed: The patient's seed.

    Returns:
        DICOM keyword -> value (strings) for every key of IDENTITY_KEYWORDS and IDENTITY_UIDS.
    """
    rng = np.random.default_rng([abs(int(seed)), 5])
    name, sex = _person(rng, initial=True)
    institution, address, short = _INSTITUTIONS[int(rng.integers(len(_INSTITUTIONS)))]
    study_day = date(2020, 3, 1) + timedelta(days=int(rng.integers(0, 660)))
    age = int(rng.integers(24, 88))
    birth = study_day - timedelta(days=int(age * 365.25 + rng.integers(1, 360)))
    age = study_day.year - birth.year - ((study_day.month, study_day.day) < (birth.month, birth.day))
    start = datetime.combine(study_day, datetime.min.time()) + timedelta(seconds=int(rng.integers(7 * 3600, 22 * 3600)))

    def hhmmss(delta_s: int) -> str:
        return (start + timedelta(seconds=delta_s)).strftime("%H%M%S")

    uid_base = f"{UID_ROOT}{int(rng.integers(10**11, 10**12))}"
    day = study_day.strftime("%Y%m%d")
    return {
        "PatientName": name,
        "PatientID": f"MRN{int(rng.integers(10**6, 10**7))}",
        "IssuerOfPatientID": f"{short} MRN",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "PatientSex": sex,
        "PatientAge": f"{age:03d}Y",
        "StudyDate": day,
        "SeriesDate": day,
        "AcquisitionDate": day,
        "ContentDate": day,
        "StudyTime": hhmmss(0),
        "SeriesTime": hhmmss(95),
        "AcquisitionTime": hhmmss(131),
        "ContentTime": hhmmss(142),
        "AccessionNumber": f"{short[:2]}{int(rng.integers(10**8, 10**9))}",
        "InstitutionName": institution,
        "InstitutionAddress": address,
        "ReferringPhysicianName": _person(rng)[0],
        "PerformingPhysicianName": _person(rng)[0],
        "OperatorsName": _person(rng)[0],
        "StationName": f"CT{short}{int(rng.integers(1, 20)):02d}",
        "StudyID": str(int(rng.integers(10**4, 10**6))),
        "StudyDescription": str(rng.choice(_STUDY_DESCRIPTIONS)),
        "SeriesDescription": str(rng.choice(_SERIES_DESCRIPTIONS)),
        "DeviceSerialNumber": str(int(rng.integers(10**5, 10**7))),
        "StudyInstanceUID": f"{uid_base}.1{int(rng.integers(10**7, 10**8))}",
        "SeriesInstanceUID": f"{uid_base}.2{int(rng.integers(10**7, 10**8))}",
        "FrameOfReferenceUID": f"{uid_base}.3{int(rng.integers(10**7, 10**8))}",
    }


def localizer_series_uid(series_uid: str) -> str:
    """SeriesInstanceUID of the localizer series that goes with an axial series."""
    return f"{series_uid}.0"


def inject_identifiers(ds: pydicom.Dataset, identity: dict[str, str], uids: bool = True) -> None:
    """Write every identity value into a dataset (in place), in all the places PHI hides.

    Top-level attributes, OtherPatientIDsSequence (PatientID and issuer),
    RequestAttributesSequence (accession as requested procedure and step ID), and a
    private block (creator ``ACME_CT 1.0`` in group 0009: LO patient name, LO MRN and an
    OB element holding the MRN bytes). Keys missing from ``identity`` are skipped.

    Args:
        ds: Any dataset, e.g. a copy of a real DICOM file to dirty up for a test.
        identity: As from ``fake_identity``.
        uids: Also set StudyInstanceUID, FrameOfReferenceUID and SeriesInstanceUID (a
            LOCALIZER image gets ``localizer_series_uid`` of the series UID). Turn off to
            keep a multi-series folder's series apart.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    for key in IDENTITY_KEYWORDS:
        if key in identity:
            setattr(ds, key, identity[key])
    if uids:
        for key in ("StudyInstanceUID", "FrameOfReferenceUID"):
            if key in identity:
                setattr(ds, key, identity[key])
        if "SeriesInstanceUID" in identity:
            image_type = [str(v).upper() for v in ds.get("ImageType", [])]
            series = identity["SeriesInstanceUID"]
            ds.SeriesInstanceUID = localizer_series_uid(series) if "LOCALIZER" in image_type else series
    mrn = identity.get("PatientID")
    if mrn:
        other = Dataset()
        other.PatientID = mrn
        other.IssuerOfPatientID = identity.get("IssuerOfPatientID", "MRN")
        other.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence = Sequence([other])
    accession = identity.get("AccessionNumber")
    if accession:
        request = Dataset()
        request.AccessionNumber = accession
        request.RequestedProcedureID = accession
        request.ScheduledProcedureStepID = accession
        if "StudyDescription" in identity:
            request.RequestedProcedureDescription = identity["StudyDescription"]
        ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    if "PatientName" in identity:
        block.add_new(0x01, "LO", identity["PatientName"])
    if mrn:
        block.add_new(0x02, "LO", mrn)
        raw = mrn.encode("ascii")
        block.add_new(0x03, "OB", raw + b"\0" * (len(raw) % 2))


# ========================================================================================
# Writers
# ========================================================================================


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) with up to 4 decimals."""
    text = f"{round(float(value), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _stored_values(hu: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """HU -> stored pixel values (exact: 1/slope and the intercept are integers)."""
    stored = np.rint((hu.astype(np.float64) - spec.intercept) / spec.rescale_slope)
    dtype = np.uint16 if spec.unsigned else np.int16
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"{spec.patient_id}: HU range does not fit {dtype.__name__} with this rescale")
    return stored.astype(dtype)


def _file_meta(sop_uid: str):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _common_dataset(spec: PhantomSpec, identity: dict[str, str], image_type: list[str]):
    from pydicom.dataset import Dataset

    rng = np.random.default_rng([spec.seed, 7])
    manufacturer, model, kernel = _MANUFACTURERS[int(rng.integers(len(_MANUFACTURERS)))]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = image_type
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.ConvolutionKernel = kernel
    ds.KVP = "120"
    ds.XRayTubeCurrent = str(int(rng.integers(80, 300)))
    ds.BodyPartExamined = "CHEST"
    # A row cosine of (-1, 0, 0) is what a feet-first supine acquisition gives.
    ds.PatientPosition = "FFS" if spec.flip_x else "HFS"
    ds.PositionReferenceIndicator = ""
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    inject_identifiers(ds, identity)
    return ds


def _write_localizer(phantom: Phantom, spec: PhantomSpec, out_dir: Path, identity: dict[str, str],
                     name: str) -> Path:
    """One coronal LOCALIZER image: the mean attenuation through the patient, 128 x 128."""
    ds = _common_dataset(spec, identity, ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    nz, ny, nx = phantom.hu.shape
    sx, sy, sz = phantom.spacing
    x0, y0, z0 = phantom.origin
    projection = phantom.hu.astype(np.float32).mean(axis=1)  # (z, x)
    n = LOCALIZER_SIZE
    col_spacing = nx * sx / n
    row_spacing = nz * sz / n
    x_first = x0 - sx / 2 + col_spacing / 2
    z_first = z0 + (nz - 0.5) * sz - row_spacing / 2  # row 0 is the most superior
    cols = (x_first + col_spacing * np.arange(n) - x0) / sx
    rows = (z_first - row_spacing * np.arange(n) - z0) / sz
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    image = ndimage.map_coordinates(projection, [rr, cc], order=1, mode="nearest")
    pixels = np.clip((image - HU_AIR) * 3.0, 0, 4095).astype(np.uint16)
    ds.SeriesDescription = "SCOUT AP"
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    ds.SOPInstanceUID = f"{localizer_series_uid(identity['SeriesInstanceUID'])}.1"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    ds.ImagePositionPatient = [_ds(x_first), _ds(y0 + (ny - 1) / 2 * sy), _ds(z_first)]
    ds.PixelSpacing = [_ds(row_spacing), _ds(col_spacing)]
    ds.Rows = n
    ds.Columns = n
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "2000"
    ds.WindowWidth = "4000"
    ds.PixelData = pixels.tobytes()
    ds.file_meta = _file_meta(ds.SOPInstanceUID)
    path = out_dir / name
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(phantom: Phantom, spec: PhantomSpec, out_dir: Path, identity: dict[str, str]) -> list[Path]:
    """Write the phantom as a CT series, one file per slice (plus the localizer, if asked).

    File names are random (``IM<4 digits>.dcm``), never in position order. With
    ``flip_x`` the row cosine is (-1, 0, 0) and each slice's pixels are mirrored, its
    ImagePositionPatient being that of the patient's leftmost column.

    Args:
        phantom: From ``make_phantom(spec)``.
        spec: The specification (acquisition variants).
        out_dir: Folder to write into (created if needed).
        identity: Fake identifiers, as from ``fake_identity``.

    Returns:
        The written files (axial slices first, in z order, then the localizer).

    Raises:
        ValueError: the padding value is also a real stored value in the field of view.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = phantom.hu.shape
    sx, sy, sz = phantom.spacing
    x0, y0, z0 = phantom.origin
    stored = _stored_values(phantom.hu, spec)
    if spec.padding is not None:
        fov = _fov_disc(spec)
        if np.any(stored[:, fov] == spec.padding):
            raise ValueError(f"{spec.patient_id}: padding value {spec.padding} occurs as a real pixel value")
        stored[:, ~fov] = spec.padding
    if spec.flip_x:
        stored = stored[:, :, ::-1]
    signed = not spec.unsigned
    bits_stored = 12 if (spec.unsigned and int(stored.max()) < 4096) else 16

    ds = _common_dataset(spec, identity, ["ORIGINAL", "PRIMARY", "AXIAL"])
    ds.SeriesNumber = "2"
    ds.AcquisitionNumber = "1"
    ds.SliceThickness = _ds(sz)
    ds.SpacingBetweenSlices = _ds(sz)
    ds.ReconstructionDiameter = _ds(nx * sx)
    ds.ImageOrientationPatient = ["-1" if spec.flip_x else "1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept = _ds(spec.intercept)
    ds.RescaleSlope = _ds(spec.rescale_slope)
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    if spec.padding is not None:
        ds.add_new(0x00280120, "SS" if signed else "US", int(spec.padding))  # PixelPaddingValue
    x_first = x0 + (nx - 1) * sx if spec.flip_x else x0

    rng = np.random.default_rng([spec.seed, 6])
    names = [f"IM{n:04d}.dcm" for n in rng.choice(np.arange(1000, 10000), size=nz + 1, replace=False)]
    series_uid = identity["SeriesInstanceUID"]
    paths = []
    for k in range(nz):
        instance = nz - k if spec.descending else k + 1
        z = z0 + k * sz
        ds.InstanceNumber = str(instance)
        ds.SOPInstanceUID = f"{series_uid}.{instance}"
        ds.ImagePositionPatient = [_ds(x_first), _ds(y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2" if signed else "<u2").tobytes()
        ds.file_meta = _file_meta(ds.SOPInstanceUID)
        path = out_dir / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    if spec.localizer:
        paths.append(_write_localizer(phantom, spec, out_dir, identity, names[nz]))
    return paths


def _label_image(array: np.ndarray, phantom: Phantom) -> SimpleITK.Image:
    """A SimpleITK image of a canonical array: identity direction, the phantom's geometry."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(v) for v in phantom.spacing))
    image.SetOrigin(tuple(float(v) for v in phantom.origin))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def write_patient(spec: PhantomSpec, dicom_dir: Path, truth_dir: Path) -> dict:
    """Generate one patient: its DICOM folder (atomic) and its truth files.

    Truth files: ``<pid>.json``, ``<pid>_lung.nii.gz`` (labels 1 right, 2 left) and
    ``<pid>_lesion.nii.gz``, the masks in the same physical space as the DICOM series.

    Args:
        spec: The patient.
        dicom_dir: The patient's DICOM folder (replaced if present).
        truth_dir: Folder for the truth files.

    Returns:
        The truth dict written to ``<pid>.json``.
    """
    started = time.perf_counter()
    phantom = make_phantom(spec)
    identity = fake_identity(spec.seed)
    with atomic_dir(dicom_dir) as tmp:
        files = write_series(phantom, spec, tmp, identity)
    truth_dir = Path(truth_dir)
    pid = spec.patient_id
    voxel_ml = float(np.prod(phantom.spacing)) / 1000.0
    labels = phantom.lung_labels
    kind = phantom.lesion_kind if phantom.lesion_kind is not None else phantom.lesion_mask
    truth = {
        "patient_id": pid,
        "label": int(spec.covid),
        "score": round(phantom.score, 6),
        "target_score": spec.target_score,
        "lung_volume_ml": round(float(np.count_nonzero(labels)) * voxel_ml, 3),
        "right_lung_volume_ml": round(float(np.count_nonzero(labels == LABEL_RIGHT_LUNG)) * voxel_ml, 3),
        "left_lung_volume_ml": round(float(np.count_nonzero(labels == LABEL_LEFT_LUNG)) * voxel_ml, 3),
        "lesion_volume_ml": round(float(np.count_nonzero(phantom.lesion_mask)) * voxel_ml, 3),
        "ggo_volume_ml": round(float(np.count_nonzero(kind == LESION_GGO)) * voxel_ml, 3),
        "consolidation_volume_ml": round(float(np.count_nonzero(kind == LESION_CONSOLIDATION)) * voxel_ml, 3),
        "n_slices": spec.n_slices,
        "matrix": spec.matrix,
        "spacing": list(phantom.spacing),
        "origin": list(phantom.origin),
        "flip_x": spec.flip_x,
        "descending": spec.descending,
        "unsigned": spec.unsigned,
        "padding": spec.padding,
        "localizer": spec.localizer,
        "rescale_slope": spec.rescale_slope,
        "rescale_intercept": spec.intercept,
        "n_files": len(files),
        "identity": identity,
    }
    write_volume(truth_dir / f"{pid}_lung.nii.gz", _label_image(labels, phantom))
    write_volume(truth_dir / f"{pid}_lesion.nii.gz", _label_image(phantom.lesion_mask, phantom))
    write_json(truth_dir / f"{pid}.json", truth)
    log.info("patient %s: %d DICOM files and truth written in %.2f s", pid, len(files), time.perf_counter() - started)
    return truth


SHEET_COLUMNS = ("patient_id", "dicom_dir", "label", "score", "split")


def sheet_rows(specs: Iterable[PhantomSpec], dicom_root: str,
               scores: Mapping[str, float] | None = None, splits: Mapping[str, str] | None = None) -> list[dict]:
    """Rows of the patient sheet for a synthetic cohort.

    Args:
        specs: The patients.
        dicom_root: Folder holding one DICOM folder per patient (as it should appear in the sheet).
        scores: True scores by patient id, if already known; otherwise computed with ``true_score``.
        splits: Pinned splits by patient id; with it every row has a ``split`` ("" = hashed).

    Returns:
        Dicts with patient_id, dicom_dir (``f"{dicom_root}/{pid}"``), label ("1"/"0"),
        score (true score with 2 decimals; "0" for negatives) and, with ``splits``, split.
    """
    rows = []
    root = str(dicom_root).rstrip("/")
    for spec in specs:
        if spec.covid:
            score = scores[spec.patient_id] if scores and spec.patient_id in scores else true_score(spec)
            score_text = f"{score:.2f}"
        else:
            score_text = "0"
        rows.append({"patient_id": spec.patient_id, "dicom_dir": f"{root}/{spec.patient_id}",
                     "label": "1" if spec.covid else "0", "score": score_text})
        if splits is not None:
            rows[-1]["split"] = splits.get(spec.patient_id, "")
    return rows


def write_cohort(out_dir: Path, specs: Iterable[PhantomSpec] = DEMO_COHORT,
                 sheet_dicom_root: str | None = None) -> Path:
    """Generate a synthetic cohort: ``dicom/<pid>/``, ``truth/<pid>.*`` and ``patients.tsv``.

    Args:
        out_dir: Output folder.
        specs: The patients (default: the built-in demo cohort).
        sheet_dicom_root: How the DICOM root is written in the sheet (default ``out_dir/dicom``).

    Returns:
        The path of the patient sheet.

    Raises:
        ValueError: duplicate patient ids.
    """
    specs = tuple(specs)
    ids = [s.patient_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate patient ids in the cohort: {sorted({i for i in ids if ids.count(i) > 1})}")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    scores = {}
    for spec in specs:
        truth = write_patient(spec, out_dir / "dicom" / spec.patient_id, out_dir / "truth")
        scores[spec.patient_id] = truth["score"]
    rows = sheet_rows(specs, sheet_dicom_root if sheet_dicom_root is not None else str(out_dir / "dicom"), scores,
                      splits=DEMO_SPLITS)
    sheet = out_dir / "patients.tsv"
    with atomic_path(sheet) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=SHEET_COLUMNS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    log.info("cohort of %d patients written to %s in %.1f s", len(specs), out_dir, time.perf_counter() - started)
    return sheet


#: Phantoms for the default infection U-Net training set: never demo patients (other seeds),
#: so the demo cohort's segmentation severity is measured on volumes the U-Net has not seen.
INFECTION_TRAINING_SCORES: tuple[float, ...] = (5.0, 12.0, 20.0, 30.0, 40.0, 55.0, 70.0, 0.0)


def infection_training_specs(n: int = len(INFECTION_TRAINING_SCORES), seed: int = 2100, matrix: int = 176,
                             pixel_spacing_mm: float = 2.2) -> list[PhantomSpec]:
    """``n`` synthetic training phantoms (48 slices of 5 mm) with lesion loads cycling through
    INFECTION_TRAINING_SCORES."""
    specs = []
    for i in range(n):
        score = INFECTION_TRAINING_SCORES[i % len(INFECTION_TRAINING_SCORES)]
        specs.append(PhantomSpec(f"inftrain{i + 1:02d}", seed + i, score > 0, score, 48, 5.0, matrix,
                                 pixel_spacing_mm, flip_x=bool(i % 2)))
    return specs


def write_infection_training(out_dir: str | Path, n: int = len(INFECTION_TRAINING_SCORES), seed: int = 2100,
                             matrix: int = 176, pixel_spacing_mm: float = 2.2) -> list[Path]:
    """Write ``volumes/<name>.nii.gz`` (HU) and ``masks/<name>.nii.gz`` (lesions) of synthetic phantoms:
    the 3D-NIfTI training source used when ``infection.train`` names none."""
    out_dir = Path(out_dir)
    written = []
    for spec in infection_training_specs(n, seed, matrix, pixel_spacing_mm):
        phantom = make_phantom(spec)
        write_volume(out_dir / "volumes" / f"{spec.patient_id}.nii.gz", _label_image(phantom.hu, phantom))
        write_volume(out_dir / "masks" / f"{spec.patient_id}.nii.gz", _label_image(phantom.lesion_mask, phantom))
        written.append(out_dir / "volumes" / f"{spec.patient_id}.nii.gz")
    return written
