import os

from covidct.smk import run_step
from covidct.steps import summarize

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        summarize,
        evaluation=snakemake.input.evaluation,  # noqa: F821
        classifier_metrics=snakemake.input.classifier,  # noqa: F821
        scorer_metrics=snakemake.input.scorer,  # noqa: F821
        infection_metrics=snakemake.input.infection,  # noqa: F821
        cross_validation=snakemake.input.get("cross_validation"),  # noqa: F821
        split_table=snakemake.input.split,  # noqa: F821
        n_unlabeled=snakemake.params.n_unlabeled,  # noqa: F821
        out_html=snakemake.output.metrics,  # noqa: F821
        out_cohort=snakemake.output.cohort,  # noqa: F821
        plot_dir=os.path.dirname(snakemake.output.label),  # noqa: F821
    )
