from covidct.smk import run_step
from covidct.steps import cross_validate

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        cross_validate,
        train_h5=snakemake.input.train,  # noqa: F821
        val_h5=snakemake.input.val,  # noqa: F821
        split_table=snakemake.input.split,  # noqa: F821
        out_json=snakemake.output.cv,  # noqa: F821
        folds=snakemake.params.folds,  # noqa: F821
        salt=snakemake.params.salt,  # noqa: F821
        train=snakemake.params.train,  # noqa: F821
        n_boot=snakemake.params.evaluation["bootstrap"],  # noqa: F821
        min_subjects=snakemake.params.evaluation["min_subjects"],  # noqa: F821
    )
