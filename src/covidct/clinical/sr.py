"""The severity read-out as a DICOM Comprehensive 3D SR: a TID 1500 Measurement Report (highdicom.sr).

One measurement group (TID 1411, volumetric ROI) per SEG segment the read-out measured, each
referencing that segment of the patient's SEG:

- right lung, left lung: volume (mL), PO and PHO of that lung (%);
- each lobe or zone: volume (mL), infected percent and the 0-5 score (Pan et al.);
- ground-glass opacity, consolidation: volume (mL) and percent of the lung volume;

and one group (TID 1501) for the whole scan, which no single segment covers: lung volume, PO, PHO,
the CTSS (lobes, 0-25) or the zone score (zones, 0-30). Volume is SCT 118565006; the read-out's own
measures (PO, PHO, percent infected, scores) have no standard code and are coded in the private
scheme ``99COVIDCT``, which the SR declares (Coding Scheme Identification). Every value is the
read-out JSON's (``results/severity/<patient>.json``), computed on the isotropic analysis grid, as
each group's algorithm parameters say.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from covidct.clinical.seg import (
    MANUFACTURER,
    MODEL_NAME,
    SR_SERIES_NUMBER,
    coded,
    copy_deidentification,
    derived_uid,
    segment_codes,
)
from covidct.errors import CovidctError

#: DCM 112039 Tracking Identifier.
TRACKING_IDENTIFIER = "112039"


#: The private coding scheme of the read-out's measures.
SCHEME = "99COVIDCT"
SCHEME_NAME = "covidct severity read-out measures"


#: name -> (code value, meaning) of the read-out's measures in SCHEME.
MEASURES = {
    "po": ("PO", "Percentage of opacity"),
    "pho": ("PHO", "Percentage of high opacity"),
    "infected_percent": ("INFPCT", "Percent of region infected"),
    "score": ("REGSCORE", "Region severity score (0-5)"),
    "ctss": ("CTSS", "CT severity score (0-25)"),
    "zone_score": ("ZONESCORE", "Zone severity score (0-30)"),
    "percent_of_lung": ("PCTLUNG", "Percent of lung volume"),
}


def measure(name: str):
    """The coded concept of one of the read-out's measures."""
    value, meaning = MEASURES[name]
    return coded(value, SCHEME, meaning)


def _units():
    return {
        "ml": coded("mL", "UCUM", "milliliter"),
        "percent": coded(codes.UCUM.Percent.value, "UCUM", "Percent"),
        "score": coded(codes.UCUM.NoUnits.value, "UCUM", "no units"),
    }


def _group(hd, seg, number: int, spec, items, algorithm, source_series: str):
    """A TID 1411 group referencing segment ``number`` of ``seg`` with ``items`` (name, value, unit)."""
    c = segment_codes()
    sites = [hd.sr.FindingSite(c[spec.type], laterality=c[spec.modifier] if spec.modifier else None)]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid("track", seg.SOPInstanceUID, spec.key), identifier=spec.key
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(source_series),
        ),
        finding_type=c[spec.type],
        finding_sites=sites,
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=n, value=float(v), unit=u) for n, v, u in items],
    )


def build_sr(seg, specs, instances: list[Dataset], readout: dict, software_version: str, patient: str):
    """The measurement report of one read-out, referencing the segments of ``seg``.

    Args:
        seg: The patient's SEG (``covidct.clinical.seg.build_seg``).
        specs: Its segments in order (segment number = index + 1).
        instances: The CT instances the SEG was made on (the SR's evidence, with the SEG).
        readout: The read-out JSON (``results/severity/<patient>.json``).
        software_version: covidct's version.
        patient: Pseudonymous id, for messages.

    Returns:
        The highdicom ``Comprehensive3DSR``.
    """
    import highdicom as hd

    u = _units()
    volume = coded(codes.SCT.Volume.value, "SCT", "Volume")
    numbers = {s.key: n + 1 for n, s in enumerate(specs)}
    by_key = {s.key: s for s in specs}
    series = str(instances[0].SeriesInstanceUID)
    algorithm = hd.sr.AlgorithmIdentification(
        name="covidct severity read-out",
        version=software_version,
        parameters=[f"measured on the isotropic {readout.get('grid_mm', 1.5)} mm grid"],
    )
    groups = []
    for side in ("right", "left"):
        key = f"{side}_lung"
        lung = readout["lungs"][side]
        if key in numbers:
            items = [(volume, lung["volume_ml"], u["ml"]), (measure("po"), lung["po"], u["percent"])]
            items.append((measure("pho"), lung["pho"], u["percent"]))
            groups.append(_group(hd, seg, numbers[key], by_key[key], items, algorithm, series))
    for region in readout["regions"]:
        if region["name"] not in numbers:
            continue  # a region without lung voxels on the native grid has no segment
        items = [
            (volume, region["volume_ml"], u["ml"]),
            (measure("infected_percent"), region["infected_percent"], u["percent"]),
            (measure("score"), region["score"], u["score"]),
        ]
        groups.append(_group(hd, seg, numbers[region["name"]], by_key[region["name"]], items, algorithm, series))
    for key, name in (("ggo", "ggo"), ("consolidation", "consolidation")):
        if key in numbers:
            items = [(volume, readout[f"{name}_ml"], u["ml"])]
            items.append((measure("percent_of_lung"), readout[f"{name}_percent"], u["percent"]))
            groups.append(_group(hd, seg, numbers[key], by_key[key], items, algorithm, series))
    total = "ctss" if readout.get("ctss") is not None else "zone_score"
    if readout.get(total) is None:
        raise CovidctError("the read-out has neither a CTSS nor a zone score", patient)
    whole = [
        (volume, readout["lung_volume_ml"], u["ml"]),
        (measure("po"), readout["po"], u["percent"]),
        (measure("pho"), readout["pho"], u["percent"]),
        (measure(total), readout[total], u["score"]),
    ]
    for key in ("ggo", "consolidation"):
        if key not in numbers:  # no segment to hang it on: the scan's group carries it
            whole.append((measure("percent_of_lung"), readout[f"{key}_percent"], u["percent"]))
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid("track", seg.SOPInstanceUID, "scan"), identifier="scan"
            ),
            finding_type=coded(codes.SCT.Lung.value, "SCT", "Lung"),
            algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=n, value=float(v), unit=un) for n, v, un in whole],
        )
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", MANUFACTURER),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME,
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=coded("24627-2", "LN", "CT Chest"),
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    first = instances[0]
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg, *instances],
        content=report,
        series_instance_uid=derived_uid("sr-series", series),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=derived_uid(
            "sr", seg.SOPInstanceUID, repr(sorted(readout.items(), key=str)), software_version
        ),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="covidct severity read-out",
    )
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = "covidct project"
    sr.CodingSchemeIdentificationSequence = [item]
    copy_deidentification(first, sr)
    return sr


def _tracking_id(item) -> str | None:
    """The Tracking Identifier (DCM 112039) among a container's direct children, if any."""
    for child in item.get("ContentSequence", []):
        if child.ValueType == "TEXT" and child.ConceptNameCodeSequence[0].CodeValue == TRACKING_IDENTIFIER:
            return str(child.TextValue)
    return None


def measurements(sr) -> dict[tuple[str, str], float]:
    """Every numeric measurement of an SR read back with pydicom: (group tracking identifier, concept
    code value) -> value. The scan's group is ``scan``."""
    out: dict[tuple[str, str], float] = {}

    def walk(items, group):
        for item in items:
            if item.ValueType == "NUM":
                out[(group, str(item.ConceptNameCodeSequence[0].CodeValue))] = float(
                    item.MeasuredValueSequence[0].NumericValue
                )
            if "ContentSequence" in item:
                walk(item.ContentSequence, _tracking_id(item) or group)

    walk(sr.ContentSequence, "")
    return out


def referenced_segments(sr) -> dict[str, tuple[str, int]]:
    """Tracking identifier -> (referenced SEG SOP Instance UID, segment number) of each TID 1411 group."""
    out = {}

    def walk(items):
        for item in items:
            if "ContentSequence" not in item:
                continue
            ident = _tracking_id(item)
            ref = next(
                (i for i in item.ContentSequence if i.ValueType == "IMAGE" and "ReferencedSOPSequence" in i), None
            )
            if ident and ref is not None and "ReferencedSegmentNumber" in ref.ReferencedSOPSequence[0]:
                sop = ref.ReferencedSOPSequence[0]
                out[ident] = (str(sop.ReferencedSOPInstanceUID), int(sop.ReferencedSegmentNumber))
            walk(item.ContentSequence)

    walk(sr.ContentSequence)
    return out
