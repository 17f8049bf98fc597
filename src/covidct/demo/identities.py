"""Realistic but FAKE identifiers for the synthetic patients' headers (names, IDs, dates,
institutions, free text, private tags), so that the anonymization step has something to remove."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

if TYPE_CHECKING:
    import pydicom

UID_ROOT = "1.2.826.0.1.3680043.8.498."


PRIVATE_GROUP = 0x0009


PRIVATE_CREATOR = "ACME_CT 1.0"


_SURNAMES = (
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Kowalczyk",
    "Haddad",
    "Fitzgerald",
    "Nakamura",
    "Oyelaran",
    "Petrovic",
    "Delacroix",
    "Brennan",
    "Castellanos",
    "Eriksen",
    "Van Dijk",
    "Achterberg",
    "Mensah",
    "Rossi",
    "Sokolova",
    "Quintero",
    "Abernathy",
    "Yilmaz",
    "Whitcombe",
    "Dubois",
    "Kaczmarek",
    "Ferreira",
    "Nguyen",
    "Holloway",
    "Marchetti",
    "Adeyemi",
)


_GIVEN_F = (
    "Amara",
    "Ingrid",
    "Sofia",
    "Yuki",
    "Agnieszka",
    "Leila",
    "Maeve",
    "Camila",
    "Freya",
    "Nadia",
    "Chiara",
    "Ebele",
    "Margot",
    "Hana",
    "Rosalind",
)


_GIVEN_M = (
    "Tobias",
    "Kwame",
    "Henrik",
    "Mateo",
    "Rashid",
    "Dmitri",
    "Liam",
    "Kenji",
    "Oskar",
    "Emeka",
    "Julien",
    "Tomasz",
    "Arjun",
    "Bram",
    "Callum",
)


_INSTITUTIONS = (
    ("St. Brigid Regional Hospital", "1200 Larkspur Avenue, Millbrook, OH 43001", "SBRH"),
    ("Harbourview University Medical Centre", "45 Quayside Road, Port Ellery, ME 04112", "HUMC"),
    ("Mount Calder General Hospital", "88 Calder Ridge Drive, Ashford Falls, CO 80921", "MCGH"),
    ("Riverside Lutheran Clinic", "3 Old Mill Lane, Westbury-on-Severn, GL9 4QT", "RLC"),
)


_STUDY_DESCRIPTIONS = ("CT CHEST WITHOUT CONTRAST", "CT THORAX LOW DOSE", "CT CHEST HRCT COVID PROTOCOL")


_SERIES_DESCRIPTIONS = ("AXIAL LUNG 5MM", "Thorax 5.0 Br60 lung", "CHEST AXIAL STANDARD")


MANUFACTURERS = (
    ("SIEMENS", "SOMATOM Definition AS", "B60f"),
    ("GE MEDICAL SYSTEMS", "LightSpeed VCT", "LUNG"),
    ("TOSHIBA", "Aquilion ONE", "FC52"),
    ("Philips", "Ingenuity CT", "YB"),
)


#: Identity keys that are top-level DICOM keywords of the same name.
IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StationName",
    "StudyID",
    "StudyDescription",
    "SeriesDescription",
    "DeviceSerialNumber",
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


#: The identity keys that belong to the person (the same on every scan of one person).
PERSON_KEYS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex")


#: The dates of a scan (all the study's day).
DATE_KEYS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


def scan_identity(seed: int, person_seed: int | None = None, days_after: int = 0) -> dict[str, str]:
    """Fake identifiers of one scan: a follow-up scan of the person of ``person_seed``.

    The person's keys (PERSON_KEYS) come from ``fake_identity(person_seed)``, the scan's own
    (UIDs, accession number, institution, ...) from ``fake_identity(seed)``, and the dates are
    ``days_after`` days after the person's study date (so the anonymizer, whose date offset is
    keyed on the PatientID, keeps the intervals between one person's scans exact).

    Args:
        seed: The scan's seed.
        person_seed: The person's seed; None: ``seed``.
        days_after: Days after the person's first study date.

    Returns:
        DICOM keyword -> value, as ``fake_identity``; ``fake_identity(seed)`` itself when
        ``person_seed`` is None or ``seed`` and ``days_after`` is 0.
    """
    scan = fake_identity(seed)
    person_seed = seed if person_seed is None else person_seed
    if person_seed == seed and days_after == 0:
        return scan
    person = fake_identity(person_seed)
    out = {**scan, **{key: person[key] for key in PERSON_KEYS}}
    day = datetime.strptime(person["StudyDate"], "%Y%m%d").date() + timedelta(days=int(days_after))
    out.update(dict.fromkeys(DATE_KEYS, day.strftime("%Y%m%d")))
    birth = datetime.strptime(person["PatientBirthDate"], "%Y%m%d").date()
    age = day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
    out["PatientAge"] = f"{age:03d}Y"
    return out


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
