"""DICOM input: which files of a folder are CT images (``files``), where each image lies
(``series``), how its pixels decode and become Hounsfield units (``volume``, ``codecs``,
``enhanced`` for multi-frame CT), and reference contours (``rtstruct``)."""
