from covidct.smk import run_step
from covidct.steps import export_npy

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        export_npy,
        in_volume=snakemake.input.volume,  # noqa: F821
        in_mask=snakemake.input.mask,  # noqa: F821
        out_npy=snakemake.output.npy,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        shape=tuple(snakemake.params.shape),  # noqa: F821
        margin_mm=snakemake.params.margin_mm,  # noqa: F821
        hu_window=tuple(snakemake.params.hu_window),  # noqa: F821
    )
