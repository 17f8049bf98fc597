from covidct.smk import run_step
from covidct.steps import evaluate

if __name__ == "__main__":
    e = snakemake.params.evaluation  # noqa: F821
    run_step(
        snakemake,  # noqa: F821
        evaluate,
        predictions=snakemake.input.predictions,  # noqa: F821
        split_table=snakemake.input.split,  # noqa: F821
        classifier_sidecar=snakemake.input.classifier,  # noqa: F821
        scorer_sidecar=snakemake.input.scorer,  # noqa: F821
        out_json=snakemake.output.evaluation,  # noqa: F821
        out_roc=snakemake.output.roc,  # noqa: F821
        out_calibration=snakemake.output.calibration,  # noqa: F821
        out_scatter=snakemake.output.scatter,  # noqa: F821
        out_confusion=snakemake.output.confusion,  # noqa: F821
        n_boot=e["bootstrap"],
        seed=e["seed"],
        min_subjects=e["min_subjects"],
        confidence=e["confidence"],
        calibration_bins=e["calibration_bins"],
        demo=snakemake.params.demo,  # noqa: F821
    )
