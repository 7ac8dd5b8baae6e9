"""The exported graph's own input limits: the saved signatures called directly, as TF Serving calls them, with
decompression bombs, wrong formats, empty strings, truncated images and oversize examples. Each is refused with
INVALID_ARGUMENT naming the limit, without decoding pixels; good inputs give the model's probabilities."""
from __future__ import annotations

import os
import re
import struct
import threading
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from mammo_tfx.names import (BREAST_ID_INPUT, DEFAULT_SIGNATURE, EXAM_SIGNATURE, EXAMPLES_INPUT, EXAMPLES_SIGNATURE,
                             HEATMAP_SIGNATURE, IMAGE_BYTES_INPUT, IMAGE_PNG)
from mammo_tfx.serving.limits import ImageLimits
from tests.conftest import encode_png16, export_untrained_whole_image_model, toy_whole_image
from trainer_module.inputs import transform_images
from mammo_tfx.serving.model_info import read_model_info

pytestmark = pytest.mark.e2e  # every test calls a SavedModel exported by trainer_module

WORKING_SIZE = (64, 48)
LIMITS = ImageLimits()  # the production defaults: what a pushed model enforces unless configured otherwise
BOMB_SIDE = 15000  # the request: 15000x15000 zeros, a [4, 15000, 15000, 16] float tensor in the trunk
# What refusing a bomb may cost at most, against the 450 MB its 16-bit pixels alone would take (and 14.4 GB of
# trunk activations); a generous bound that only a decode would break.
MAX_RSS_GROWTH_BYTES = 100 * 1024 * 1024
IMAGE_SIGNATURES = (DEFAULT_SIGNATURE, HEATMAP_SIGNATURE, EXAM_SIGNATURE)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_png(rows: int, cols: int, bit_depth: int = 16) -> bytes:
    """A valid greyscale PNG of zeros, compressed row by row (the bomb never exists decoded in this process)."""
    row = bytes(1 + cols * bit_depth // 8)  # filter byte 0, then the row's zero samples
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", cols, rows, bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def with_declared_size(image: bytes, rows: int, cols: int) -> bytes:
    """The same bytes with another size in the header (PNG IHDR or JPEG SOF0): what a crafted bomb looks like."""
    if image.startswith(b"\x89PNG"):
        return image[:16] + struct.pack(">II", cols, rows) + image[24:]
    sof = image.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    return image[:sof + 5] + struct.pack(">HH", rows, cols) + image[sof + 9:]


def example_of(image_png: bytes) -> bytes:
    feature = {IMAGE_PNG: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_png]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _toy_image(seed: int, rows: int = WORKING_SIZE[0], cols: int = WORKING_SIZE[1]) -> np.ndarray:
    return toy_whole_image(np.random.default_rng(seed), malignant=seed % 2 == 0, rows=rows, cols=cols)


def _jpeg(rows: int, cols: int) -> bytes:
    pixels = np.random.default_rng(rows).integers(0, 255, (rows, cols, 1), dtype=np.uint8)
    return tf.io.encode_jpeg(tf.constant(pixels), quality=95).numpy()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guarded_export")
    export_untrained_whole_image_model(str(root), str(root / "export"), WORKING_SIZE, LIMITS)
    return root / "export"


@pytest.fixture(scope="module")
def loaded(export_dir: Path):
    return tf.saved_model.load(str(export_dir))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zero_png(BOMB_SIDE, BOMB_SIDE)


def _call(loaded, signature: str, values: list[bytes]) -> dict:
    key = EXAMPLES_INPUT if signature == EXAMPLES_SIGNATURE else IMAGE_BYTES_INPUT
    inputs = {key: tf.constant(values)}
    if signature == EXAM_SIGNATURE:  # every image its own breast
        inputs[BREAST_ID_INPUT] = tf.constant([f"breast{index}" for index in range(len(values))])
    return {name: tensor.numpy() for name, tensor in loaded.signatures[signature](**inputs).items()}


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Samples this process's resident memory in a thread while the block runs; `growth` is peak minus start."""

    def __enter__(self) -> "_PeakRss":
        self.start = self.peak = _current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _current_rss_bytes())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _current_rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def test_good_images_give_the_models_probabilities_through_every_signature(loaded):
    images = [_toy_image(seed) for seed in range(4)]
    pngs = [encode_png16(image) for image in images]
    from_bytes = _call(loaded, DEFAULT_SIGNATURE, pngs)
    # The reference: the Transform layer and the Keras model, without the signature's checks and resizing.
    transformed = transform_images(loaded.tft_layer, tf.constant(pngs)[:, None])
    expected = loaded.model(transformed, training=False).numpy()[:, 1]
    np.testing.assert_allclose(from_bytes["probability_single"], expected, rtol=1e-5, atol=1e-6)
    from_examples = _call(loaded, EXAMPLES_SIGNATURE, [example_of(png) for png in pngs])
    from_exam = _call(loaded, EXAM_SIGNATURE, pngs)
    for key in ("probability", "score", "probability_single"):
        np.testing.assert_array_equal(from_examples[key], from_bytes[key])
        np.testing.assert_allclose(from_exam[key], from_bytes[key], rtol=1e-6)
    assert _call(loaded, HEATMAP_SIGNATURE, pngs)["heatmap"].shape[0] == 4


def test_examples_at_another_size_are_resized_exactly_as_encoded_images(loaded):
    rows, cols = 2 * WORKING_SIZE[0] + 6, 2 * WORKING_SIZE[1] - 10
    pngs = [encode_png16(_toy_image(seed, rows, cols)) for seed in (5, 6)]
    from_bytes = _call(loaded, DEFAULT_SIGNATURE, pngs)
    from_examples = _call(loaded, EXAMPLES_SIGNATURE, [example_of(png) for png in pngs])
    for key in ("probability", "probability_single"):
        np.testing.assert_array_equal(from_examples[key], from_bytes[key])


def test_8_bit_png_and_jpeg_within_the_limits_are_served(loaded):
    image8 = (_toy_image(7) // 257).astype(np.uint8)[..., None]
    png8 = tf.io.encode_png(tf.constant(image8)).numpy()
    jpeg = tf.io.encode_jpeg(tf.constant(image8), quality=100).numpy()
    probabilities = _call(loaded, DEFAULT_SIGNATURE, [png8, jpeg])["probability"]
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_the_export_records_its_limits(export_dir):
    assert read_model_info(str(export_dir)).image_limits.to_dict() == {
        "max_bytes": 32 * 1024 * 1024, "max_pixels": 40_000_000, "max_side": 8192}


def _ops_run(call: Callable[[], object], log_dir: Path) -> set[str]:
    """The types of the TensorFlow ops that executed during `call` (TensorFlow's profiler records every kernel run
    by the graph executor, as `<node name>:<op type>`), whether or not `call` raised."""
    tf.profiler.experimental.start(str(log_dir))
    try:
        call()
    except tf.errors.InvalidArgumentError:
        pass
    finally:
        tf.profiler.experimental.stop()
    (trace,) = log_dir.rglob("*.xplane.pb")
    space = xplane_pb2.XSpace.FromString(trace.read_bytes())
    return {plane.event_metadata[event.metadata_id].name.rpartition(":")[2]
            for plane in space.planes for line in plane.lines for event in line.events
            if event.metadata_id in plane.event_metadata}


PIXEL_DECODERS = {"DecodePng", "DecodeJpeg", "DecodeImage", "DecodeBmp", "DecodeGif", "DecodeAndCropJpeg"}


@pytest.mark.parametrize("signature", IMAGE_SIGNATURES + (EXAMPLES_SIGNATURE,))
def test_a_decompression_bomb_is_refused_from_its_header_without_decoding_and_in_bounded_memory(
        loaded, bomb, signature, tmp_path):
    value = example_of(bomb) if signature == EXAMPLES_SIGNATURE else bomb
    good = encode_png16(_toy_image(8))
    good_value = example_of(good) if signature == EXAMPLES_SIGNATURE else good
    # The same signature decodes a good image: the profile sees decoders run when they do.
    assert PIXEL_DECODERS & _ops_run(lambda: _call(loaded, signature, [good_value]), tmp_path / "good")
    decoders_run = PIXEL_DECODERS & _ops_run(lambda: _call(loaded, signature, [value]), tmp_path / "bomb")
    assert not decoders_run, f"refusing the bomb ran {sorted(decoders_run)}"
    with _PeakRss() as rss, pytest.raises(tf.errors.InvalidArgumentError) as refused:
        _call(loaded, signature, [value])
    assert f"image of {BOMB_SIDE}x{BOMB_SIDE} pixels exceeds serving.image.max_side=8192" in refused.value.message
    assert rss.growth < MAX_RSS_GROWTH_BYTES, f"refusing the bomb grew RSS by {rss.growth / 2**20:.0f} MB"


def _refusals() -> list[tuple[str, bytes, str]]:
    png = encode_png16(_toy_image(9))
    jpeg = _jpeg(40, 30)
    over_pixels = 6500  # 6500^2 = 42.25 M > 40 M pixels, each side under 8192
    return [
        ("empty string", b"", "image is empty"),
        ("GIF", b"GIF89a" + bytes(64), "must be a PNG (8/16-bit) or a JPEG"),
        ("text", b"this is not an image", "must be a PNG (8/16-bit) or a JPEG"),
        ("PNG signature only", png[:8], "truncated or malformed PNG header"),
        ("PNG cut inside IHDR", png[:20], "truncated or malformed PNG header"),
        ("PNG cut inside the pixels", png[:len(png) // 2], "Invalid PNG data"),
        ("JPEG cut before its frame header", jpeg[:20], "JPEG"),
        ("JPEG cut inside the pixels", jpeg[:len(jpeg) - 200], "JPEG"),
        ("over max_bytes", b"\x89PNG\r\n\x1a\n" + bytes(LIMITS.max_bytes), "exceeds serving.image.max_bytes=33554432"),
        ("PNG over max_pixels", with_declared_size(png, over_pixels, over_pixels),
         f"image of {over_pixels}x{over_pixels} pixels exceeds serving.image.max_pixels=40000000"),
        ("JPEG over max_pixels", with_declared_size(jpeg, over_pixels, over_pixels),
         f"image of {over_pixels}x{over_pixels} pixels exceeds serving.image.max_pixels=40000000"),
        ("PNG over max_side", with_declared_size(png, 20, 9000), "image of 20x9000 pixels exceeds serving.image.max_side"),
        ("JPEG over max_side", with_declared_size(jpeg, 9000, 20),
         "image of 9000x20 pixels exceeds serving.image.max_side"),
        ("PNG declaring no pixels", with_declared_size(png, 0, 48), "declares no pixels"),
        ("PNG declaring 2^32-1 columns", with_declared_size(png, 1, 2**32 - 1), "exceeds serving.image.max_side"),
    ]


REFUSALS = _refusals()


@pytest.mark.parametrize("case", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_unsafe_or_broken_images_are_refused_with_invalid_argument(loaded, case):
    _, value, words = case
    for signature in IMAGE_SIGNATURES:
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(words)):
            _call(loaded, signature, [encode_png16(_toy_image(10)), value])
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(words)):
        _call(loaded, EXAMPLES_SIGNATURE, [example_of(value)])


def test_examples_without_exactly_one_image_are_refused(loaded):
    no_image = tf.train.Example().SerializeToString()
    two = tf.train.Example(features=tf.train.Features(feature={IMAGE_PNG: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[encode_png16(_toy_image(11))] * 2))})).SerializeToString()
    for value in (no_image, two, b"not a serialized example"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=IMAGE_PNG + "|parse|Example"):
            _call(loaded, EXAMPLES_SIGNATURE, [value])
