from covidct.smk import run_step
from covidct.steps import predict

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        predict,
        npys=list(snakemake.input.npy),  # noqa: F821
        patient_ids=snakemake.params.patient_ids,  # noqa: F821
        split_table=snakemake.input.split,  # noqa: F821
        classifier=snakemake.input.classifier,  # noqa: F821
        scorer=snakemake.input.scorer,  # noqa: F821
        out_csv=snakemake.output.csv,  # noqa: F821
        infection=list(snakemake.input.infection),  # noqa: F821
        labeled=snakemake.params.labeled,  # noqa: F821
    )
