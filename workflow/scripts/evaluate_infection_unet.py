from covidct.segmentation import evaluate_folder
from covidct.smk import run_step

if __name__ == "__main__":
    run_step(
        snakemake,  # noqa: F821
        evaluate_folder,
        model_path=snakemake.input.model,  # noqa: F821
        images=snakemake.params.images,  # noqa: F821
        masks=snakemake.params.masks,  # noqa: F821
        out_json=snakemake.output[0],  # noqa: F821
    )
