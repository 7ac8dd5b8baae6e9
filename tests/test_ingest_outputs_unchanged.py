"""Ingestion's outputs are unchanged by the speed work of session 8 (issue 14): the same pixels, and TFRecords that
every reader still reads (plain gzip, the TFX file names), while the gzip container no longer recompresses PNG."""
from __future__ import annotations

import glob
import gzip
import hashlib
import io
import os
import re

import apache_beam as beam
import numpy as np
import pydicom
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image
from pydicom.pixels import pixel_array
from tfx_bsl.public import tfxio

from mammo_tfx.ingest.tfrecord_files import WriteStoredGzipSplit, write_tfrecord
from mammo_tfx import names
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.real_samples import build_real_sample_folder

# sha256 of the decoded image pixels (little-endian uint16) and mask pixels (uint8) of the examples the code before
# session 8 (main at 7cb28e1) made from these real DICOMs with the default options (1152x896, stretch). Checksums of
# pixels, not of PNG bytes: the PNG encoding may change, the pixels may not.
PIXELS_BEFORE = {
    "neg/1-130.dcm": ("3af313bc4476e63ecc944bbb843448d9a915aed44aa2e81e8790d1c5de1e26d4",
                      "85e614bc2ef17bec493b849dbeea34687ba52d7b1fedc4e5fc3729b0fb059aad"),
    "pos/1-280.dcm": ("530bb72ded50514d897f7cfb068664f8efaff8b8f692aa4354e4f36589060281",
                      "85e614bc2ef17bec493b849dbeea34687ba52d7b1fedc4e5fc3729b0fb059aad"),
}


def _png_pixels(features, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(features[key].bytes_list.value[0])))


def _reference_image(path: str, height: int, width: int) -> np.ndarray:
    """The naive path, independent of the ingestion code: pydicom's own RLE decoder (not pylibjpeg's), float32,
    Pillow's bicubic resize, rounding to uint16. These DICOMs are 16-bit MONOCHROME2 without VOI or rescale, so
    their full-range map is the identity."""
    stored = pixel_array(pydicom.dcmread(path), decoding_plugin="pydicom").astype(np.float32)
    resized = np.asarray(Image.fromarray(stored, mode="F").resize((width, height), Image.Resampling.BICUBIC))
    return np.rint(np.clip(resized, 0, 65535)).astype(np.uint16)


def test_real_dicoms_give_the_same_pixels_as_before_and_as_the_naive_path(tmp_path):
    build_real_sample_folder(tmp_path, per_class=1)
    options = IngestOptions()
    records = {record.record_id: record for record in list_records("folder", str(tmp_path), options)}
    assert sorted(records) == sorted(PIXELS_BEFORE)
    for record_id, (image_sha, mask_sha) in PIXELS_BEFORE.items():
        features = process_record(records[record_id], options).features.feature
        image, mask = _png_pixels(features, names.IMAGE_PNG), _png_pixels(features, names.MASK_PNG)
        assert image.dtype == np.uint16 and mask.dtype == np.uint8
        assert hashlib.sha256(image.astype("<u2").tobytes()).hexdigest() == image_sha, record_id
        assert hashlib.sha256(mask.tobytes()).hexdigest() == mask_sha, record_id
        np.testing.assert_array_equal(image, _reference_image(records[record_id].image_path,
                                                              options.height, options.width))


def _write_split(payloads: list[bytes], split_uri: str) -> None:
    with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--direct_num_workers=1"]) as pipeline:
        _ = pipeline | beam.Create(payloads) | WriteStoredGzipSplit(split_uri)


def test_split_files_are_gzip_tfrecords_that_store_the_png_payload_without_recompressing(tmp_path):
    rng = np.random.default_rng(0)
    # Incompressible payloads, like PNG, and a compressible one: stored either way.
    payloads = [rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes() for _ in range(3)] + [b"\0" * 40_000]
    split_uri = str(tmp_path / "Split-train")
    _write_split(payloads, split_uri)

    files = sorted(glob.glob(os.path.join(split_uri, "*")))
    assert files and all(re.fullmatch(r"data_tfrecord-\d{5}-of-\d{5}\.gz", os.path.basename(f)) for f in files)
    read_by_tf = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read_by_tf) == sorted(payloads)
    # Level 0: the files are larger than the payloads (the TFRecord framing and gzip's headers on top).
    framing = 16 * len(payloads)
    assert sum(os.path.getsize(f) for f in files) >= sum(map(len, payloads)) + framing
    # Plain gzip to any reader: Python's own module decompresses it to the TFRecord framing of the payloads.
    raw = b"".join(gzip.decompress(open(f, "rb").read()) for f in files)
    assert len(raw) == sum(map(len, payloads)) + framing


def test_a_record_is_framed_as_tensorflow_frames_it(tmp_path):
    for payload in (b"", b"x", bytes(range(256)) * 300):
        path = str(tmp_path / f"{len(payload)}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            writer.write(payload)
        framed = io.BytesIO()
        write_tfrecord(framed, payload)
        assert framed.getvalue() == open(path, "rb").read()


def test_tfx_readers_read_the_split_as_they_read_tfx_own_output(tmp_path):
    examples = [tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_PNG: tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes([i]) * 1000])),
        names.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
    })).SerializeToString() for i in range(5)]
    split_uri = str(tmp_path / "Split-eval")
    _write_split(examples, split_uri)

    # The reader TFX's components use (TFXIO, compression detected from the .gz file names).
    source = tfxio.TFExampleRecord(os.path.join(split_uri, "*"), telemetry_descriptors=["test"])
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        records = pipeline | source.RawRecordBeamSource()
        assert_that(records, equal_to(examples))
