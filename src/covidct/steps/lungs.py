"""The steps of ``workflow/rules/lungs.smk``: lung masks and lobes of the resampled volume, and their QC
montage."""

from __future__ import annotations

import logging
from pathlib import Path

from covidct import config
from covidct.io import read_json, write_json
from covidct.lungs.lobes import segment_lobes as find_lobes
from covidct.lungs.segment import LungMaskSettings, segment
from covidct.report.montage import lung_qc_title, montage, write_png
from covidct.volume import Volume

log = logging.getLogger(__name__)


def segment_lungs(
    volume: str | Path,
    out_mask: str | Path,
    out_labels: str | Path,
    out_provenance: str | Path,
    patient: str,
    backend: str = config.default("lung_mask.backend"),
    weights: str | None = config.default("lung_mask.weights"),
    force_cpu: bool = config.default("lung_mask.force_cpu"),
    batch_size: int = config.default("lung_mask.batch_size"),
    threshold: dict | None = None,
    threads: int = 1,
) -> dict:
    """Segment the lungs (``covidct.lungs.segment``); write a binary mask, left/right labels and provenance JSON.
    With ``threads`` >= 2 the threshold backend fills the two lungs at once."""
    scan = Volume.read(volume)
    settings = LungMaskSettings(backend, weights, force_cpu, batch_size, threshold or {}, workers=threads)
    lungs = segment(scan, patient, settings)
    scan.like(lungs.mask).write(out_mask)
    scan.like(lungs.labels).write(out_labels)
    write_json(out_provenance, lungs.provenance)
    flags = "; ".join(lungs.provenance["qc"]["flags"]) or "none"
    volume_ml = lungs.provenance.get("lung_volume_ml", 0)
    log.info("patient %s: lungs %.0f mL (%s backend), QC flags: %s", patient, volume_ml, backend, flags)
    return lungs.provenance


def segment_lobes(
    volume: str | Path,
    out_lobes: str | Path,
    out_provenance: str | Path,
    patient: str,
    model: str = "LTRCLobes_R231",
    weights: str | None = None,
    r231_weights: str | None = None,
    force_cpu: bool = False,
    batch_size: int = config.default("lung_mask.batch_size"),
) -> dict:
    """Lobes of one patient from lungmask's LTRCLobes (``model`` LTRCLobes) or its fusion with R231
    (LTRCLobes_R231, the R231 weights of ``lung_mask.weights`` or the hub cache); write the lobe map
    (lungmask's labels: 1 left upper, 2 left lower, 3 right upper, 4 right middle, 5 right lower) and
    its provenance JSON (weights' SHA-256, volume of each lobe)."""
    scan = Volume.read(volume)
    found = find_lobes(scan, patient, model, weights, r231_weights, force_cpu=force_cpu, batch_size=batch_size)
    scan.like(found.lobes).write(out_lobes)
    write_json(out_provenance, found.provenance)
    log.info("patient %s: lobes (%s) %s", patient, model, found.provenance["lobe_volumes_ml"])
    return found.provenance


def qc_montage(
    volume: str | Path,
    labels: str | Path,
    out_png: str | Path,
    patient: str,
    n_slices: int = config.default("qc.n_slices"),
    provenance: str | Path | None = None,
) -> None:
    """Write the QC montage PNG of a patient's lung mask (title: volume, backend, QC flags)."""
    hu, label_map = Volume.read(volume).array, Volume.read(labels).array
    title = lung_qc_title(patient, read_json(provenance) if provenance else None)
    write_png(out_png, montage(hu, label_map, n_slices=n_slices), title=title)
