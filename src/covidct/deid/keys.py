"""The anonymization key and what it keys: pseudonyms, replacement UIDs and per-patient date
offsets (HMAC-SHA256). Without the key nobody can recompute a pseudonym from a real PatientID; with
it the same patient always gets the same pseudonym, UIDs and offset."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from pathlib import Path

from covidct.errors import AnonymizationError

log = logging.getLogger(__name__)


#: Environment variable holding the anonymization key.
KEY_ENV = "COVIDCT_ANON_KEY"


#: Public, fixed key: ONLY for the synthetic demo cohort. Its pseudonyms are not secret.
DEMO_KEY = b"covidct-public-demo-key--NOT-SECRET--synthetic-demo-cohort-only"


#: Shortest key accepted (bytes).
MIN_KEY_BYTES = 16


#: Folder name a key file must never be under (workflow outputs are shared).
FORBIDDEN_KEY_FOLDER = "results"


#: Root for UUID-derived UIDs (ISO/IEC 9834-8), used for every replacement UID.
UUID_UID_ROOT = "2.25."


#: Longest UID DICOM allows.
MAX_UID_LENGTH = 64


#: Bytes of the HMAC used for a replacement UID (128 bits, as a UUID).
UID_HASH_BYTES = 16


#: Replacement UIDs are HMAC(key, UID_HASH_PREFIX + original).
UID_HASH_PREFIX = "uid:"


#: Range of the per-patient date offset, in days (both ends included; never 0).
DATE_OFFSET_MIN_DAYS = -3650


DATE_OFFSET_MAX_DAYS = -365
#: How a message names the key-file setting (the command line says ``--key-file`` instead).
KEY_FILE_SETTING = "anonymize.key_file in the config"


def load_key(key_file: str | Path | None = None, allow_demo: bool = False) -> bytes:
    """Find the anonymization key.

    Order: ``$COVIDCT_ANON_KEY``, then ``key_file``, then the public ``DEMO_KEY`` when
    ``allow_demo`` (synthetic demo data only). The key itself is never logged.

    Args:
        key_file: File holding the key (config ``anonymize.key_file``); it must exist,
            be non-empty and lie outside any folder named ``results``.
        allow_demo: Fall back to ``DEMO_KEY`` when no key is configured.

    Returns:
        The key bytes (surrounding whitespace removed).

    Raises:
        AnonymizationError: No usable key, with instructions on how to supply one.
    """
    env = os.environ.get(KEY_ENV, "")
    if env.strip():
        key = env.strip().encode("utf-8")
        _check_key_length(key, f"environment variable {KEY_ENV}")
        return key
    if key_file:
        return _read_key_file(Path(key_file))
    if allow_demo:
        log.warning("using the public demo key: pseudonyms and UIDs are NOT secret (synthetic demo data only)")
        return DEMO_KEY
    raise AnonymizationError(
        f"no anonymization key: set the environment variable {KEY_ENV} to a secret of at least "
        f"{MIN_KEY_BYTES} characters, or set {KEY_FILE_SETTING} to a file holding it "
        f"(outside results/ and outside version control, readable only by you: chmod 600). Keep the key: "
        "the same key gives the same pseudonyms, UIDs and date offsets on every run."
    )


def _read_key_file(path: Path) -> bytes:
    if any(part == FORBIDDEN_KEY_FOLDER for part in path.resolve().parent.parts):
        raise AnonymizationError(
            f"the key file must not be inside a folder named '{FORBIDDEN_KEY_FOLDER}' (workflow outputs "
            f"are shared); move it elsewhere and update {KEY_FILE_SETTING}",
            path=path,
        )
    if not path.is_file():
        raise AnonymizationError(
            f"key file not found: create it (a secret of at least {MIN_KEY_BYTES} characters) or set {KEY_ENV} instead",
            path=path,
        )
    key = path.read_bytes().strip()
    if not key:
        raise AnonymizationError("key file is empty", path=path)
    _check_key_length(key, f"key file {path}")
    if path.stat().st_mode & stat.S_IROTH:
        log.warning("key file %s is readable by every user of this machine; restrict it with chmod 600", path)
    return key


def _check_key_length(key: bytes, where: str) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise AnonymizationError(f"the key in {where} is shorter than {MIN_KEY_BYTES} characters; use a longer secret")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def pseudonym(key: bytes, kind: str, value: str, length: int = 16) -> str:
    """Keyed, deterministic pseudonym: hex of HMAC-SHA256(key, "kind:value").

    Args:
        key: The anonymization key.
        kind: Name space, e.g. ``"patient"``; the same value in two kinds differs.
        value: The original value.
        length: Number of hex characters (1-64).

    Returns:
        Lower-case hex string of ``length`` characters.

    >>> pseudonym(b"k" * 16, "patient", "12345") == pseudonym(b"k" * 16, "patient", "12345")
    True
    """
    if not 1 <= length <= 2 * hashlib.sha256().digest_size:
        raise ValueError(f"pseudonym length must be 1-64, got {length}")
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:length]


def pseudo_uid(key: bytes, uid: str) -> str:
    """Keyed replacement UID: ``2.25.`` + the first 128 bits of HMAC(key, "uid:" + uid).

    The same UID always maps to the same replacement (references stay consistent
    across files and runs); the result is a valid UID of at most 44 characters.

    Args:
        key: The anonymization key.
        uid: The original UID.

    Returns:
        The replacement UID.
    """
    digest = _hmac(key, UID_HASH_PREFIX + str(uid).strip())[:UID_HASH_BYTES]
    new = UUID_UID_ROOT + str(int.from_bytes(digest, "big"))
    assert len(new) <= MAX_UID_LENGTH
    return new


def date_offset_days(key: bytes, patient_key: str) -> int:
    """Per-patient keyed date offset, in ``[DATE_OFFSET_MIN_DAYS, DATE_OFFSET_MAX_DAYS]``.

    Args:
        key: The anonymization key.
        patient_key: What identifies the patient (its original PatientID).

    Returns:
        A negative number of days, never 0, the same for every call with the same arguments.
    """
    span = DATE_OFFSET_MAX_DAYS - DATE_OFFSET_MIN_DAYS + 1
    value = int.from_bytes(_hmac(key, f"date-offset:{patient_key}")[:8], "big")
    return DATE_OFFSET_MIN_DAYS + value % span
