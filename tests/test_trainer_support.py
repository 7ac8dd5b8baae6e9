"""Shared test data for the trainer tests: small learnable toy examples in the TFX Examples layout
and a real Transform output built with tft_beam from the project's preprocessing_fn.

Toy problem: malignant whole images carry one bright square at a random place; patch classes are
told apart by a per-class brightness of a centred disc (background has none). Both are learnable
in a few optimiser steps by tiny models.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Iterable

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from mammo_tfx.serving.limits import ImageLimits
from pipeline.config import load_config
from trainer_module.export import export_whole_image_model
from trainer_module.patch_model import PATCH_HEAD_NAME, build_patch_model
from trainer_module.preprocessing import preprocessing_fn
from trainer_module.whole_image_model import IMAGE_HEAD_NAME, build_whole_image_model

IMAGE_ROWS, IMAGE_COLS = 64, 48
PATCH_SIZE = 32
# Same raw shapes as schemas/schema.pbtxt (image_png and label have shape [1]).
RAW_FEATURE_SPEC = {
    "image_png": tf.io.FixedLenFeature([1], tf.string),
    "label": tf.io.FixedLenFeature([1], tf.int64),
}


def encode_png16(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(pixels.astype(np.uint16)[..., None])).numpy()


def toy_whole_image(rng: np.random.Generator, malignant: bool,
                    rows: int = IMAGE_ROWS, cols: int = IMAGE_COLS) -> np.ndarray:
    image = rng.normal(12000, 1500, (rows, cols)).clip(0, 65535)
    if malignant:
        top, left = rng.integers(0, rows - 12), rng.integers(0, cols - 12)
        image[top:top + 12, left:left + 12] = 60000
    return image.astype(np.uint16)


def toy_patch(rng: np.random.Generator, patch_class: int, size: int = PATCH_SIZE) -> np.ndarray:
    patch = rng.normal(10000, 1000, (size, size))
    if patch_class > 0:
        rows, cols = np.mgrid[:size, :size]
        disc = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (size / 3) ** 2
        patch[disc] = 10000 + 12000 * patch_class
    return patch.clip(0, 65535).astype(np.uint16)


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def whole_image_example(pixels: np.ndarray, label: int) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        "image_png": _bytes_feature(encode_png16(pixels)),
        "label": _int_feature(label),
        "dataset": _bytes_feature(b"cbis-ddsm"),
    }))


def patch_example(pixels: np.ndarray, patch_class: int) -> tf.train.Example:
    malignant = patch_class in (1, 3)
    return tf.train.Example(features=tf.train.Features(feature={
        "image_png": _bytes_feature(encode_png16(pixels)),
        "patch_class": _int_feature(patch_class),
        "label": _int_feature(int(malignant)),
        "source_image_key": _bytes_feature(b"0" * 32),
        "dataset": _bytes_feature(b"cbis-ddsm"),
    }))


def write_split(examples_uri: str, split: str, examples: Iterable[tf.train.Example]) -> str:
    """Writes one split as TFX does: <uri>/Split-<split>/data_tfrecord-00000-of-00001.gz (GZIP)."""
    split_dir = os.path.join(examples_uri, f"Split-{split}")
    os.makedirs(split_dir, exist_ok=True)
    path = os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return path


def whole_image_examples(count: int, seed: int, rows: int = IMAGE_ROWS,
                         cols: int = IMAGE_COLS) -> list[tf.train.Example]:
    rng = np.random.default_rng(seed)
    return [whole_image_example(toy_whole_image(rng, i % 2 == 1, rows, cols), i % 2) for i in range(count)]


def patch_examples(count: int, seed: int, size: int = PATCH_SIZE) -> list[tf.train.Example]:
    rng = np.random.default_rng(seed)
    return [patch_example(toy_patch(rng, i % 5, size), i % 5) for i in range(count)]


def build_transform_output(output_dir: str, examples: list[tf.train.Example]) -> tft.TFTransformOutput:
    """Analyzes `examples` with the real preprocessing_fn (featurewise mean) and writes the
    transform graph as the Transform component would."""
    raw = [{"image_png": [e.features.feature["image_png"].bytes_list.value[0]],
            "label": [e.features.feature["label"].int64_list.value[0]]} for e in examples]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_FEATURE_SPEC))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(dir=output_dir), force_tf_compat_v1=False):
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    # The Transform component also records the raw schema next to the graph.
    metadata_io.write_metadata(metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(output_dir)


def _shrink_head(dense_layer) -> None:
    """Untrained trunks on 0..255-scale pixels give logits in the hundreds, i.e. probabilities of exactly 0 or
    1; a smaller output kernel keeps them inside (0, 1), so comparing predictions means something."""
    kernel, bias = dense_layer.get_weights()
    dense_layer.set_weights([kernel * 0.01, bias])


def export_untrained_whole_image_model(work_dir: str, export_dir: str, working_size: tuple[int, int],
                                       image_limits: ImageLimits = ImageLimits()) -> None:
    """trainer_module's real whole-image export of tiny untrained models over a real Transform graph (analysed on
    8 toy images at `working_size`, a multiple of the tiny trunk's stride 8): the serving graph in seconds."""
    transform_dir = os.path.join(work_dir, "transform_graph")
    os.makedirs(transform_dir)
    tf_transform_output = build_transform_output(transform_dir, whole_image_examples(8, 1, *working_size))
    tf.random.set_seed(7)
    patch_hparams = load_config("test").patch_training
    image_hparams = dataclasses.replace(load_config("test").image_training, image_size=working_size)
    trunk = build_patch_model(patch_hparams).get_layer("trunk")
    whole_image_model = build_whole_image_model(trunk, image_hparams)
    patch_model = build_patch_model(patch_hparams)
    _shrink_head(whole_image_model.get_layer(IMAGE_HEAD_NAME))
    _shrink_head(patch_model.get_layer(PATCH_HEAD_NAME))
    export_whole_image_model(whole_image_model, patch_model, image_hparams, patch_hparams, tf_transform_output,
                             export_dir, image_limits)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of the toy Examples artifacts (whole images and patches) and of the transform graph."""
    root = str(tmp_path_factory.mktemp("trainer_data"))
    images_uri, patches_uri = os.path.join(root, "images"), os.path.join(root, "patches")
    train_images = whole_image_examples(48, seed=1)
    write_split(images_uri, "train", train_images)
    write_split(images_uri, "eval", whole_image_examples(16, seed=2))
    write_split(patches_uri, "train", patch_examples(80, seed=3))
    write_split(patches_uri, "eval", patch_examples(20, seed=4))
    transform_dir = os.path.join(root, "transform_graph")
    os.makedirs(transform_dir)
    build_transform_output(transform_dir, train_images)
    return {"images": images_uri, "patches": patches_uri, "transform_graph": transform_dir}
