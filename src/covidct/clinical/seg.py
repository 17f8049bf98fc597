"""DICOM Segmentation (SEG) of the native-grid masks, built with highdicom from the anonymized series.

One binary SEG per patient, one frame per source slice that a segment touches, each frame referencing
its source CT instance (``ReferencedSOPInstanceUID``) and carrying that slice's position. Segments,
each with coded property category and type (and a laterality modifier where the type is not sided):

- right lung, left lung (SCT 39607008 "Lung" + SCT 24028007 "Right" / 7771000 "Left"; category
  SCT 123037004 "Anatomical Structure"), as the lung mask SEGs of the Imaging Data Commons do;
- the five lobes (SCT 45653009 "Upper lobe of lung", 72481006 "Middle lobe of right lung", 90572001
  "Lower lobe of lung", with the laterality modifier) when the read-out scored lobes, else the six
  zones (SCT 281392002 / 281393007 / 281394001 "Upper / Middle / Lower zone of lung" + laterality):
  the regions the read-out scored, so that the SR can reference the segment each score comes from;
- ground-glass opacity (DCM 112120, CID 6102/6104) and consolidation (SCT 95436008 "Lung
  consolidation"), category SCT 49755003 "Morphologically Abnormal Structure".

Every segment names its algorithm (name, version, family, and the SHA-256 of the model weights where
a model made it). The SEG takes the patient and study module of the anonymized series (pseudonymous
values only), its dates are the series' (shifted) dates, and its UIDs are derived from the series'
UID and the masks' content, so that a re-run on the same input writes the same object.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from covidct import __version__
from covidct.deid.dataset import DUMMY_DA, DUMMY_TM
from covidct.dicom.files import is_hidden, list_files
from covidct.errors import CovidctError

#: Where the UIDs of covidct's derived objects come from: ``2.25.`` + 128 bits of a SHA-256.
DERIVED_UID_ROOT = "2.25."


#: Series numbers of the derived series (high, to sort after the scanner's own).
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 9001, 9002


#: What every derived object says made it.
MANUFACTURER, MODEL_NAME = "covidct", "covidct pipeline"


def coded(value: str, scheme: str, meaning: str):
    """A highdicom ``CodedConcept``."""
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def segment_codes() -> dict[str, object]:
    """The coded concepts of the segments (built on first use: highdicom is imported lazily)."""
    return {
        "anatomy": coded("123037004", "SCT", "Anatomical Structure"),
        "abnormal": coded(
            codes.SCT.MorphologicallyAbnormalStructure.value, "SCT", "Morphologically Abnormal Structure"
        ),
        "lung": coded(codes.SCT.Lung.value, "SCT", "Lung"),
        "right": coded(codes.SCT.Right.value, "SCT", "Right"),
        "left": coded(codes.SCT.Left.value, "SCT", "Left"),
        "upper_lobe": coded(codes.SCT.UpperLobeOfLung.value, "SCT", "Upper lobe of lung"),
        "middle_lobe_right": coded(codes.SCT.MiddleLobeOfRightLung.value, "SCT", "Middle lobe of right lung"),
        "lower_lobe": coded(codes.SCT.LowerLobeOfLung.value, "SCT", "Lower lobe of lung"),
        "upper_zone": coded(codes.SCT.UpperZoneOfLung.value, "SCT", "Upper zone of lung"),
        "middle_zone": coded(codes.SCT.MiddleZoneOfLung.value, "SCT", "Middle zone of lung"),
        "lower_zone": coded(codes.SCT.LowerZoneOfLung.value, "SCT", "Lower zone of lung"),
        "ggo": coded(codes.DCM.GroundGlassOpacity.value, "DCM", "Ground glass opacity"),
        "consolidation": coded("95436008", "SCT", "Lung consolidation"),
    }


@dataclass(frozen=True)
class SegmentSpec:
    """One segment: which native map and value it is, and how it is coded.

    Attributes:
        key: Short stable name (``right_lung``, ``RUL``, ``RUZ``, ``ggo`` ...), what the SR looks up.
        label: SegmentLabel (for people).
        source: The native map it comes from: ``lungs``, ``regions`` or ``types``.
        value: Its value in that map.
        category: Key of its property category in ``segment_codes()``.
        type: Key of its property type.
        modifier: Key of the laterality modifier, or None.
        algorithm: Key of the algorithm that made it (``lungs``, ``regions``, ``types``).
    """

    key: str
    label: str
    source: str
    value: int
    category: str
    type: str
    modifier: str | None
    algorithm: str


LUNG_SEGMENTS = (
    SegmentSpec("right_lung", "Right lung", "lungs", 1, "anatomy", "lung", "right", "lungs"),
    SegmentSpec("left_lung", "Left lung", "lungs", 2, "anatomy", "lung", "left", "lungs"),
    SegmentSpec("lung_side_unknown", "Lung (side not told)", "lungs", 3, "anatomy", "lung", None, "lungs"),
)


#: Lobes in lungmask's codes (``covidct.lungs.lobes``), zones in the read-out's zone codes.
REGION_SEGMENTS = {
    "lobes": (
        SegmentSpec("RUL", "Right upper lobe", "regions", 3, "anatomy", "upper_lobe", "right", "regions"),
        SegmentSpec("RML", "Right middle lobe", "regions", 4, "anatomy", "middle_lobe_right", None, "regions"),
        SegmentSpec("RLL", "Right lower lobe", "regions", 5, "anatomy", "lower_lobe", "right", "regions"),
        SegmentSpec("LUL", "Left upper lobe", "regions", 1, "anatomy", "upper_lobe", "left", "regions"),
        SegmentSpec("LLL", "Left lower lobe", "regions", 2, "anatomy", "lower_lobe", "left", "regions"),
    ),
    "zones": (
        SegmentSpec("RUZ", "Right upper zone", "regions", 1, "anatomy", "upper_zone", "right", "regions"),
        SegmentSpec("RMZ", "Right middle zone", "regions", 2, "anatomy", "middle_zone", "right", "regions"),
        SegmentSpec("RLZ", "Right lower zone", "regions", 3, "anatomy", "lower_zone", "right", "regions"),
        SegmentSpec("LUZ", "Left upper zone", "regions", 4, "anatomy", "upper_zone", "left", "regions"),
        SegmentSpec("LMZ", "Left middle zone", "regions", 5, "anatomy", "middle_zone", "left", "regions"),
        SegmentSpec("LLZ", "Left lower zone", "regions", 6, "anatomy", "lower_zone", "left", "regions"),
    ),
}


TYPE_SEGMENTS = (
    SegmentSpec("ggo", "Ground-glass opacity", "types", 1, "abnormal", "ggo", None, "types"),
    SegmentSpec("consolidation", "Consolidation", "types", 2, "abnormal", "consolidation", None, "types"),
)


@dataclass(frozen=True)
class Algorithm:
    """How a map was made, for the SEG's algorithm identification.

    Attributes:
        name: AlgorithmName.
        version: AlgorithmVersion.
        family: ``ai`` (a trained model) or ``image_processing``.
        parameters: AlgorithmParameters (e.g. ``{"weights_sha256": ...}``).
    """

    name: str
    version: str
    family: str
    parameters: dict[str, str]


def derived_uid(*parts: str) -> str:
    """A UID from the SHA-256 of ``parts`` (``2.25.`` and 128 bits, as a UUID-derived UID).

    >>> derived_uid("a", "b") == derived_uid("a", "b") != derived_uid("a", "c")
    True
    >>> len(derived_uid("x")) <= 64
    True
    """
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()[:16]
    return DERIVED_UID_ROOT + str(int.from_bytes(digest, "big"))


def read_series(dicom_dir: str | Path, series_uid: str, patient: str) -> list[Dataset]:
    """The instances of one series in an (anonymized) folder, headers only.

    Raises:
        CovidctError: none of the series, or a multi-frame image (not supported as a SEG source here).
    """
    import pydicom

    folder = Path(dicom_dir)
    out = []
    for path in list_files(folder):
        if is_hidden(path, folder):
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(ds.get("SeriesInstanceUID", "")) != series_uid:
            continue
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise CovidctError("the chosen series is multi-frame: no SEG/SR is written for it", patient, path)
        out.append(ds)
    if not out:
        raise CovidctError("no instance of the HU volume's series in the anonymized folder", patient, folder)
    return out


def order_by_slice(instances: list[Dataset], reference, patient: str) -> list[Dataset]:
    """The instances in the order of ``reference``'s slices (the HU volume): one per slice, found by
    its ImagePositionPatient, which must sit on a slice's first voxel (within 0.01 voxel).

    Raises:
        CovidctError: a slice without an instance, two instances on one slice, or one off the grid.
    """
    n = reference.GetSize()[2]
    slots: list[Dataset | None] = [None] * n
    for ds in instances:
        i, j, k = reference.TransformPhysicalPointToContinuousIndex([float(v) for v in ds.ImagePositionPatient])
        kk = int(round(k))
        if abs(i) > 0.01 or abs(j) > 0.01 or abs(k - kk) > 0.01 or not 0 <= kk < n:
            raise CovidctError(
                f"instance {ds.get('InstanceNumber', '?')} does not lie on a slice of the HU volume", patient
            )
        if slots[kk] is not None:
            raise CovidctError(f"two instances of the series lie on slice {kk} of the HU volume", patient)
        slots[kk] = ds
    missing = [k for k, ds in enumerate(slots) if ds is None]
    if missing:
        raise CovidctError(f"{len(missing)} slice(s) of the HU volume have no instance in the series", patient)
    return slots  # type: ignore[return-value]


def _description(spec: SegmentSpec, number: int, algorithm: Algorithm, series_uid: str):
    import highdicom as hd

    c = segment_codes()
    family = codes.cid7162.ArtificialIntelligence if algorithm.family == "ai" else codes.DCM.ImageProcessing
    ident = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=family, version=algorithm.version, parameters=algorithm.parameters or None
    )
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=spec.label,
        segmented_property_category=c[spec.category],
        segmented_property_type=c[spec.type],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=ident,
        tracking_uid=derived_uid("segment", series_uid, spec.key),
        tracking_id=spec.key,
    )
    if spec.modifier:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [c[spec.modifier]]
    return desc


def segments_present(maps: dict[str, np.ndarray], scheme: str) -> list[SegmentSpec]:
    """The segments with at least one voxel, in SEG order (lungs, regions, lesion types)."""
    specs = LUNG_SEGMENTS + REGION_SEGMENTS[scheme] + TYPE_SEGMENTS
    return [s for s in specs if maps.get(s.source) is not None and np.any(maps[s.source] == s.value)]


def copy_deidentification(source: Dataset, target: Dataset) -> None:
    """Mark ``target`` de-identified as ``source`` is (PatientIdentityRemoved, method, options, the
    dates flag), and give it the source's (shifted) date and time: a derived object holds no real
    date and no date of its own making. Where the anonymizer emptied them (dates removed, times
    emptied), the anonymizer's dummy values (a Type 1 content date and time cannot be empty)."""
    for keyword in (
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    ):
        if keyword in source:
            setattr(target, keyword, source[keyword].value)
    date = str(source.get("SeriesDate", "") or source.get("StudyDate", "") or "") or DUMMY_DA
    time = str(source.get("SeriesTime", "") or source.get("StudyTime", "") or "") or DUMMY_TM
    for keyword in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
        if keyword in target or keyword == "ContentDate":
            setattr(target, keyword, date)
    for keyword in ("ContentTime", "SeriesTime", "InstanceCreationTime"):
        if keyword in target or keyword == "ContentTime":
            setattr(target, keyword, time)
    for item in target.get("ContributingEquipmentSequence", []):  # highdicom stamps the time of writing
        if "ContributionDateTime" in item:
            del item.ContributionDateTime


def build_seg(
    instances: list[Dataset],
    maps: dict[str, np.ndarray],
    scheme: str,
    algorithms: dict[str, Algorithm],
    software_version: str,
    patient: str,
):
    """The SEG of one patient's native maps.

    Args:
        instances: The series' instances in the native volume's slice order (``order_by_slice``).
        maps: ``lungs`` (1 right, 2 left, 3 side unknown), ``regions`` (lobe or zone codes),
            ``types`` (1 ground-glass, 2 consolidation): uint8 (z, y, x) on the native grid.
        scheme: ``lobes`` or ``zones`` (which codes ``regions`` holds).
        algorithms: ``lungs``, ``regions``, ``types`` -> how each map was made.
        software_version: covidct's version.
        patient: Pseudonymous id, for messages.

    Returns:
        ``(seg, specs)``: the highdicom Segmentation and the segments in it (segment number = index + 1).
    """
    import highdicom as hd

    specs = segments_present(maps, scheme)
    if not specs:
        raise CovidctError("every mask is empty: no SEG", patient)
    shape = maps["lungs"].shape
    if shape[0] != len(instances) or shape[1:] != (int(instances[0].Rows), int(instances[0].Columns)):
        raise CovidctError(f"the native maps {shape} do not match the series' slices", patient)
    pixels = np.zeros(shape + (len(specs),), np.uint8)
    digest = hashlib.sha256(scheme.encode())
    for n, spec in enumerate(specs):
        pixels[..., n] = maps[spec.source] == spec.value
        digest.update(spec.key.encode() + np.packbits(pixels[..., n]).tobytes())
    first = instances[0]
    content = digest.hexdigest()
    seg = hd.seg.Segmentation(
        source_images=instances,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _description(s, n + 1, algorithms[s.algorithm], str(first.SeriesInstanceUID)) for n, s in enumerate(specs)
        ],
        series_instance_uid=derived_uid("seg-series", str(first.SeriesInstanceUID)),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=derived_uid("seg", str(first.SeriesInstanceUID), content, software_version),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=software_version,
        device_serial_number="0",
        series_description="covidct lungs, regions, lesions",
        content_label="COVIDCT",
        content_description=f"lungs, {scheme}, ground-glass, consolidation",
    )
    copy_deidentification(first, seg)
    dimensions = derived_uid("dimensions", str(seg.SOPInstanceUID))  # highdicom draws a random one
    for item in (*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = dimensions
    return seg, specs


def frames_by_instance(seg) -> dict[str, dict[int, np.ndarray]]:
    """What a SEG holds, read back with pydicom only: referenced SOP Instance UID -> segment number ->
    that frame's binary pixels (bit-unpacked)."""
    rows, cols = int(seg.Rows), int(seg.Columns)
    pixels = np.asarray(seg.pixel_array)
    if pixels.ndim == 2:
        pixels = pixels[None]
    out: dict[str, dict[int, np.ndarray]] = {}
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        out.setdefault(source, {})[segment] = frame.reshape(rows, cols).astype(bool)
    return out


def algorithms(lung_provenance: dict, infection_info: dict, readout: dict, lobe_provenance: dict | None) -> dict:
    """How each native map was made (``lungs``, ``regions``, ``types``), from the steps' JSONs: the
    lung mask's provenance, the infection step's JSON, the read-out and (lobes) the lobe provenance."""

    def sha(value) -> dict[str, str]:
        return {"weights_sha256": str(value)} if value else {}

    backend = lung_provenance.get("backend", "threshold")
    lungs = (
        Algorithm(
            "lungmask R231",
            str(lung_provenance.get("versions", {}).get("lungmask", "")) or "unknown",
            "ai",
            sha(lung_provenance.get("weights_sha256")),
        )
        if backend == "lungmask"
        else Algorithm("covidct threshold lung mask", __version__, "image_processing", {})
    )
    if readout["scheme"] == "lobes" and lobe_provenance:
        regions = Algorithm(
            f"lungmask {lobe_provenance.get('model', 'LTRCLobes')}",
            str(lobe_provenance.get("versions", {}).get("lungmask", "")) or "unknown",
            "ai",
            sha(lobe_provenance.get("weights_sha256")),
        )
    else:
        regions = Algorithm(
            "covidct geometric zones (thirds of each lung's height)", __version__, "image_processing", {}
        )
    params = {"lesion_types": str(readout.get("lesion_types", ""))}
    params.update(sha(infection_info.get("infection_unet_sha256")))
    types = Algorithm("covidct infection U-Net", __version__, "ai", params)
    return {"lungs": lungs, "regions": regions, "types": types}


def specs_of(seg) -> list[SegmentSpec]:
    """The segments of a SEG written by ``build_seg``, in segment-number order (found by their
    tracking ID, the spec's key)."""
    known = {s.key: s for s in LUNG_SEGMENTS + TYPE_SEGMENTS + tuple(x for v in REGION_SEGMENTS.values() for x in v)}
    out = []
    for item in seg.SegmentSequence:
        key = str(item.get("TrackingID", ""))
        if key not in known:
            raise CovidctError(f"segment {item.SegmentNumber} of the SEG is not one covidct writes ({key!r})")
        out.append(known[key])
    return out
