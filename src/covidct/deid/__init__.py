"""De-identification of CT DICOM series, and its verification.

Implements DICOM PS3.15 Annex E, the Basic Application Level Confidentiality
Profile (table in :mod:`covidct.deid.profile`), with the Retain Longitudinal
Temporal Information with Modified Dates Option (``dates="shift"``, the default:
every date moves by a per-patient keyed offset, so intervals are kept) or without
it (``dates="remove"``). Beyond the table, for safety: every private attribute,
overlay and curve group is removed, every UID outside the DICOM root is replaced
by a keyed ``2.25.`` UID, every person name not handled by the table is emptied.
Pixel data are never decoded: their bytes and the transfer syntax stay as they were.

Pseudonyms, UIDs and date offsets are keyed HMAC-SHA256 values. The key is a
secret of the site (``$COVIDCT_ANON_KEY`` or the file named by ``anonymize.key_file``):
without it nobody can recompute a pseudonym from a real PatientID; with it the
same patient always gets the same pseudonym, UIDs and offset.

Nothing here logs or raises with an original value: messages carry only the
pseudonymous patient id, counts, keywords and file paths.

Typical use::

    key = load_key(config["anonymize"]["key_file"])
    summary = anonymize_series_dir(dicom_dir, out_dir, key, patient="P001")
    report = verify_anonymization(dicom_dir, out_dir, patient="P001")
"""
