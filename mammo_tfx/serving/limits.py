"""Request limits and the image check that enforces them before an image reaches the model.

The model's own decoder would accept a tiny PNG that inflates to gigapixels, so image inputs are checked
from their headers (PIL reads only the header here, not the pixels) against byte and pixel limits.
"""
from __future__ import annotations

import dataclasses
import io
import warnings
from typing import FrozenSet

from PIL import Image

from mammo_tfx.serving.errors import InvalidArgument

ACCEPTED_IMAGE_FORMATS = frozenset({"PNG", "JPEG"})


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one request may contain.

    `max_body_bytes` bounds the whole HTTP body (413 beyond it, the body is not parsed). Inputs named in
    `image_input_names` must be PNG or JPEG of at most `max_image_bytes` encoded and `max_image_pixels`
    decoded (400 otherwise). The defaults fit full-field mammograms (a 16-bit 4096x3328 PNG is ~25 MB).
    """

    max_body_bytes: int = 64 * 1024 * 1024
    max_image_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    image_input_names: FrozenSet[str] = frozenset({"image_bytes"})


def check_image(data: bytes, limits: RequestLimits) -> None:
    """Raise InvalidArgument unless `data` is a PNG/JPEG within the limits."""
    if len(data) > limits.max_image_bytes:
        raise InvalidArgument(f"image of {len(data)} bytes exceeds the limit of {limits.max_image_bytes} bytes")
    try:
        with warnings.catch_warnings():
            # PIL warns (and past 2x its own limit raises) on huge images; the explicit pixel check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as error:
        raise InvalidArgument(f"image exceeds the limit of {limits.max_image_pixels} pixels: {error}") from error
    except Exception as error:  # noqa: BLE001 - PIL raises many types for garbage input
        raise InvalidArgument(f"image cannot be decoded: {type(error).__name__}: {error}") from error
    if image_format not in ACCEPTED_IMAGE_FORMATS:
        raise InvalidArgument(f"image format {image_format} is not accepted (PNG or JPEG)")
    if width * height > limits.max_image_pixels:
        raise InvalidArgument(f"image of {height}x{width} pixels exceeds the limit of "
                              f"{limits.max_image_pixels} pixels")
