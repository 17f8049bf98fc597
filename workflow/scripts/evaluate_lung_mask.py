from covidct.smk import run_step
from covidct.steps import evaluate_lung_mask

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        evaluate_lung_mask,
        in_labels=snakemake.input.labels,  # noqa: F821
        out_json=snakemake.output.json,  # noqa: F821
        patient=snakemake.wildcards.patient,  # noqa: F821
        reference=None,
        sheet=snakemake.config["patients"],  # noqa: F821  (not a param: renaming the sheet re-runs nothing)
        right_roi=snakemake.params.right_roi or None,  # noqa: F821
        left_roi=snakemake.params.left_roi or None,  # noqa: F821
        lesion_roi=snakemake.params.lesion_roi,  # noqa: F821
        contour_shift_mm=snakemake.params.contour_shift_mm,  # noqa: F821
    )
