from covidct.smk import run_step
from covidct.steps import anonymize

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        anonymize,
        raw_dir=None,
        sheet=snakemake.config["patients"],  # noqa: F821  (not a param: renaming the sheet re-runs nothing)
        out_dir=snakemake.output.dicom,  # noqa: F821
        summary_path=snakemake.output.summary,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        key_file=snakemake.params.key_file or None,  # noqa: F821
        allow_demo_key=snakemake.params.allow_demo_key,  # noqa: F821
        dates=snakemake.params.dates,  # noqa: F821
    )
