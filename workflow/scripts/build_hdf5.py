from covidct.smk import run_step
from covidct.steps import build_datasets

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        build_datasets,
        npys=list(snakemake.input.npy),  # noqa: F821
        patients=snakemake.params.patients,  # noqa: F821
        out_train=snakemake.output.train,  # noqa: F821
        out_val=snakemake.output.val,  # noqa: F821
        out_test=snakemake.output.test,  # noqa: F821
        out_split=snakemake.output.split,  # noqa: F821
        val_fraction=snakemake.params.val_fraction,  # noqa: F821
        test_fraction=snakemake.params.test_fraction,  # noqa: F821
        salt=snakemake.params.salt,  # noqa: F821
        shape=tuple(snakemake.params.shape),  # noqa: F821
        hu_window=tuple(snakemake.params.hu_window),  # noqa: F821
        dtype=snakemake.params.dtype,  # noqa: F821
    )
