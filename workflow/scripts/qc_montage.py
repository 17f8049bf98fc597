from covidct.smk import run_step
from covidct.steps import qc_montage

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        qc_montage,
        in_volume=snakemake.input.volume,  # noqa: F821
        in_labels=snakemake.input.labels,  # noqa: F821
        out_png=snakemake.output.png,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        n_slices=snakemake.params.n_slices,  # noqa: F821
        provenance=snakemake.input.provenance,  # noqa: F821
    )
