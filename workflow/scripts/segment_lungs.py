from covidct.smk import run_step
from covidct.steps import segment_lungs

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        segment_lungs,
        in_volume=snakemake.input.volume,  # noqa: F821
        out_mask=snakemake.output.mask,  # noqa: F821
        out_labels=snakemake.output.labels,  # noqa: F821
        out_provenance=snakemake.output.provenance,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        backend=snakemake.params.backend,  # noqa: F821
        weights=snakemake.params.weights or None,  # noqa: F821
        force_cpu=snakemake.params.force_cpu,  # noqa: F821
        batch_size=snakemake.params.batch_size,  # noqa: F821
        threshold=snakemake.params.threshold,  # noqa: F821
    )
