from covidct.smk import run_step
from covidct.steps import verify

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        verify,
        raw_dir=None,
        sheet=snakemake.config["patients"],  # noqa: F821  (not a param: renaming the sheet re-runs nothing)
        anon_dir=snakemake.input.dicom,  # noqa: F821
        report_path=snakemake.output.report,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
    )
