"""What a synthetic patient is: ``PhantomSpec`` (seed, COVID-19 or not, target score, slice count and
spacing, matrix, and the acquisition quirks of its DICOM: orientation sign, slice order, pixel
encoding, padding, a localizer)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from covidct.hounsfield import HU_MIN
from covidct.lungs.lobes import LOBE_LLL, LOBE_LUL, LOBE_RLL, LOBE_RML, LOBE_RUL

_PATIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")

#: The lobes of ``PhantomSpec.lobe_involvement``, in reading order (lobe codes of lungmask's convention).
LOBE_ORDER = (LOBE_RUL, LOBE_RML, LOBE_RLL, LOBE_LUL, LOBE_LLL)


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
        lobe_involvement: Percent of each lobe involved by lesions, in the order of
            ``LOBE_ORDER`` (right upper, middle, lower, left upper, lower); each lobe then gets
            exactly round(percent x its voxels) lesion voxels. None: ``target_score`` percent of the
            whole lung, placed where the lesion priority is highest (the lobes' shares follow).
        person_seed: Seed of the person's fake identity (name, PatientID, birth date, base study
            date); None: ``seed``. Scans with one ``person_seed`` are follow-up scans of one person.
        days_after: The study date is this many days after the person's base study date.
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
    lobe_involvement: tuple[float, float, float, float, float] | None = None
    person_seed: int | None = None
    days_after: int = 0

    def __post_init__(self) -> None:
        if not _PATIENT_ID_RE.match(self.patient_id):
            raise ValueError(f"patient_id {self.patient_id!r}: only letters, digits, _ and - are allowed")
        if self.seed < 0:
            raise ValueError(f"{self.patient_id}: seed must be >= 0")
        if not 0.0 <= self.target_score <= 100.0:
            raise ValueError(f"{self.patient_id}: target_score must lie in [0, 100]")
        if not self.covid and self.target_score != 0:
            raise ValueError(f"{self.patient_id}: a negative patient has target_score 0")
        if self.lobe_involvement is not None:
            if len(self.lobe_involvement) != len(LOBE_ORDER) or not all(
                0.0 <= p <= 100.0 for p in self.lobe_involvement
            ):
                raise ValueError(f"{self.patient_id}: lobe_involvement needs {len(LOBE_ORDER)} percents in [0, 100]")
            if self.covid != any(p > 0 for p in self.lobe_involvement):
                raise ValueError(f"{self.patient_id}: a patient has lesions in a lobe if and only if it is positive")
        if self.days_after < 0 or (self.person_seed is not None and self.person_seed < 0):
            raise ValueError(f"{self.patient_id}: days_after and person_seed must be >= 0")
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
