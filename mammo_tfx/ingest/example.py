"""tf.train.Example builder for one scan (feature keys: mammo_tfx/names.py; meanings: docs/contracts.md)."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from PIL import Image

from mammo_tfx import names
from mammo_tfx.ingest.image_statistics import ImageStatistics


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
    breast_key: str
    exam_key: str
    source_split: str
    original_shape: tuple[int, int]
    pixel_spacing_mm: tuple[float, float]
    content_box: tuple[int, int, int, int]
    resize_mode: str
    bits_stored: int
    mask_resized: bool
    mask_complete: bool
    age_group: str
    site: str
    device: str
    implant: str
    image_statistics: ImageStatistics
    photometric_interpretation: str


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
        names.IMAGE_PNG: _bytes(encode_png(scan.image, compress_level)),
        names.MASK_PNG: _bytes(encode_png(scan.mask, compress_level)),
        names.LABEL: _ints(scan.label),
        names.ABNORMALITY_TYPE: _bytes(scan.abnormality_type),
        names.PATHOLOGY: _bytes(scan.pathology),
        names.DATASET: _bytes(scan.dataset),
        names.DENSITY: _ints(scan.density),
        names.VIEW: _bytes(scan.view),
        names.LATERALITY: _bytes(scan.laterality),
        names.PATIENT_KEY: _bytes(scan.patient_key),
        names.IMAGE_KEY: _bytes(scan.image_key),
        names.BREAST_KEY: _bytes(scan.breast_key),
        names.EXAM_KEY: _bytes(scan.exam_key),
        names.SOURCE_SPLIT: _bytes(scan.source_split),
        names.HEIGHT: _ints(height),
        names.WIDTH: _ints(width),
        names.ORIGINAL_HEIGHT: _ints(scan.original_shape[0]),
        names.ORIGINAL_WIDTH: _ints(scan.original_shape[1]),
        names.PIXEL_SPACING_MM: _floats(*scan.pixel_spacing_mm),
        names.CONTENT_BOX: _ints(*scan.content_box),
        names.RESIZE_MODE: _bytes(scan.resize_mode),
        names.BITS_STORED: _ints(scan.bits_stored),
        names.MASK_RESIZED: _ints(scan.mask_resized),
        names.MASK_COMPLETE: _ints(scan.mask_complete),
        names.AGE_GROUP: _bytes(scan.age_group),
        names.SITE: _bytes(scan.site),
        names.DEVICE: _bytes(scan.device),
        names.IMPLANT: _bytes(scan.implant),
        names.PHOTOMETRIC_INTERPRETATION: _bytes(scan.photometric_interpretation),
        **{name: _floats(value) for name, value in scan.image_statistics.as_features().items()},
    }
    return tf.train.Example(features=tf.train.Features(feature=features))
