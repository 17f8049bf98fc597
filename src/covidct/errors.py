"""Errors a user sees: each names the patient, the file and what is wrong."""

from __future__ import annotations

from pathlib import Path


def raw_placeholder(patient: str, what: str = "dicom_dir") -> str:
    """How a message names a raw input of the sheet (its path may carry identifiers): ``<dicom_dir of P01>``.

    >>> raw_placeholder("P01")
    '<dicom_dir of P01>'
    """
    return f"<{what} of {patient}>"


class CovidctError(Exception):
    """A problem with the input or configuration that the user must fix.

    Args:
        message: What is wrong, in words a user understands.
        patient: The pseudonymous patient id, if known.
        path: The file or folder concerned, if any.
    """

    def __init__(self, message: str, patient: str | None = None, path: str | Path | None = None):
        self.message = message
        self.patient = patient
        self.path = str(path) if path is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.patient:
            parts.append(f"patient {self.patient}")
        if self.path:
            parts.append(f"file {self.path}")
        where = ", ".join(parts)
        return f"{where}: {self.message}" if where else self.message


class DicomInputError(CovidctError):
    """The DICOM input of a patient cannot be used (corrupt, missing, refused)."""


class AnonymizationError(CovidctError):
    """Anonymization refused or its verification failed."""


class MissingWeightsError(CovidctError):
    """Model weights are not available offline."""
