from covidct.smk import run_step
from covidct.steps import dicom_to_hu

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        dicom_to_hu,
        anon_dir=snakemake.input.dicom,  # noqa: F821
        out_volume=snakemake.output.volume,  # noqa: F821
        out_info=snakemake.output.info,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        series_uid=snakemake.params.series_uid or None,  # noqa: F821
        min_slices=snakemake.params.min_slices,  # noqa: F821
        max_slices=snakemake.params.max_slices,  # noqa: F821
        anonymize_summary=snakemake.input.anonymize_summary,  # noqa: F821
    )
