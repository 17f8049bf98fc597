"""Every rule's script: runs ``covidct.steps.<rule>`` with the rule's names as arguments (see covidct.smk)."""

from covidct.smk import run_rule

if __name__ == "__main__":
    run_rule(snakemake)  # noqa: F821 (injected by Snakemake)
