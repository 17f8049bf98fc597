from covidct.smk import run_step
from covidct.steps import resample

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        resample,
        in_volume=snakemake.input.volume,  # noqa: F821
        out_volume=snakemake.output.volume,  # noqa: F821
        spacing_mm=snakemake.params.spacing_mm,  # noqa: F821
    )
