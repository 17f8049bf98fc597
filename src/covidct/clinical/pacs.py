"""Exchange with a PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS; ``dicomweb-client``).

**Pull** (``pull_new_studies``, the ``covidct pacs-pull`` command, run before the workflow): the
studies a query finds (modality CT, optionally a study-date range) that the patient sheet does not
list yet are retrieved into the raw folder layout, ``<raw_dir>/<patient_id>/00001.dcm ...``, and a
row per study is appended to the sheet, so that the next ``snakemake`` run picks them up as new
patients (the incremental re-run). The raw files are written as the PACS sent them (the anonymizer
reads them next); what names them is keyed: ``patient_id`` is ``pacs-`` + 12 hex of
HMAC(key, StudyInstanceUID) (a patient_id names a scan), ``subject_id`` ``pacs-`` + 12 hex of
HMAC(key, PatientID) (the scans of one person); the same key gives the same ids on every pull, so a
study already pulled is recognised without storing its UID. No PatientID, name or UID becomes a
path, a wildcard or a log line.

**Push** (``push_files``, the ``push_to_pacs`` rule): the anonymized series with its SEG and SR are
stored in the research PACS, only files whose PatientIdentityRemoved is YES (the rule runs only
after both verifications passed).

Credentials come from the environment (``COVIDCT_PACS_USER``, ``COVIDCT_PACS_PASSWORD``), never from
the configuration.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from covidct.deid.keys import pseudonym
from covidct.dicom.files import is_hidden, list_files
from covidct.errors import AnonymizationError, CovidctError
from covidct.io import atomic_dir, atomic_path

log = logging.getLogger(__name__)

#: Environment variables holding the PACS's HTTP basic credentials (optional).
USER_ENV, PASSWORD_ENV = "COVIDCT_PACS_USER", "COVIDCT_PACS_PASSWORD"


#: Prefix and length (hex characters) of the keyed ids of pulled studies and their subjects.
PULLED_PREFIX, PULLED_HEX = "pacs-", 12


#: DICOM JSON tags of the query's answer.
TAG_STUDY_UID, TAG_PATIENT_ID = "0020000D", "00100020"


#: Instances per STOW-RS request.
STORE_BATCH = 50


@dataclass(frozen=True)
class PullSettings:
    """The ``pacs.pull`` configuration block.

    Attributes:
        url: DICOMweb base URL of the clinical PACS (e.g. ``http://pacs:8042/dicom-web``).
        raw_dir: Folder the pulled studies are written into (raw data, as the sheet's dicom_dir).
        modality: ModalitiesInStudy of the query.
        study_date: StudyDate of the query (DICOM range, e.g. ``20200301-``), or empty.
    """

    url: str
    raw_dir: str
    modality: str = "CT"
    study_date: str = ""


def client(url: str):
    """A DICOMweb client of ``url``, with basic credentials from the environment when set."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    if not url:
        raise CovidctError("no PACS URL configured (pacs.pull.url / pacs.push.url)")
    session = requests.Session()
    if os.environ.get(USER_ENV):
        session.auth = (os.environ[USER_ENV], os.environ.get(PASSWORD_ENV, ""))
    return DICOMwebClient(url=url, session=session)


def pulled_ids(key: bytes, study_uid: str, patient_id: str) -> tuple[str, str]:
    """The keyed (patient_id, subject_id) of a pulled study.

    >>> a = pulled_ids(b"k" * 16, "1.2.3", "PAT1"); a == pulled_ids(b"k" * 16, "1.2.3", "PAT1")
    True
    >>> a[0].startswith("pacs-") and len(a[0]) == 17 and "PAT1" not in "".join(a)
    True
    """
    study = PULLED_PREFIX + pseudonym(key, "pacs-study", study_uid, PULLED_HEX)
    subject = PULLED_PREFIX + pseudonym(key, "pacs-subject", patient_id or study_uid, PULLED_HEX)
    return study, subject


def _value(attributes: dict, tag: str) -> str:
    values = attributes.get(tag, {}).get("Value") or [""]
    return str(values[0])


def read_sheet(sheet: str | Path):
    """The patient sheet as strings (an empty sheet with the minimal columns when it does not exist)."""
    import pandas as pd

    path = Path(sheet)
    if not path.exists():
        return pd.DataFrame(columns=["patient_id", "dicom_dir", "label", "score", "subject_id"])
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def append_rows(sheet: str | Path, rows: list[dict]) -> None:
    """Append rows to the patient sheet (atomically; missing columns are added, empty elsewhere)."""
    import pandas as pd

    table = read_sheet(sheet)
    table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True).fillna("")
    with atomic_path(sheet, suffix=".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def pull_new_studies(settings: PullSettings, sheet: str | Path, key: bytes) -> dict:
    """Retrieve the studies the query finds that the sheet does not list yet; append their rows.

    Args:
        settings: The ``pacs.pull`` block.
        sheet: The patient sheet the workflow reads (created when missing).
        key: The anonymization key (``covidct.deid.keys.load_key``).

    Returns:
        ``{"found": n, "new": [patient_id, ...], "already": n}`` (pseudonymous ids only).
    """
    pacs = client(settings.url)
    filters = {"ModalitiesInStudy": settings.modality}
    if settings.study_date:
        filters["StudyDate"] = settings.study_date
    try:
        studies = pacs.search_for_studies(search_filters=filters, fields=["PatientID", "StudyInstanceUID"])
    except Exception as exc:  # noqa: BLE001 - HTTP and connection errors of any kind: one clear message
        raise CovidctError(f"the PACS query failed ({type(exc).__name__})", path=settings.url) from None
    listed = set(read_sheet(sheet)["patient_id"])
    rows, already = [], 0
    for study in studies:
        study_uid = _value(study, TAG_STUDY_UID)
        patient_id, subject_id = pulled_ids(key, study_uid, _value(study, TAG_PATIENT_ID))
        if patient_id in listed:
            already += 1
            continue
        folder = Path(settings.raw_dir) / patient_id
        try:
            datasets = pacs.retrieve_study(study_uid)
        except Exception as exc:  # noqa: BLE001
            raise CovidctError(f"retrieving the study failed ({type(exc).__name__})", patient_id) from None
        with atomic_dir(folder) as tmp:
            for n, ds in enumerate(datasets, 1):
                ds.save_as(tmp / f"{n:05d}.dcm", enforce_file_format=True)
        rows.append({"patient_id": patient_id, "dicom_dir": str(folder), "subject_id": subject_id})
        listed.add(patient_id)
        log.info("pulled study %s: %d instances into the raw folder layout", patient_id, len(datasets))
    if rows:
        append_rows(sheet, rows)
    return {"found": len(studies), "new": [r["patient_id"] for r in rows], "already": already}


def series_files(folder: Path) -> list[Path]:
    """The files of an anonymized folder (no hidden ones: Snakemake's time stamp)."""

    return [p for p in list_files(folder) if not is_hidden(p, folder)]


def push_files(files: list[Path], push: dict, patient: str) -> dict:
    """Store ``files`` in the research PACS (``push``: the ``pacs.push`` block, its ``url``).

    Raises:
        AnonymizationError: a file is not marked de-identified (nothing is sent).

    Returns:
        The receipt: patient_id, the PACS URL, the instances sent and the SOP Instance UIDs stored.
    """
    import pydicom

    datasets = [pydicom.dcmread(f) for f in files]
    for path, ds in zip(files, datasets):
        if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
            raise AnonymizationError("a file is not marked de-identified: nothing is pushed", patient, path)
    pacs = client(push["url"])
    stored: list[str] = []
    for start in range(0, len(datasets), STORE_BATCH):
        batch = datasets[start : start + STORE_BATCH]
        try:
            response = pacs.store_instances(batch)
        except Exception as exc:  # noqa: BLE001
            raise CovidctError(f"the PACS refused the push ({type(exc).__name__})", patient, push["url"]) from None
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            raise CovidctError(f"the PACS failed to store {len(failed)} instance(s)", patient, push["url"])
        stored += [str(item.ReferencedSOPInstanceUID) for item in response.get("ReferencedSOPSequence", [])]
    log.info("patient %s: pushed %d instances (%d stored)", patient, len(datasets), len(stored))
    return {"patient_id": patient, "url": push["url"], "n_sent": len(datasets), "stored": sorted(stored)}
