"""Pixel statistics of a mammogram that move when its acquisition changes: intensity percentiles and mean inside the
breast, and the share of the image the breast takes. The one home of these numbers: ingestion writes them into every
example (process.py) and `mammo-tfx monitor` computes them on the images of served requests (mammo_tfx/monitoring),
so training data and requests are measured alike (docs/monitoring.md)."""
from __future__ import annotations

import dataclasses
import io
from typing import Dict

import numpy as np
from PIL import Image

from mammo_tfx import names

FULL_RANGE = 65535.0
# Statistics are taken on the image shrunk to this longer side (box filter): the same numbers whatever size an image
# arrives at (a full-size request, a working-size example), and a bounded cost.
STATISTICS_SIDE = 256
# Breast = pixels above this share of the image's brightest pixel. Background is black on display images (ingestion
# maps MONOCHROME1 and padding to black), so a low cut separates breast from air without a segmentation model.
BREAST_THRESHOLD = 0.1
PERCENTILES = (5.0, 50.0, 95.0)


@dataclasses.dataclass(frozen=True)
class ImageStatistics:
    """Intensities in [0, 1] of the display image (1 = brightest, dense tissue) inside the breast; `breast_fraction`
    the share of the image's pixels that are breast. An image without breast has zeros throughout."""

    intensity_p05: float
    intensity_p50: float
    intensity_p95: float
    intensity_mean: float
    breast_fraction: float

    def as_features(self) -> Dict[str, float]:
        """Feature name (mammo_tfx/names.py) -> value."""
        return {names.INTENSITY_P05: self.intensity_p05, names.INTENSITY_P50: self.intensity_p50,
                names.INTENSITY_P95: self.intensity_p95, names.INTENSITY_MEAN: self.intensity_mean,
                names.BREAST_FRACTION: self.breast_fraction}


def _shrunk(pixels: np.ndarray) -> np.ndarray:
    rows, cols = pixels.shape
    factor = STATISTICS_SIDE / max(rows, cols)
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    if factor < 1.0:
        size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
        image = image.resize(size, Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / np.float32(FULL_RANGE)


def image_statistics(pixels: np.ndarray) -> ImageStatistics:
    """The statistics of a 2-D display image on the full 16-bit range (uint16, or floats in [0, 65535])."""
    if pixels.ndim != 2 or not pixels.size:
        raise ValueError(f"expected a non-empty 2-D image, got shape {pixels.shape}")
    values = _shrunk(pixels)
    peak = float(values.max())
    breast = values > BREAST_THRESHOLD * peak if peak > 0.0 else np.zeros(values.shape, dtype=bool)
    if not breast.any():
        return ImageStatistics(0.0, 0.0, 0.0, 0.0, 0.0)
    inside = values[breast]
    low, median, high = (float(v) for v in np.percentile(inside, PERCENTILES))
    return ImageStatistics(intensity_p05=low, intensity_p50=median, intensity_p95=high,
                           intensity_mean=float(inside.mean()), breast_fraction=float(breast.mean()))


def decode_display_image(encoded: bytes) -> np.ndarray:
    """A served request's PNG or JPEG as the served graph reads it (trainer_module/image_decoding.py): greyscale on
    the full 16-bit range, 8-bit values scaled by 257. Raises ValueError for anything else."""
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image.load()
            pixels = np.asarray(image if image.mode in ("L", "I;16", "I;16B", "I") else image.convert("L"))
    except Exception as error:  # noqa: BLE001 - PIL raises many types for garbage input
        raise ValueError(f"not a decodable PNG or JPEG image ({type(error).__name__}: {error})") from None
    if pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * np.uint16(257)
    return np.clip(pixels, 0, FULL_RANGE).astype(np.uint16)
