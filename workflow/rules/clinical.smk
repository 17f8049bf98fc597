# Results that clinical software opens (docs/clinical-outputs.md), when `clinical.enabled`: the masks on
# the scan's own grid, a DICOM SEG and a TID 1500 SR built from the anonymized series, their check for
# identifiers; optionally (`pacs.push.enabled`) the push of the verified objects to a research PACS.
if CLINICAL:

    rule native_masks:
        input:
            volume="results/hu/{patient}.nii.gz",
            labels="results/lung_mask/{patient}_labels.nii.gz",
            infection="results/infection_mask/{patient}.nii.gz",
            types="results/infection_mask/{patient}_types.nii.gz",
            infection_info="results/infection_mask/{patient}.json",
            readout="results/severity/{patient}.json",
            lobes=get_lobe_map,
        output:
            lungs="results/native/{patient}/lungs.nii.gz",
            regions="results/native/{patient}/regions.nii.gz",
            infection="results/native/{patient}/infection.nii.gz",
            types="results/native/{patient}/types.nii.gz",
            json="results/native/{patient}/native.json",
        log:
            "results/logs/native_masks/{patient}.log",
        benchmark:
            "results/benchmarks/native_masks/{patient}.tsv"
        params:
            consolidation_above_hu=config["severity"]["consolidation_above_hu"],
        resources:
            # a few float maps of the native volume's size beside the maps themselves
            mem_mb=get_mem_mb(1500, per_input_mb=60),
            runtime=get_runtime(10, per_input_mb=0.5),
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"

    rule write_dicom_seg:
        input:
            dicom="results/anonymized/{patient}",
            hu_info="results/hu/{patient}.json",
            lungs="results/native/{patient}/lungs.nii.gz",
            regions="results/native/{patient}/regions.nii.gz",
            types="results/native/{patient}/types.nii.gz",
            lung_provenance="results/lung_mask/{patient}.json",
            infection_info="results/infection_mask/{patient}.json",
            readout="results/severity/{patient}.json",
            lobe_provenance=get_lobe_provenance,
        output:
            seg="results/dicom/{patient}/seg.dcm",
        log:
            "results/logs/write_dicom_seg/{patient}.log",
        benchmark:
            "results/benchmarks/write_dicom_seg/{patient}.tsv"
        resources:
            mem_mb=get_mem_mb(2000, per_input_mb=20),
            runtime=20,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"

    rule write_dicom_sr:
        input:
            seg="results/dicom/{patient}/seg.dcm",
            dicom="results/anonymized/{patient}",
            hu_info="results/hu/{patient}.json",
            readout="results/severity/{patient}.json",
        output:
            sr="results/dicom/{patient}/sr.dcm",
        log:
            "results/logs/write_dicom_sr/{patient}.log",
        benchmark:
            "results/benchmarks/write_dicom_sr/{patient}.tsv"
        resources:
            mem_mb=get_mem_mb(1000, per_input_mb=5),
            runtime=10,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"

    # The job reads its raw folder from the sheet (as verify_anonymization does); Snakemake sees its keyed hash.
    rule verify_dicom_outputs:
        input:
            dicom="results/anonymized/{patient}",
            seg="results/dicom/{patient}/seg.dcm",
            sr="results/dicom/{patient}/sr.dcm",
        output:
            report="results/dicom/{patient}/verify.json",
        log:
            "results/logs/verify_dicom_outputs/{patient}.log",
        benchmark:
            "results/benchmarks/verify_dicom_outputs/{patient}.tsv"
        params:
            raw_digest=get_raw_dicom_digest,
        resources:
            mem_mb=get_mem_mb(1500),
            runtime=20,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"

    # The native-grid lung labels against the reference, for patients with a lung_reference (as evaluate_lung_mask).
    rule evaluate_native_lung_mask:
        input:
            labels="results/native/{patient}/lungs.nii.gz",
        output:
            json="results/native/{patient}/lung_eval.json",
        log:
            "results/logs/evaluate_native_lung_mask/{patient}.log",
        benchmark:
            "results/benchmarks/evaluate_native_lung_mask/{patient}.tsv"
        params:
            reference_digest=get_lung_reference_digest,
            right_roi=config["lung_eval"]["right_roi"],
            left_roi=config["lung_eval"]["left_roi"],
            lesion_roi=config["lung_eval"]["lesion_roi"],
            contour_shift_mm=config["lung_eval"]["contour_shift_mm"],
        resources:
            mem_mb=get_mem_mb(3000, per_input_mb=60),
            runtime=30,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"


if CLINICAL and PACS_PUSH:

    # Only objects that passed both checks leave: the anonymized series (verify_anonymization) and its
    # SEG and SR (verify_dicom_outputs).
    rule push_to_pacs:
        input:
            dicom="results/anonymized/{patient}",
            seg="results/dicom/{patient}/seg.dcm",
            sr="results/dicom/{patient}/sr.dcm",
            verified="results/verify/{patient}.json",
            dicom_verified="results/dicom/{patient}/verify.json",
        output:
            receipt="results/pacs/{patient}.json",
        log:
            "results/logs/push_to_pacs/{patient}.log",
        params:
            push=config["pacs"]["push"],
        resources:
            mem_mb=get_mem_mb(1500),
            runtime=30,
        conda:
            "../envs/covidct.yaml"
        script:
            "../scripts/step.py"
