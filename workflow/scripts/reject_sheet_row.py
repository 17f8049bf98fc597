from covidct.errors import CovidctError
from covidct.smk import run_step


def reject(message: str) -> None:
    raise CovidctError(message)


if __name__ == "__main__":
    run_step(snakemake, reject, message=snakemake.params.message)  # noqa: F821
