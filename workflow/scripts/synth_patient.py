from pathlib import Path

from covidct.smk import run_step
from covidct.steps import synth_patient

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        synth_patient,
        patient_id=snakemake.wildcards.patient,  # noqa: F821
        dicom_dir=Path(snakemake.output.dicom),  # noqa: F821
        truth_dir=Path(snakemake.params.truth_dir),  # noqa: F821
    )
