from covidct.smk import run_step
from covidct.steps import segment_infection

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        segment_infection,
        in_volume=snakemake.input.volume,  # noqa: F821
        in_mask=snakemake.input.mask,  # noqa: F821
        in_labels=snakemake.input.labels,  # noqa: F821
        model=snakemake.input.model,  # noqa: F821
        out_mask=snakemake.output.mask,  # noqa: F821
        out_json=snakemake.output.json,  # noqa: F821
        out_png=snakemake.output.png,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        n_slices=snakemake.params.n_slices,  # noqa: F821
    )
