"""In-graph decoding of served image bytes into the Transform layer's raw input.

Serving accepts PNG (8 or 16 bit) or JPEG. Pixels are brought to the contract's 16-bit range
(8-bit values x 257, so 255 -> 65535; tf.image.convert_image_dtype would use x256), resized to the
working size when needed, and re-encoded as a 16-bit PNG, so the SAME Transform graph used in
training decodes and normalises them.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The IHDR chunk starts right after the signature; its bit-depth byte is at offset 24.
_PNG_BIT_DEPTH_OFFSET = 24
_EIGHT_TO_SIXTEEN_BIT = 257


def _png_to_uint16(encoded: tf.Tensor) -> tf.Tensor:
    bit_depth = tf.io.decode_raw(tf.strings.substr(encoded, _PNG_BIT_DEPTH_OFFSET, 1), tf.uint8)[0]
    return tf.cond(
        tf.equal(bit_depth, 16),
        lambda: tf.io.decode_png(encoded, channels=1, dtype=tf.uint16),
        lambda: tf.cast(tf.io.decode_png(encoded, channels=1, dtype=tf.uint8), tf.uint16) * _EIGHT_TO_SIXTEEN_BIT)


def _jpeg_to_uint16(encoded: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.io.decode_jpeg(encoded, channels=1), tf.uint16) * _EIGHT_TO_SIXTEEN_BIT


def decode_to_uint16(encoded: tf.Tensor) -> tf.Tensor:
    """One PNG/JPEG string -> [H, W, 1] uint16 on the full 16-bit range."""
    is_png = tf.equal(tf.strings.substr(encoded, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
    is_jpeg = tf.io.is_jpeg(encoded)
    supported = tf.debugging.Assert(tf.logical_or(is_png, is_jpeg),
                                    ["image_bytes must be a PNG (8/16-bit) or a JPEG image"])
    with tf.control_dependencies([supported]):
        return tf.cond(is_png, lambda: _png_to_uint16(encoded), lambda: _jpeg_to_uint16(encoded))


def resize_uint16(pixels: tf.Tensor, rows: int, cols: int) -> tf.Tensor:
    """Resizes a [H, W, 1] uint16 image to rows x cols (bicubic, antialiased); identity if already there."""
    def resized() -> tf.Tensor:
        values = tf.image.resize(tf.cast(pixels, tf.float32), [rows, cols], method="bicubic", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(values), 0.0, 65535.0), tf.uint16)

    same_size = tf.reduce_all(tf.equal(tf.shape(pixels)[:2], [rows, cols]))
    return tf.ensure_shape(tf.cond(same_size, lambda: pixels, resized), [rows, cols, 1])


def to_working_png(encoded: tf.Tensor, rows: int, cols: int) -> tf.Tensor:
    """One encoded image -> a 16-bit PNG string at rows x cols."""
    return tf.io.encode_png(resize_uint16(decode_to_uint16(encoded), rows, cols))


def batch_to_working_png(encoded: tf.Tensor, rows: int, cols: int) -> tf.Tensor:
    """[B] encoded images (any supported format and size) -> [B] 16-bit PNGs at rows x cols."""
    return tf.map_fn(lambda one: to_working_png(one, rows, cols), encoded,
                     fn_output_signature=tf.TensorSpec([], tf.string))


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
