"""covidct: chest CT DICOM to COVID-19 classifier and lung-severity scorer.

The library behind the Snakemake workflow and the ``covidct`` command line.
Heavy frameworks (TensorFlow, torch) are imported only inside the steps that
need them, so that every per-patient job starts in well under a second.
"""

__version__ = "0.1.0"
