import os

from covidct.models.train import train_scorer
from covidct.smk import run_step

if __name__ == "__main__":
    t = dict(snakemake.params.train)  # noqa: F821
    extra = t.pop("scorer", {})
    run_step(
        snakemake,  # noqa: F821
        train_scorer,
        train_h5=snakemake.input.train,  # noqa: F821
        val_h5=snakemake.input.val,  # noqa: F821
        out_model=snakemake.output.model,  # noqa: F821
        out_history=snakemake.output.history,  # noqa: F821
        out_metrics=snakemake.output.metrics,  # noqa: F821
        plot_dir=os.path.dirname(snakemake.output.training),  # noqa: F821
        **t,
        **extra,
    )
