from covidct.smk import run_step
from covidct.steps import synth_infection_training

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        synth_infection_training,
        out_dir=snakemake.output[0],  # noqa: F821
        n=snakemake.params.n,  # noqa: F821
    )
