"""In-graph decoding of served image bytes into the Transform layer's raw input.

Serving accepts PNG (8 or 16 bit) or JPEG. Pixels are brought to the contract's 16-bit range
(8-bit values x 257, so 255 -> 65535; tf.image.convert_image_dtype would use x256), brought to the
working size when needed as ingestion's resize mode did (stretched, or scaled and padded), and re-encoded as a
16-bit PNG, so the SAME Transform graph used in training decodes and normalises them. Before any pixel is decoded,
each image is checked against the export's `ImageLimits` (bytes, then format, then the size its header declares), so
a decompression bomb is refused in the graph itself, under `tensorflow_model_server` too.
"""
from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from mammo_tfx.serving.limits import ImageLimits, limit_name
from mammo_tfx.names import PAD, RESIZE_MODES, STRETCH

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The IHDR chunk follows the signature: length (4 bytes), type "IHDR" (4), width (4, big-endian), height (4),
# bit depth (1), colour type, compression, filter, interlace (1 each), CRC (4): 33 bytes in all.
_PNG_IHDR_TYPE_OFFSET = 12
_PNG_IHDR = b"IHDR"
_PNG_WIDTH_OFFSET = 16
_PNG_HEIGHT_OFFSET = 20
_PNG_BIT_DEPTH_OFFSET = 24
_PNG_HEADER_BYTES = 33
_EIGHT_TO_SIXTEEN_BIT = 257
_FORMAT_MESSAGE = "image must be a PNG (8/16-bit) or a JPEG image"


def _is_png(encoded: tf.Tensor) -> tf.Tensor:
    return tf.equal(tf.strings.substr(encoded, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)


def _png_head(encoded: tf.Tensor) -> tf.Tensor:
    """The first 33 bytes, zero-padded when the input is shorter, so reading any header field never fails."""
    head = tf.strings.substr(encoded, 0, _PNG_HEADER_BYTES)
    return tf.strings.substr(tf.strings.join([head, b"\0" * _PNG_HEADER_BYTES]), 0, _PNG_HEADER_BYTES)


def _big_endian_uint32(header: tf.Tensor, offset: int) -> tf.Tensor:
    digits = tf.cast(header[offset:offset + 4], tf.int64)
    return ((digits[0] * 256 + digits[1]) * 256 + digits[2]) * 256 + digits[3]


def _declared_size(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(rows, cols) as the header declares them (int64): PNG IHDR, JPEG SOF; no pixel is decoded."""
    def png_size() -> tf.Tensor:
        header = tf.io.decode_raw(_png_head(encoded), tf.uint8)
        return tf.stack([_big_endian_uint32(header, _PNG_HEIGHT_OFFSET), _big_endian_uint32(header, _PNG_WIDTH_OFFSET)])

    def jpeg_size() -> tf.Tensor:
        return tf.image.extract_jpeg_shape(encoded, output_type=tf.int64)[:2]

    size = tf.cond(_is_png(encoded), png_size, jpeg_size)
    return size[0], size[1]


def _one_after_another(checks: list[Callable[[], tf.Operation]]) -> tf.Operation:
    """Runs the checks in order: a check's inputs are computed only once the previous checks have passed."""
    done: list[tf.Operation] = []
    for check in checks:
        with tf.control_dependencies(done):
            done = [check()]
    return done[0]


def checked_image(encoded: tf.Tensor, limits: ImageLimits) -> tf.Tensor:
    """`encoded` once it has passed the limits, all checked before any pixel is decoded and each only once the
    previous ones passed. A failure is an INVALID_ARGUMENT error naming the limit (TF Serving answers 400)."""
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    size_message = "image of {}x{} pixels exceeds "

    def declared_size_checks() -> list[Callable[[], tf.Operation]]:
        rows, cols = _declared_size(encoded)
        return [
            lambda: tf.debugging.Assert(tf.maximum(rows, cols) <= limits.max_side, [tf.strings.format(
                size_message + limit_name("max_side") + f"={limits.max_side}", [rows, cols])]),
            # After the side check, so rows x cols cannot overflow.
            lambda: tf.debugging.Assert(rows * cols <= limits.max_pixels, [tf.strings.format(
                size_message + limit_name("max_pixels") + f"={limits.max_pixels}", [rows, cols])]),
            lambda: tf.debugging.Assert(tf.minimum(rows, cols) > 0, ["image header declares no pixels"]),
        ]

    header_checks = _one_after_another([
        lambda: tf.debugging.Assert(length > 0, ["image is empty"]),
        lambda: tf.debugging.Assert(length <= limits.max_bytes, [tf.strings.format(
            "image of {} bytes exceeds " + limit_name("max_bytes") + f"={limits.max_bytes}", [length])]),
        lambda: tf.debugging.Assert(tf.logical_or(_is_png(encoded), tf.io.is_jpeg(encoded)), [_FORMAT_MESSAGE]),
        lambda: tf.debugging.Assert(tf.logical_or(tf.logical_not(_is_png(encoded)), tf.logical_and(
            length >= _PNG_HEADER_BYTES,
            tf.equal(tf.strings.substr(_png_head(encoded), _PNG_IHDR_TYPE_OFFSET, len(_PNG_IHDR)), _PNG_IHDR))),
            ["truncated or malformed PNG header (no complete IHDR chunk)"]),
    ])
    with tf.control_dependencies([header_checks]):
        size_checks = _one_after_another(declared_size_checks())
    with tf.control_dependencies([size_checks]):
        return tf.identity(encoded)


def _png_to_uint16(encoded: tf.Tensor) -> tf.Tensor:
    bit_depth = tf.io.decode_raw(tf.strings.substr(encoded, _PNG_BIT_DEPTH_OFFSET, 1), tf.uint8)[0]
    return tf.cond(
        tf.equal(bit_depth, 16),
        lambda: tf.io.decode_png(encoded, channels=1, dtype=tf.uint16),
        lambda: tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint8), tf.uint16) * _EIGHT_TO_SIXTEEN_BIT)


def _jpeg_to_uint16(encoded: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.io.decode_jpeg(encoded, channels=1), tf.uint16) * _EIGHT_TO_SIXTEEN_BIT


def decode_to_uint16(encoded: tf.Tensor, limits: ImageLimits) -> tf.Tensor:
    """One PNG/JPEG string within `limits` -> [H, W, 1] uint16 on the full 16-bit range."""
    checked = checked_image(encoded, limits)
    return tf.cond(_is_png(checked), lambda: _png_to_uint16(checked), lambda: _jpeg_to_uint16(checked))


def resize_uint16(pixels: tf.Tensor, rows: int, cols: int) -> tf.Tensor:
    """Resizes a [H, W, 1] uint16 image to rows x cols (bicubic, antialiased); identity if already there."""
    return tf.ensure_shape(_resized(pixels, tf.constant([rows, cols], tf.int32)), [rows, cols, 1])


def _resized(pixels: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    def resized() -> tf.Tensor:
        values = tf.image.resize(tf.cast(pixels, tf.float32), size, method="bicubic", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(values), 0.0, 65535.0), tf.uint16)

    return tf.cond(tf.reduce_all(tf.equal(tf.shape(pixels)[:2], size)), lambda: pixels, resized)


def pad_uint16(pixels: tf.Tensor, rows: int, cols: int) -> tf.Tensor:
    """Ingestion's `pad` mode in the graph (mammo_tfx/ingest/resize.py `content_size`, `place_content`, and
    mammo_tfx/ingest/orientation.py `breast_side`): one scale factor that fits the image inside rows x cols, the
    content at the top against the side its breast touches (the half with more signal; left on a tie), zeros on the
    other side and below. An image already at rows x cols is left as it is."""
    shape = tf.cast(tf.shape(pixels)[:2], tf.float64)
    factor = tf.minimum(rows / shape[0], cols / shape[1])
    # tf.round rounds halves to even, as Python's round does in content_size.
    content_rows = tf.cast(tf.clip_by_value(tf.round(shape[0] * factor), 1, rows), tf.int32)
    content_cols = tf.cast(tf.clip_by_value(tf.round(shape[1] * factor), 1, cols), tf.int32)
    content = _resized(pixels, tf.stack([content_rows, content_cols]))
    half = content_cols // 2
    signal = tf.cast(content, tf.float64)
    left_signal = tf.reduce_sum(signal[:, :half])
    right_signal = tf.reduce_sum(signal[:, content_cols - half:])
    left = tf.where(left_signal >= right_signal, 0, cols - content_cols)
    padded = tf.pad(content, [[0, rows - content_rows], [left, cols - content_cols - left], [0, 0]])
    return tf.ensure_shape(padded, [rows, cols, 1])


def to_working_size(pixels: tf.Tensor, rows: int, cols: int, resize_mode: str) -> tf.Tensor:
    """A [H, W, 1] uint16 image at rows x cols, brought there as ingestion's `resize_mode` does."""
    if resize_mode == STRETCH:
        return resize_uint16(pixels, rows, cols)
    if resize_mode == PAD:
        return pad_uint16(pixels, rows, cols)
    raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode}")


def to_working_png(encoded: tf.Tensor, rows: int, cols: int, limits: ImageLimits,
                   resize_mode: str = STRETCH) -> tf.Tensor:
    """One encoded image -> a 16-bit PNG string at rows x cols."""
    return tf.io.encode_png(to_working_size(decode_to_uint16(encoded, limits), rows, cols, resize_mode))


def batch_to_working_png(encoded: tf.Tensor, rows: int, cols: int, limits: ImageLimits,
                         resize_mode: str = STRETCH) -> tf.Tensor:
    """[B] encoded images (any supported format, any size within `limits`) -> [B] 16-bit PNGs at rows x cols,
    brought to that size as ingestion's `resize_mode` does.

    One image at a time: an image at the limits decodes to hundreds of MB on its way to the working size, and
    map_fn's default of 10 parallel iterations would multiply that by 10 for one request.
    """
    return tf.map_fn(lambda one: to_working_png(one, rows, cols, limits, resize_mode), encoded,
                     fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)


def as_raw_feature(png: tf.Tensor, feature_spec: Any) -> Any:
    """Shapes a [B] string tensor as the Transform graph's raw feature spec expects it."""
    if isinstance(feature_spec, tf.io.FixedLenFeature):
        if list(feature_spec.shape) == []:
            return png
        if list(feature_spec.shape) == [1]:
            return png[:, None]
    if isinstance(feature_spec, tf.io.VarLenFeature):
        return tf.sparse.from_dense(png[:, None])
    raise ValueError(f"unsupported raw feature spec for image_png: {feature_spec!r}")
