"""The decoder output shared by the DICOM, PGM and PNG readers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from mammo_tfx.ingest.records import BadInputError

FULL_RANGE = 65535.0


@dataclass
class DecodedImage:
    """A decoded greyscale image plus the affine map to the full 16-bit range.

    The map is kept separate from the pixels because it is linear and therefore commutes with resizing:
    applying it after the (much smaller) resized image saves a full-resolution pass.
    full16 = clip(pixels * scale + offset, 0, 65535).
    Tags are None when the source has no such information.
    """

    pixels: np.ndarray
    scale: float
    offset: float
    bits_stored: int
    pixel_spacing_mm: Optional[tuple[float, float]] = None
    patient_id: Optional[str] = None
    laterality: Optional[str] = None
    view: Optional[str] = None
    # What the mammogram header rule accepted although absent or unusual (header_rule.HEADER_NOTES); () for PNG/PGM.
    header_notes: tuple[str, ...] = ()
    # Population tags, kept raw here: process.py turns the age into a band, so the age itself never reaches an example.
    age: Optional[str] = None
    manufacturer: Optional[str] = None
    model: Optional[str] = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def full_range_affine(unit_scale: float, unit_offset: float, invert: bool = False) -> tuple[float, float]:
    """(scale, offset) onto [0, 65535] for pixels whose display value in [0, 1] is pixels*unit_scale+unit_offset.

    invert (MONOCHROME1) maps display value u to 1 - u so that bright always means dense tissue.
    """
    if invert:
        return -FULL_RANGE * unit_scale, FULL_RANGE * (1.0 - unit_offset)
    return FULL_RANGE * unit_scale, FULL_RANGE * unit_offset


def to_uint16(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Apply the affine map in float32, clip and round to uint16."""
    mapped = values.astype(np.float32, copy=False) * np.float32(scale) + np.float32(offset)
    np.clip(mapped, 0.0, FULL_RANGE, out=mapped)
    return np.rint(mapped).astype(np.uint16)


def check_source_pixels(path: str, dimensions: str, pixels: int, max_pixels: int) -> None:
    """BadInputError when a header promises more pixels than ingest.max_source_pixels; called before any decoder
    allocates a buffer of that size, so one hostile header cannot exhaust a worker's memory."""
    if pixels > max_pixels:
        raise BadInputError(path, f"header promises {dimensions} = {pixels:,} pixels, more than the limit of "
                                  f"{max_pixels:,} (ingest.max_source_pixels)")
