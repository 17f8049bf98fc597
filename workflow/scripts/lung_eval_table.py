from covidct.smk import run_step
from covidct.steps import lung_eval_table

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        lung_eval_table,
        in_jsons=list(snakemake.input.json),  # noqa: F821
        out_csv=snakemake.output.csv,  # noqa: F821
    )
