"""What a person looks at: figures (``plots``), QC montages of masks (``montage``), the cohort's
distribution (``cohort``) and the metrics page of the Snakemake report (``metrics_page``)."""
