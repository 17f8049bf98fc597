"""Multi-frame CT (Enhanced CT, Legacy Converted Enhanced CT): where each frame lies and how its
stored values become HU.

One file holds every slice; what a single-frame CT slice says in its own header, a frame says in
its functional groups (PS3.3 C.7.6.16): an item of ``PerFrameFunctionalGroupsSequence`` for the
frame, else the one item of ``SharedFunctionalGroupsSequence``. Read here, per frame:

- ``PlanePositionSequence`` > ImagePositionPatient,
- ``PlaneOrientationSequence`` > ImageOrientationPatient (usually shared),
- ``PixelMeasuresSequence`` > PixelSpacing, SliceThickness,
- ``PixelValueTransformationSequence`` > RescaleSlope, RescaleIntercept (Type 1 in the CT IODs),
- ``CTImageFrameTypeSequence`` > FrameType (a LOCALIZER frame), else the file's ImageType,
- ``FrameContentSequence`` > StackID, InStackPositionNumber.

A frame that lacks one of the first four (in its own item and in the shared one) cannot be placed
in a volume or converted to HU: the file is refused, naming the frame and what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidct.errors import DicomInputError

#: (functional group sequence, attribute, what a message calls it) needed for every frame.
REQUIRED = (
    ("PlanePositionSequence", "ImagePositionPatient", "its position"),
    ("PlaneOrientationSequence", "ImageOrientationPatient", "its orientation"),
    ("PixelMeasuresSequence", "PixelSpacing", "its pixel spacing"),
    ("PixelValueTransformationSequence", "RescaleIntercept", "its HU rescale"),
)


@dataclass
class Frame:
    """One frame of a multi-frame CT file, as a single-frame slice would describe itself."""

    index: int  # 0-based frame number in the file
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    thickness: float | None
    slope: float
    intercept: float
    frame_type: tuple[str, ...]
    stack_id: str
    in_stack_position: int | None


def is_multiframe(ds) -> bool:
    """Whether ``ds`` describes its frames with functional groups (an enhanced multi-frame image)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _item(ds, keyword: str):
    """The first item of sequence ``keyword`` in ``ds``, or None."""
    seq = ds.get(keyword) if ds is not None else None
    return seq[0] if seq else None


def _lookup(per_frame, shared, sequence: str, attribute: str):
    """``attribute`` of functional group ``sequence``: the frame's own item first, then the shared one."""
    for groups in (per_frame, shared):
        group = _item(groups, sequence)
        if group is not None and group.get(attribute) not in (None, ""):
            return group.get(attribute)
    return None


def _upper(values) -> tuple[str, ...]:
    if values in (None, ""):
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(str(v).upper() for v in values)


def frames(ds, path: Path, patient: str | None = None) -> list[Frame]:
    """Per-frame geometry and rescale of an enhanced multi-frame image.

    Args:
        ds: The data set (pixel data not decoded).
        path: Its file, for messages.
        patient: Pseudonymous id, for messages.

    Returns:
        One ``Frame`` per frame, in file order.

    Raises:
        DicomInputError: NumberOfFrames absent or not matching the per-frame groups, or a frame
            without position, orientation, pixel spacing or rescale (named with the sequence).
    """
    try:
        n = int(ds.get("NumberOfFrames") or 0)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise DicomInputError("multi-frame CT image without a valid NumberOfFrames", patient, path)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) not in (0, n):
        raise DicomInputError(
            f"multi-frame CT image has {len(per_frame)} PerFrameFunctionalGroupsSequence items for {n} frames",
            patient,
            path,
        )
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    file_type = _upper(ds.get("ImageType"))
    out = []
    for i in range(n):
        own = per_frame[i] if per_frame else None
        values = {}
        for sequence, attribute, what in REQUIRED:
            value = _lookup(own, shared, sequence, attribute)
            if value is None:
                raise DicomInputError(
                    f"multi-frame CT frame {i + 1} of {n} lacks {what}: no {sequence} > {attribute} in its "
                    "per-frame or the shared functional groups; cannot "
                    + (
                        "convert it to HU" if sequence == "PixelValueTransformationSequence" else "place it in a volume"
                    ),
                    patient,
                    path,
                )
            values[sequence] = value
        slope = _lookup(own, shared, "PixelValueTransformationSequence", "RescaleSlope")
        thickness = _lookup(own, shared, "PixelMeasuresSequence", "SliceThickness")
        frame_type = _upper(_lookup(own, shared, "CTImageFrameTypeSequence", "FrameType")) or file_type
        content = _item(own, "FrameContentSequence")
        in_stack = content.get("InStackPositionNumber") if content is not None else None
        try:
            spacing = values["PixelMeasuresSequence"]
            position = np.array([float(v) for v in values["PlanePositionSequence"]])
            orientation = np.array([float(v) for v in values["PlaneOrientationSequence"]])
            if position.shape != (3,) or orientation.shape != (6,):
                raise ValueError(f"{position.size} position and {orientation.size} orientation values")
            out.append(
                Frame(
                    index=i,
                    position=position,
                    orientation=orientation,
                    pixel_spacing=(float(spacing[0]), float(spacing[1])),
                    thickness=float(thickness) if thickness not in (None, "") else None,
                    slope=float(slope) if slope not in (None, "") else 1.0,
                    intercept=float(values["PixelValueTransformationSequence"]),
                    frame_type=frame_type,
                    stack_id=str(content.get("StackID", "") or "") if content is not None else "",
                    in_stack_position=int(in_stack) if in_stack not in (None, "") else None,
                )
            )
        except (ValueError, TypeError, IndexError) as exc:
            raise DicomInputError(
                f"multi-frame CT frame {i + 1} of {n}: malformed functional group values ({exc})", patient, path
            ) from None
    return out
