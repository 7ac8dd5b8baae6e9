"""Input limits of the served model, and the built-in server's checks that enforce them before TensorFlow runs.

`ImageLimits` bound one encoded image; the exported graph checks them itself (trainer_module/image_decoding.py),
so they hold behind `tensorflow_model_server` too, and the built-in server checks them earlier, from the image
headers (PIL reads only the header here, not the pixels), for image inputs and for the images inside serialized
tf.Examples. `RequestLimits` add what only a server can bound: body size, requests in flight, a deadline.
Both are the `serving` section of the pipeline configuration (pipeline/config.py).
"""
from __future__ import annotations

import dataclasses
import io
from typing import Callable, Dict, Mapping, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from PIL import ImageFile
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile

from mammo_tfx import names
from mammo_tfx.options import Options
from mammo_tfx.serving.errors import InvalidArgument

# Where the limits live in the pipeline configuration; error messages name the key to change.
CONFIG_SECTION = "serving"
IMAGE_SECTION = f"{CONFIG_SECTION}.image"


def _require_positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be a positive number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ImageLimits(Options):
    """What one encoded image may be: at most `max_bytes` encoded, `max_pixels` decoded (rows x cols) and
    `max_side` pixels on its longer side. The defaults fit full-field mammograms (a 16-bit 4096x3328 PNG is
    ~25 MB; detectors go up to about 4700x5900) and refuse decompression bombs before any pixel is decoded."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 8192

    def __post_init__(self) -> None:
        _require_positive(self, "max_bytes", "max_pixels", "max_side")
        for name in ("max_bytes", "max_pixels", "max_side"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"ImageLimits.{name} must be an integer, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class RequestLimits(Options):
    """What the built-in server accepts.

    `max_body_bytes` bounds the HTTP body (413 beyond it, the body is not parsed). At most `max_in_flight` predict
    requests are worked on at once; more get 429 with Retry-After. A predict request not answered within
    `request_timeout_s` gets 504; the model call cannot be interrupted, so it runs to its end and keeps its
    in-flight slot until then (abandoned work still counts against the cap, which bounds threads and memory).
    `image` applies to `image_bytes` inputs and to the `image_png` of serialized examples (400 otherwise).
    """

    max_body_bytes: int = 64 * 1024 * 1024
    max_in_flight: int = 4
    request_timeout_s: float = 30.0
    image: ImageLimits = dataclasses.field(default_factory=ImageLimits)

    def __post_init__(self) -> None:
        _require_positive(self, "max_body_bytes", "max_in_flight", "request_timeout_s")


def limit_name(field: str) -> str:
    """The configuration key of an ImageLimits field, as error messages name it."""
    return f"{IMAGE_SECTION}.{field}"


# The PNG and JPEG readers are opened directly: Image.open would apply Pillow's own decompression-bomb limit (an error
# above 179 MP) before the configured one, and its message would quote Pillow's limit beside ours.
_HEADER_READERS: Dict[bytes, Callable[[io.BytesIO], ImageFile.ImageFile]] = {
    b"\x89PNG\r\n\x1a\n": PngImageFile, b"\xff\xd8\xff": JpegImageFile}


def _read_size(data: bytes) -> Tuple[int, int]:
    """Width and height of a PNG or JPEG, from its header only."""
    reader = next((reader for magic, reader in _HEADER_READERS.items() if data.startswith(magic)), None)
    if reader is None:
        raise InvalidArgument("image cannot be decoded: it is neither a PNG nor a JPEG")
    try:
        with reader(io.BytesIO(data)) as image:
            return image.size
    except Exception as error:  # noqa: BLE001 - PIL raises many types for garbage input
        raise InvalidArgument(f"image cannot be decoded: {reader.format} header truncated or corrupt ({error})"
                              ) from error


def check_image(data: bytes, limits: ImageLimits) -> None:
    """Raise InvalidArgument unless `data` is a PNG/JPEG within the limits (the same rules as the graph's)."""
    if not data:
        raise InvalidArgument("image is empty")
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"image of {len(data)} bytes exceeds {limit_name('max_bytes')}={limits.max_bytes}")
    width, height = _read_size(data)
    if max(width, height) > limits.max_side:
        raise InvalidArgument(f"image of {height}x{width} pixels exceeds {limit_name('max_side')}={limits.max_side}")
    if width * height > limits.max_pixels:
        raise InvalidArgument(f"image of {height}x{width} pixels exceeds "
                              f"{limit_name('max_pixels')}={limits.max_pixels}")


def check_example_images(serialized: bytes, limits: ImageLimits) -> None:
    """Raise InvalidArgument unless `serialized` is a tf.Example whose `image_png` values are within the limits."""
    try:
        example = tf.train.Example.FromString(serialized)
    except DecodeError as error:
        raise InvalidArgument(f"not a serialized tf.Example: {error}") from error
    feature = example.features.feature.get(names.IMAGE_PNG)
    if feature is None:
        raise InvalidArgument(f"the tf.Example has no '{names.IMAGE_PNG}' feature")
    for image in feature.bytes_list.value:
        check_image(image, limits)


# Inputs whose values are checked against the image limits before the model runs: encoded images, and serialized
# tf.Examples whose image is checked the same way.
_IMAGE_CHECKS: Dict[str, Callable[[bytes, ImageLimits], None]] = {
    names.IMAGE_BYTES_INPUT: check_image, names.EXAMPLES_INPUT: check_example_images}


def check_image_inputs(inputs: Mapping[str, np.ndarray], limits: ImageLimits) -> None:
    """Raise InvalidArgument unless every value of the image inputs (`image_bytes`, `examples`) of a request is a
    byte string within `limits`; other inputs are left to the signature."""
    for key, array in inputs.items():
        check = _IMAGE_CHECKS.get(key)
        if check is None:
            continue
        for item in np.asarray(array, dtype=object).flat:
            if not isinstance(item, bytes):
                raise InvalidArgument(f"input '{key}' expects byte strings, got {type(item).__name__}")
            check(item, limits)
