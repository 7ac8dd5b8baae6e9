"""tf.train.Example builder for one scan (feature keys and meanings: docs/contracts.md)."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from PIL import Image


@dataclass(frozen=True)
class ScanFeatures:
    """Everything an example holds; no raw ids or paths by construction."""

    image: np.ndarray  # uint16, working size
    mask: np.ndarray  # uint8 class codes, working size
    label: int
    abnormality_type: str
    pathology: str
    dataset: str
    density: int
    view: str
    laterality: str
    patient_key: str
    image_key: str
    source_split: str
    original_shape: tuple[int, int]
    pixel_spacing_mm: tuple[float, float]
    content_box: tuple[int, int, int, int]
    resize_mode: str
    bits_stored: int
    mask_resized: bool
    mask_complete: bool


def encode_png(pixels: np.ndarray, compress_level: int) -> bytes:
    """Greyscale PNG (16-bit for uint16, 8-bit for uint8)."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG pixels must be uint8 or uint16, got {pixels.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _bytes(value: str | bytes) -> tf.train.Feature:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))


def _ints(*values: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(*values: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def build_example(scan: ScanFeatures, compress_level: int = 1) -> tf.train.Example:
    """The example of one scan."""
    if scan.image.shape != scan.mask.shape:
        raise ValueError(f"image {scan.image.shape} and mask {scan.mask.shape} sizes differ")
    height, width = scan.image.shape
    features = {
        "image_png": _bytes(encode_png(scan.image, compress_level)),
        "mask_png": _bytes(encode_png(scan.mask, compress_level)),
        "label": _ints(scan.label),
        "abnormality_type": _bytes(scan.abnormality_type),
        "pathology": _bytes(scan.pathology),
        "dataset": _bytes(scan.dataset),
        "density": _ints(scan.density),
        "view": _bytes(scan.view),
        "laterality": _bytes(scan.laterality),
        "patient_key": _bytes(scan.patient_key),
        "image_key": _bytes(scan.image_key),
        "source_split": _bytes(scan.source_split),
        "height": _ints(height),
        "width": _ints(width),
        "original_height": _ints(scan.original_shape[0]),
        "original_width": _ints(scan.original_shape[1]),
        "pixel_spacing_mm": _floats(*scan.pixel_spacing_mm),
        "content_box": _ints(*scan.content_box),
        "resize_mode": _bytes(scan.resize_mode),
        "bits_stored": _ints(scan.bits_stored),
        "mask_resized": _ints(scan.mask_resized),
        "mask_complete": _ints(scan.mask_complete),
    }
    return tf.train.Example(features=tf.train.Features(feature=features))
