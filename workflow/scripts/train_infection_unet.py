from covidct.smk import run_step
from covidct.steps import train_infection_unet

if __name__ == "__main__":
    p = dict(snakemake.params.infection)  # noqa: F821
    run_step(
        snakemake,  # noqa: F821
        train_infection_unet,
        sources=snakemake.params.sources,  # noqa: F821
        out_model=snakemake.output.model,  # noqa: F821
        out_metrics=snakemake.output.metrics,  # noqa: F821
        **{k: p[k] for k in ("size", "base_filters", "variants", "epochs", "batch_size", "learning_rate", "patience",
                             "val_fraction", "seed", "augment", "hu_window", "max_slices_per_volume")},
    )
