"""Errors about raw inputs, told without their paths: a raw folder (or a lung reference) may be named
after the patient, so an error that names a file under it says ``<dicom_dir of PATIENT>`` and the
file's rank in the folder's sorted listing instead (the ranks the anonymizer's skip lists use)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from covidct.dicom.files import list_files
from covidct.errors import AnonymizationError, CovidctError, raw_placeholder


def redact(exc: CovidctError, raw: Path, patient: str, what: str = "dicom_dir") -> CovidctError:
    """The same error with the raw path ``raw`` replaced by ``<WHAT of PATIENT>``.

    For the DICOM folder (``what`` ``dicom_dir``) a file inside it is told by its rank in the folder's
    sorted listing; for another raw input (``lung_reference``) the file inside is not told. An error
    about a path outside ``raw`` (a pseudonymous output) is returned as it is.
    """
    if exc.path is None:
        return exc
    path = Path(exc.path)
    where = raw_placeholder(patient, what)
    if path != raw and raw in path.parents:
        if what == "dicom_dir":
            files = list_files(raw)  # the ranks the discovery's skip lists use
            rank = files.index(path) + 1 if path in files else None
            where += f", file {rank} of {len(files)} in sorted order" if rank else ", a file inside"
    elif path != raw:
        return exc  # not under the raw folder: a pseudonymous output path
    return type(exc)(exc.message, patient, where)


@contextlib.contextmanager
def raw_input(
    raw: str | Path,
    patient: str,
    what: str = "dicom_dir",
    reading: str = "the DICOM input",
    error: type[CovidctError] = AnonymizationError,
    redacted: bool = True,
) -> Iterator[None]:
    """Run the body on the raw input ``raw``: a ``CovidctError`` is redacted (``redact``), an ``OSError``
    becomes ``error("cannot read READING (its type)")`` about the file, redacted too. ``redacted`` False
    (a path the user typed on the command line) keeps the paths."""
    raw = Path(raw)

    def told(exc: CovidctError) -> CovidctError:
        return redact(exc, raw, patient, what) if redacted else exc

    try:
        yield
    except CovidctError as exc:
        raise told(exc) from None
    except OSError as exc:
        raise told(error(f"cannot read {reading} ({type(exc).__name__})", patient, exc.filename or raw)) from None
