"""Synthetic chest anatomy, as arrays (no files): a phantom built in mm on a canonical LPS grid
(``x`` to the patient's left, ``y`` posterior, ``z`` superior; ``z`` index 0 the most inferior slice):
air, a patient table, body outline with fat and muscle, ribs, spine, sternum, mediastinal fat, heart
and aorta, two lungs with a branching vessel tree, trachea and main bronchi, a neck with larynx and
pharynx, bowel gas below the diaphragm, five lobes (an oblique fissure in each lung, a horizontal
fissure in the right), and for COVID-positive patients ground-glass and consolidation lesions that
fill an exact fraction of the lung (or of each lobe), so the score is true by construction."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from covidct.demo.spec import LOBE_ORDER, PhantomSpec
from covidct.hounsfield import HU_AIR, HU_MAX, HU_MIN
from covidct.lungs.lobes import LOBE_LLL, LOBE_LUL, LOBE_RLL, LOBE_RML, LOBE_RUL

log = logging.getLogger(__name__)


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
VESSEL_TRUNKS = (
    (-0.3, 0.05, 0.95),
    (-0.6, -0.6, 0.5),
    (-0.9, 0.0, 0.1),
    (-0.6, -0.7, -0.3),
    (-0.4, 0.8, 0.2),
    (-0.5, 0.5, -0.7),
    (-0.6, -0.2, -0.75),
)


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


#: Fissures, as heights in a lung (0 at its base, 1 at its apex; ranges drawn per seed). The oblique
#: fissure of each lung rises from OBLIQUE_ANTERIOR at the lung's anterior edge to OBLIQUE_POSTERIOR at
#: its posterior edge (a plane seen from the side, bent by up to FISSURE_BEND toward the lateral
#: edge): below and behind it the lower lobe. The horizontal fissure of the right lung lies at
#: HORIZONTAL (tilted by up to FISSURE_BEND from medial to lateral): the middle lobe is above the
#: oblique and below the horizontal fissure, in front. Lobar shares of the lungs come out near the
#: adult ones (demo cohort: right upper 20 %, middle 7 %, lower 28 %, left upper 24 %, lower 22 %).
OBLIQUE_ANTERIOR = (0.10, 0.20)


OBLIQUE_POSTERIOR = (0.82, 0.92)


HORIZONTAL = (0.48, 0.56)


FISSURE_BEND = 0.06


#: Lesion texture: smooth noise on physical lattices (step mm, smoothing in steps, weight).
LESION_NOISE_OCTAVES = ((8.0, 1.2, 1.0), (4.0, 1.0, 0.35))


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
        lobes: uint8 lobe of every lung voxel (lungmask's convention: 1 left upper, 2 left lower,
            3 right upper, 4 right middle, 5 right lower), 0 outside the lung.
    """

    hu: np.ndarray
    lung_labels: np.ndarray
    lesion_mask: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    score: float
    lesion_kind: np.ndarray | None = field(default=None, repr=False)
    lobes: np.ndarray | None = field(default=None, repr=False)


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
    return _Layout(
        grid,
        anat,
        (right, left),
        z_carina,
        heart_c,
        heart_r,
        aorta_asc=(8.0, -15.0),
        aorta_desc=(24.0, 52.0),
        z_arch=z_carina + 20.0,
    )


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
    q = (
        (((grid.xs[sx] - centre[0]) / semi[0]) ** 2)[None, None, :]
        + (((grid.ys[sy] - centre[1]) / semi[1]) ** 2)[None, :, None]
        + (((grid.zs[sz] - centre[2]) / semi[2]) ** 2)[:, None, None]
    )
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


def _keepout(lay: _Layout) -> np.ndarray:
    """Where lung may not be: mediastinal column, heart, aorta, spine (with margins)."""
    g = lay.grid
    nz, ny, nx = g.shape
    xs, ys = g.xs, g.ys
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
    _paint(out, _capsule_mask(g, (*a0, lay.z_arch), (*a1, lay.z_arch), AORTA_RADIUS_MM + m, AORTA_RADIUS_MM + m), True)
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
    y_top = b + TABLE_GAP_MM - TABLE_CURVATURE_PER_MM * X**2
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
    _paint(
        hu,
        _capsule_mask(g, (*lay.aorta_asc, lay.z_arch), (*lay.aorta_desc, lay.z_arch), AORTA_RADIUS_MM, AORTA_RADIUS_MM),
        HU_AORTA,
    )
    esophagus = (X - ESOPHAGUS_XY_MM[0]) ** 2 + (Y - ESOPHAGUS_XY_MM[1]) ** 2 <= ESOPHAGUS_RADIUS_MM**2
    hu[:, esophagus] = np.where(above[:, esophagus], HU_MUSCLE, hu[:, esophagus])

    # Spine: vertebral body (cortex, cancellous core, discs), canal, arch, spinous process.
    spine_y = b_c - 33.0
    r2 = X**2 + (Y - spine_y) ** 2
    vb = r2 <= SPINE_RADIUS_MM**2
    core = r2 <= (SPINE_RADIUS_MM - SPINE_CORTEX_MM) ** 2
    disc = np.mod(zs - anat.vertebra_phase, VERTEBRA_PERIOD_MM) < DISC_MM
    hu[:, vb] = HU_CORTICAL_BONE
    hu[:, core] = HU_CANCELLOUS_BONE
    hu[disc[:, None, None] & vb[None]] = HU_DISC
    canal_y = spine_y + SPINE_RADIUS_MM + SPINAL_CANAL_RADIUS_MM + 1.0
    rc2 = X**2 + (Y - canal_y) ** 2
    arch = (rc2 <= (SPINAL_CANAL_RADIUS_MM + 6.0) ** 2) & (Y >= canal_y - 6.0)
    spinous = (X / 4.0) ** 2 + ((Y - canal_y - 18.0) / 6.0) ** 2 <= 1.0
    hu[:, arch | spinous] = HU_RIB
    hu[:, rc2 <= SPINAL_CANAL_RADIUS_MM**2] = HU_CSF
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
    dist = np.sqrt(Xf**2 + Yf**2)
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
    vert = (X - sx_) ** 2 + (Y - sy_) ** 2 <= CERVICAL_SPINE_RADIUS_MM**2
    canal = (X - sx_) ** 2 + (Y - sy_ - CERVICAL_SPINE_RADIUS_MM - 6.0) ** 2 <= 5.0**2
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
        air[None], np.float32(HU_AIR), hu[upper]
    )


def _smooth_noise_at(
    rng: np.random.Generator, points: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: float, sigma: float
) -> np.ndarray:
    """Smooth unit-variance noise defined on a physical lattice, sampled at ``points`` (n, 3) xyz."""
    shape = tuple(int(np.ceil((high - low) / step)) + 2 for low, high in zip(lo[::-1], hi[::-1]))  # z, y, x
    lattice = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    lattice /= max(float(lattice.std()), 1e-6)
    coords = ((points - lo) / step)[:, ::-1].T
    return ndimage.map_coordinates(lattice, coords, order=1, mode="nearest")


def _lobe_codes(spec: PhantomSpec, lay: _Layout, labels: np.ndarray, lung_idx: tuple[np.ndarray, ...]) -> np.ndarray:
    """The lobe of each lung voxel, from the fissure surfaces (see OBLIQUE_ANTERIOR)."""
    g = lay.grid
    zi, yi, xi = lung_idx
    X, Y, Z = g.xs[xi], g.ys[yi], g.zs[zi]
    lab = labels[lung_idx]
    codes = np.zeros(zi.size, np.uint8)
    rng = np.random.default_rng([spec.seed, 8])
    for side in lay.sides:
        anterior, posterior = rng.uniform(*OBLIQUE_ANTERIOR), rng.uniform(*OBLIQUE_POSTERIOR)
        bend, horizontal, tilt = rng.uniform(-1, 1) * FISSURE_BEND, rng.uniform(*HORIZONTAL), rng.uniform(-1, 1)
        sel = lab == side.label
        h = side.height(Z[sel])
        v = np.clip((Y[sel] - side.cy) / side.ay, -1.0, 1.0)  # -1 anterior, +1 posterior
        u = np.clip((X[sel] - side.cx) / side.ax, -1.0, 1.0)
        lateral = -u if side.label == LABEL_RIGHT_LUNG else u  # +1 at the lateral edge
        oblique = anterior + (posterior - anterior) * (v + 1.0) / 2.0 + bend * np.clip(lateral, 0.0, 1.0) ** 2
        lower = h < oblique
        if side.label == LABEL_RIGHT_LUNG:
            middle = ~lower & (h < horizontal + tilt * FISSURE_BEND * lateral)
            codes[sel] = np.where(lower, LOBE_RLL, np.where(middle, LOBE_RML, LOBE_RUL))
        else:
            codes[sel] = np.where(lower, LOBE_LLL, LOBE_LUL)
    return codes


def _lesion_groups(spec: PhantomSpec, lobe_at: np.ndarray) -> list[tuple[np.ndarray | None, int, float]]:
    """Where lesions go and how many: ``(lung voxel indices or None for all, count, percent)``."""
    if spec.lobe_involvement is None:
        return [(None, _lesion_count(spec.target_score, lobe_at.size), spec.target_score)]
    groups = []
    for code, percent in zip(LOBE_ORDER, spec.lobe_involvement):
        members = np.flatnonzero(lobe_at == code)
        groups.append((members, _lesion_count(percent, members.size), percent))
    return groups


def _lesions(
    spec: PhantomSpec, lay: _Layout, labels: np.ndarray, lung_idx: tuple[np.ndarray, ...], lobe_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Choose exactly round(target% of the lung) lesion voxels (or round(percent of each lobe) in each
    lobe, with ``spec.lobe_involvement``) and give them HU.

    Lesions are the lung voxels (of the lobe) of highest priority, a smooth noise field plus a bias
    toward peripheral, posterior and basal lung: thresholding it gives smooth irregular blobs, and
    the threshold falls exactly at the requested count (the last blob is trimmed). The deeper
    inside a lesion (higher above the threshold), the denser: a ground-glass rim and, for the top
    fraction (more of it where more is involved), consolidation.

    Returns:
        Per lung voxel: lesion kind (0, LESION_GGO, LESION_CONSOLIDATION) and lesion HU.
    """
    g = lay.grid
    zi, yi, xi = lung_idx
    n_lung = zi.size
    kind = np.zeros(n_lung, np.uint8)
    les_hu = np.zeros(n_lung, np.float32)
    groups = _lesion_groups(spec, lobe_at)
    if sum(count for _, count, _ in groups) == 0:
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
    for members, count, percent in groups:
        if count == 0:
            continue
        if members is None:
            order = np.argsort(-priority, kind="stable")
        else:
            order = members[np.argsort(-priority[members], kind="stable")]
        chosen = order[:count]
        depth = priority[chosen] - priority[order[count - 1]]
        cons_fraction = 0.1 + 0.3 * percent / 100.0
        d_c = max(float(np.quantile(depth, 1.0 - cons_fraction)), 1e-6)
        d_max = max(float(depth.max()), d_c + 1e-6)
        is_cons = depth > d_c
        ggo = np.clip(depth / d_c, 0.0, 1.0) ** 0.8
        cons = np.clip((depth - d_c) / (d_max - d_c), 0.0, 1.0) ** 0.5
        kind[chosen] = np.where(is_cons, LESION_CONSOLIDATION, LESION_GGO)
        les_hu[chosen] = np.where(
            is_cons,
            HU_CONSOLIDATION[0] + (HU_CONSOLIDATION[1] - HU_CONSOLIDATION[0]) * cons,
            HU_GGO[0] + (HU_GGO[1] - HU_GGO[0]) * ggo,
        )
    return kind, les_hu


def _random_unit_perpendicular(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    v = rng.standard_normal(3)
    v -= (v @ d) * d
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _hila(lay: _Layout) -> dict[int, np.ndarray]:
    """Where each lung's vessel tree starts (beside the main bronchus' end)."""
    return {
        LABEL_RIGHT_LUNG: np.array([-24.0, 2.0, lay.z_carina - 26.0]),
        LABEL_LEFT_LUNG: np.array([34.0, 4.0, lay.z_carina - 36.0]),
    }


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
    lobe_at = _lobe_codes(spec, lay, labels, lung_idx)
    kind_at, les_hu = _lesions(spec, lay, labels, lung_idx, lobe_at)
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
        hu[:, ~fov_disc(spec)] = HU_AIR
    hu_i = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)

    lesion_kind = np.zeros(g.shape, np.uint8)
    lesion_kind[lung_idx] = kind_at
    lobes = np.zeros(g.shape, np.uint8)
    lobes[lung_idx] = lobe_at
    lesion_mask = (lesion_kind > 0).astype(np.uint8)
    n_lung = int(lung.sum())
    score = 100.0 * float(lesion_mask.sum()) / n_lung if n_lung else 0.0
    log.info(
        "phantom %s: %s voxels, lung %d voxels, score %.3f (target %.1f) in %.2f s",
        spec.patient_id,
        "x".join(map(str, g.shape)),
        n_lung,
        score,
        spec.target_score,
        time.perf_counter() - started,
    )
    return Phantom(
        hu=hu_i,
        lung_labels=labels,
        lesion_mask=lesion_mask,
        spacing=g.spacing,
        origin=g.origin,
        score=score,
        lesion_kind=lesion_kind,
        lobes=lobes,
    )


def fov_disc(spec: PhantomSpec) -> np.ndarray:
    """(y, x) bool: pixels inside the circular reconstruction field of view."""
    c = (spec.matrix - 1) / 2.0
    i = np.arange(spec.matrix) - c
    return i[:, None] ** 2 + i[None, :] ** 2 <= (spec.matrix / 2.0) ** 2


def true_score(spec: PhantomSpec) -> float:
    """The score ``make_phantom(spec).score`` will have, from the lung labels and lobes alone.

    Args:
        spec: The patient's specification.

    Returns:
        Percent of lung voxels that are lesion.
    """
    if not spec.covid:
        return 0.0
    lay = _layout(spec)
    labels = _lungs(lay)
    lung_idx = np.nonzero(labels)
    n_lung = lung_idx[0].size
    groups = _lesion_groups(spec, _lobe_codes(spec, lay, labels, lung_idx))
    return 100.0 * sum(count for _, count, _ in groups) / n_lung if n_lung else 0.0
