"""Results that clinical software opens: the masks on the scan's own grid (``native``), DICOM
Segmentation (``seg``) and a TID 1500 measurement report (``sr``) built from the anonymized series,
the check that they carry no identifier (``covidct.deid.verify.verify_derived``), and the exchange
with a PACS over DICOMweb (``pacs``). ``steps`` holds their rule functions."""
