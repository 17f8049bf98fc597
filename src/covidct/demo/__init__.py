"""A deterministic synthetic chest CT cohort, written as real DICOM.

The built-in demo cohort lets the whole workflow run without any patient data. Each
patient is a phantom built in mm on a canonical LPS grid (``x`` to the patient's left,
``y`` posterior, ``z`` superior; ``z`` index 0 is the most inferior slice): air, a
patient table, body outline with subcutaneous fat and muscle, ribs, spine, sternum,
mediastinal fat, heart and aorta, two lungs with a branching vessel tree, trachea and
main bronchi, and for COVID-positive patients ground-glass and consolidation lesions
that fill an exact fraction of the lung, so the score is true by construction.

The phantom is written as a real CT series (one file per slice, shuffled file names,
varying orientation sign, slice order, pixel encoding and padding) whose headers carry
realistic but FAKE identifiers, so that the anonymization step has something to remove.
Everything is deterministic per ``PhantomSpec.seed``.

Modules: ``spec`` (what a patient is), ``anatomy`` (the phantom as arrays, ``make_phantom``),
``identities`` (fake identifiers), ``writer`` (DICOM series and truth files), ``cohort`` (the demo
cohort, its sheet, the U-Net's synthetic training set).
"""
