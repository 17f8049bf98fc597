"""Reference contours from a DICOM RT Structure Set (RTSTRUCT), rasterized onto a mask grid.

An RTSTRUCT holds, per region of interest (ROI), closed planar polygons in patient
coordinates (mm, LPS), one or more per CT slice. ``read_rtstruct`` reads the ROI names
and polygons; ``rasterize`` paints one ROI onto any axial grid (a SimpleITK image whose
third axis is the patient's z): each grid slice takes the contour plane it lies on
or the shape-based interpolation of the two planes around it, the polygons filled with
the even-odd rule (a contour inside another is a hole) at pixel centres. Contours are matched to
slices by z position, not by the SOP Instance UIDs they reference, so a mask on a
resampled grid can be compared with contours drawn on the original series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from covidct.errors import CovidctError

#: Two contour planes further apart than this times the ROI's usual plane spacing are not
#: interpolated (the structure is absent between them).
MAX_GAP_FACTOR = 1.5
#: Contour planes closer than this (mm) are one plane (rounding in ContourData).
PLANE_TOLERANCE_MM = 0.05
#: A polygon whose z values spread more than this (mm) is not planar-axial.
MAX_PLANE_SPREAD_MM = 0.5
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass
class Roi:
    """One ROI of a structure set: its name and its polygons, grouped by plane.

    Attributes:
        number: ROINumber.
        name: ROIName as written.
        planes: z (mm) -> list of (n, 2) arrays of (x, y) vertices (mm, LPS).
    """

    number: int
    name: str
    planes: dict[float, list[np.ndarray]] = field(default_factory=dict)


def read_rtstruct(path: str | Path, patient: str | None = None) -> dict[str, Roi]:
    """Read the ROIs of an RTSTRUCT file.

    Args:
        path: The RTSTRUCT file (or a folder holding exactly one).
        patient: Pseudonymous id for messages.

    Returns:
        ROI name -> Roi (ROIs without contours are kept, with no planes).

    Raises:
        CovidctError: not readable, not an RTSTRUCT, or a contour that is not an axial plane.
    """

    path = Path(path)
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
        found = []
        for f in files:
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID"])
            except Exception:  # noqa: BLE001 - clutter in the folder is skipped
                continue
            if ds.get("Modality") == "RTSTRUCT" or ds.get("SOPClassUID") == RTSTRUCT_SOP_CLASS:
                found.append(f)
        if len(found) != 1:
            raise CovidctError(f"expected one RTSTRUCT file in the reference folder, found {len(found)}", patient, path)
        path = found[0]
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is one clear message
        raise CovidctError(f"cannot read the reference RTSTRUCT ({type(exc).__name__})", patient, path) from None
    if ds.get("Modality") != "RTSTRUCT" and ds.get("SOPClassUID") != RTSTRUCT_SOP_CLASS:
        raise CovidctError(f"reference is not an RTSTRUCT (Modality {ds.get('Modality')!r})", patient, path)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    rois = {name: Roi(number, name) for number, name in names.items()}
    for item in ds.get("ROIContourSequence", []):
        number = int(item.ReferencedROINumber)
        if number not in names:
            continue
        roi = rois[names[number]]
        for contour in item.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")) not in ("CLOSED_PLANAR",):
                continue
            points = np.asarray([float(v) for v in contour.ContourData], float).reshape(-1, 3)
            if len(points) < 3:
                continue
            if np.ptp(points[:, 2]) > MAX_PLANE_SPREAD_MM:
                raise CovidctError(
                    f"ROI {roi.name!r} has a contour that is not in an axial plane "
                    f"(z spreads {np.ptp(points[:, 2]):.1f} mm)",
                    patient,
                    path,
                )
            z = float(np.mean(points[:, 2]))
            key = next((k for k in roi.planes if abs(k - z) <= PLANE_TOLERANCE_MM), z)
            roi.planes.setdefault(key, []).append(points[:, :2])
    return rois


def match_rois(rois: dict[str, Roi], pattern: str) -> list[Roi]:
    """The ROIs whose name matches a regular expression (case-insensitive, full match)."""
    rx = re.compile(pattern, re.IGNORECASE)
    return [roi for name, roi in rois.items() if rx.fullmatch(name.strip())]


def _axial_geometry(image, patient: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical (x, y) of every pixel centre of a slice, (y, x) shape, and the z (mm) of each slice."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if abs(direction[2, 0]) > 1e-3 or abs(direction[2, 1]) > 1e-3:
        raise CovidctError(
            "the mask grid is not axial: its rows and columns must lie in the patient's "
            "axial plane to compare with RTSTRUCT contours",
            patient,
        )
    spacing = np.array(image.GetSpacing())
    origin = np.array(image.GetOrigin())
    nx, ny, nz = image.GetSize()
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    m = direction[:2, :2] * spacing[None, :2]
    xy = origin[:2, None, None] + np.einsum("ab,bij->aij", m, np.stack([ii, jj]).astype(float))
    zs = origin[2] + direction[2, 2] * spacing[2] * np.arange(nz)
    return xy[0], xy[1], zs


def _inside(polygons: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd rule: is each point (x, y arrays, mm) inside the plane's polygons (holes are inner polygons)."""
    inside = np.zeros(x.shape, bool)
    for poly in polygons:
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        box = (x >= x0.min()) & (x <= x0.max()) & (y >= y0.min()) & (y <= y0.max())
        if not box.any():
            continue
        px, py = x[box][:, None], y[box][:, None]
        crosses = (y0[None] <= py) != (y1[None] <= py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0[None] + (py - y0[None]) * (x1 - x0)[None] / (y1 - y0)[None]
        odd = (crosses & (px < xc)).sum(axis=1) % 2 == 1
        inside[box] ^= odd
    return inside


def _edge_distance(polygons: list[np.ndarray], x: np.ndarray, y: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Distance (mm) from each point to the nearest polygon edge of a plane."""
    p0 = np.concatenate(polygons)
    p1 = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    d = p1 - p0
    dd = np.maximum((d**2).sum(axis=1), 1e-12)
    out = np.empty(x.size)
    px, py = x.ravel(), y.ravel()
    for s in range(0, px.size, chunk):
        qx, qy = px[s : s + chunk, None] - p0[None, :, 0], py[s : s + chunk, None] - p0[None, :, 1]
        t = np.clip((qx * d[None, :, 0] + qy * d[None, :, 1]) / dd[None], 0.0, 1.0)
        out[s : s + chunk] = np.sqrt((qx - t * d[None, :, 0]) ** 2 + (qy - t * d[None, :, 1]) ** 2).min(axis=1)
    return out.reshape(x.shape)


def rasterize(
    rois: list[Roi], image, patient: str | None = None, shift_mm: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Paint the union of some ROIs onto the grid of ``image``.

    A pixel of a slice that lies on a contour plane is inside when its centre is inside the
    plane's polygons (even-odd rule). A slice between two contour planes of the same ROI
    (no more than ``MAX_GAP_FACTOR`` times the ROI's usual plane spacing apart) gets the
    shape-based interpolation of the two (Herman et al., IEEE CG&A 1992): the signed distances
    to the two planes' contours are interpolated linearly in z and the pixel is inside where the
    result is positive, just as a resampled CT interpolates between its slices. Beyond the
    first and last plane, the nearest plane reaches half the plane spacing.

    Args:
        rois: ROIs (e.g. from ``match_rois``); their union is painted.
        image: SimpleITK image of the target grid (axial: third axis along the patient's z).
        patient: Pseudonymous id for messages.
        shift_mm: (x, y) added to every contour vertex (mm): for structure sets written with the
            pixel-corner convention, minus half the CT pixel spacing.

    Returns:
        Boolean array (z, y, x) on the image grid.
    """
    px, py, zs = _axial_geometry(image, patient)
    px, py = px - shift_mm[0], py - shift_mm[1]  # moving the grid back is moving the contours forward
    nx, ny, nz = image.GetSize()
    out = np.zeros((nz, ny, nx), bool)
    for roi in rois:
        planes = sorted(roi.planes)
        if not planes:
            continue
        gaps = np.diff(planes)
        step = float(np.median(gaps)) if gaps.size else abs(image.GetSpacing()[2])
        cache: dict[float, np.ndarray] = {}

        def plane_mask(p: float, cache: dict = cache, roi=roi) -> np.ndarray:
            if p not in cache:
                cache[p] = _inside(roi.planes[p], px, py)
            return cache[p]

        for iz, z in enumerate(zs):
            k = int(np.searchsorted(planes, z))
            below = planes[k - 1] if k > 0 else None
            above = planes[k] if k < len(planes) else None
            if above is not None and abs(above - z) <= PLANE_TOLERANCE_MM:
                out[iz] |= plane_mask(above)
            elif below is not None and abs(z - below) <= PLANE_TOLERANCE_MM:
                out[iz] |= plane_mask(below)
            elif below is not None and above is not None and above - below <= MAX_GAP_FACTOR * step:
                m0, m1 = plane_mask(below), plane_mask(above)
                w1 = (z - below) / (above - below)
                slice_mask = m0 & m1
                differ = m0 ^ m1
                if differ.any():
                    x, y = px[differ], py[differ]
                    s0 = _edge_distance(roi.planes[below], x, y) * np.where(m0[differ], 1.0, -1.0)
                    s1 = _edge_distance(roi.planes[above], x, y) * np.where(m1[differ], 1.0, -1.0)
                    slice_mask[differ] = (1.0 - w1) * s0 + w1 * s1 > 0
                out[iz] |= slice_mask
            else:
                near = min((p for p in (below, above) if p is not None), key=lambda p: abs(p - z))
                if abs(near - z) <= 0.5 * step + PLANE_TOLERANCE_MM:
                    out[iz] |= plane_mask(near)
    return out
