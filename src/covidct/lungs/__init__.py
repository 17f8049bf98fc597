"""Lung segmentation: a classical threshold backend (CPU, no weights) and the
``lungmask`` R231 U-Net backend (CUDA when available).

Both return a label map on the input grid: 0 background, 1 right lung,
2 left lung (lungmask's convention), 3 lung whose side could not be told.
The lung *mask* used downstream is always ``labels > 0``: binary, never the
label values (the original study multiplied the image by the label map and so
doubled the HU of the left lung).

Modules: ``threshold`` (the classical backend, with ``airways``, ``thorax`` and ``pleural_fill``),
``lungmask`` (R231), ``labels`` (label maps, left/right, volumes), ``qc`` (mask QC flags),
``evaluation`` (against reference contours), ``lobes`` (lungmask's LTRCLobes lobes and the six
geometric zones the severity read-out scores).
"""
