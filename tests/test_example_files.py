"""Reading back ExampleGen splits: the first image of a split (warm-up request, the demo's curl sample)."""
from __future__ import annotations

import os

import pytest
import tensorflow as tf

from mammo_tfx.cli import _write_sample_png
from mammo_tfx.example_files import first_image_png


def _write_split(directory: str, images: list[bytes]) -> None:
    os.makedirs(directory, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(directory, "data_tfrecord-00000-of-00001.gz"), "GZIP") as writer:
        for image in images:
            feature = {"image_png": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_first_image_png_reads_the_first_example_of_the_split(tmp_path):
    _write_split(str(tmp_path / "Split-test"), [b"first-png", b"second-png"])
    assert first_image_png([str(tmp_path / "Split-test" / "*.gz")]) == b"first-png"
    out = _write_sample_png(str(tmp_path), str(tmp_path / "sample.png"))
    assert open(out, "rb").read() == b"first-png"


def test_an_empty_split_is_an_error_naming_the_files(tmp_path):
    _write_split(str(tmp_path / "Split-test"), [])
    pattern = str(tmp_path / "Split-test" / "*.gz")
    with pytest.raises(ValueError, match="no example in the files"):
        first_image_png([pattern])
