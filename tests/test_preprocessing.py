"""Tests of trainer_module.preprocessing with a real tft_beam analysis on tiny 16-bit PNGs."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

# Accessed through the module at call time: TFX's Transform executor reloads the module of its preprocessing_fn
# (tfx.utils.import_utils), and Beam pickles classes by reference, so names bound at import time could be stale
# when pipeline tests ran earlier in the same process.
from trainer_module import preprocessing

RAW_FEATURE_SPEC = {
    "image_png": tf.io.FixedLenFeature([1], tf.string),
    # An unrelated feature, to show the function ignores everything but image_png.
    "label": tf.io.FixedLenFeature([1], tf.int64),
}


def _png16(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(pixels[..., None], tf.uint16)).numpy()


def _random_scans(count: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 65536, size=(height, width), dtype=np.uint16) for _ in range(count)]


def _analyze_and_transform(scans: list[np.ndarray], options: "preprocessing.TransformOptions", temp_dir: str):
    raw_data = [{"image_png": [_png16(scan)], "label": [index % 2]}
                for index, scan in enumerate(scans)]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(RAW_FEATURE_SPEC))
    with tft_beam.Context(temp_dir=os.path.join(temp_dir, "tft_tmp"), force_tf_compat_v1=False):
        (transformed, _), transform_fn = (
            (raw_data, metadata)
            | tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing.preprocessing_fn(inputs, options.to_dict())))
        transform_output_dir = os.path.join(temp_dir, "transform_output")
        _ = transform_fn | tft_beam.WriteTransformFn(transform_output_dir)
    return transformed, transform_output_dir


def _as_dense_image(instance: dict) -> np.ndarray:
    """One transformed instance (ragged encoding) back to an [H, W, 1] array."""
    values = np.asarray(instance["image$ragged_values"], np.float32)
    row_lengths = np.asarray(instance["image$row_lengths_1"])
    assert np.all(row_lengths == row_lengths[0])
    return values.reshape(len(row_lengths), row_lengths[0], 1)


def _transformed_example(instance: dict) -> bytes:
    """Serializes one transformed instance the way Transform materializes ragged features."""
    feature = {
        "image$ragged_values": tf.train.Feature(float_list=tf.train.FloatList(
            value=np.asarray(instance["image$ragged_values"]).ravel())),
        "image$row_lengths_1": tf.train.Feature(int64_list=tf.train.Int64List(
            value=np.asarray(instance["image$row_lengths_1"]).ravel())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_options_round_trip_and_validation() -> None:
    options = preprocessing.TransformOptions(rescale=0.5, equalize_hist=True)
    assert preprocessing.TransformOptions.from_dict(options.to_dict()) == options
    assert preprocessing.TransformOptions.from_dict(None) == preprocessing.TransformOptions()
    assert preprocessing.TransformOptions().rescale == pytest.approx(0.003891, abs=1e-6)
    with pytest.raises(ValueError, match="unknown TransformOptions key"):
        preprocessing.TransformOptions.from_dict({"rescal": 1.0})
    with pytest.raises(ValueError, match="rescale"):
        preprocessing.TransformOptions(rescale=0.0)
    with pytest.raises(TypeError, match="equalize_hist"):
        preprocessing.TransformOptions(equalize_hist="yes")


@pytest.mark.e2e
def test_mean_comes_from_data_and_layer_applies_to_other_sizes(tmp_path) -> None:
    scans = _random_scans(count=5, height=12, width=10, seed=3)
    transformed, output_dir = _analyze_and_transform(
        scans, preprocessing.TransformOptions(), str(tmp_path))

    rescaled = np.stack([scan.astype(np.float64) * preprocessing.DEFAULT_RESCALE for scan in scans])
    expected_mean = rescaled.mean()
    images = np.stack([_as_dense_image(instance) for instance in transformed])
    assert images.shape == (5, 12, 10, 1)
    # centred = rescaled - mean for every pixel, so the analyser's mean is recovered exactly.
    recovered_means = rescaled[..., None] - images
    np.testing.assert_allclose(recovered_means, expected_mean, rtol=0, atol=1e-3)
    assert abs(images.mean()) < 1e-3

    # The written transform graph, applied to patch-sized examples of a different size.
    tf_transform_output = tft.TFTransformOutput(output_dir)
    image_spec = tf_transform_output.transformed_feature_spec()["image"]
    assert set(tf_transform_output.transformed_feature_spec()) == {"image"}
    assert isinstance(image_spec, tf.io.RaggedFeature) and image_spec.dtype == tf.float32
    # Materialized transformed examples parse back to the same dense image.
    parsed = tf.io.parse_example(
        [_transformed_example(instance) for instance in transformed[:2]],
        tf_transform_output.transformed_feature_spec())
    np.testing.assert_allclose(preprocessing.dense_image(parsed).numpy(), images[:2], atol=1e-6)
    layer = tf_transform_output.transform_features_layer()
    patches = _random_scans(count=3, height=6, width=4, seed=9)
    raw_batch = {"image_png": tf.constant([[_png16(patch)] for patch in patches])}
    patch_images = preprocessing.dense_image(layer(raw_batch))
    assert patch_images.dtype == tf.float32
    assert patch_images.shape == (3, 6, 4, 1)
    expected = np.stack([p.astype(np.float64) * preprocessing.DEFAULT_RESCALE for p in patches])[..., None]
    np.testing.assert_allclose(patch_images.numpy(), expected - expected_mean, atol=1e-3)


def test_equalize_hist_and_batch_input_shapes() -> None:
    # A ramp of 4 grey levels on the 0-255 scale: equalisation stretches it to 0, 85, 170, 255.
    grey_levels = np.array([[10, 20], [30, 40]], dtype=np.float64)
    pixels = (grey_levels * 257).astype(np.uint16)
    png = _png16(pixels)
    options = preprocessing.TransformOptions(equalize_hist=True)
    for batch in (tf.constant([png, png]), tf.constant([[png], [png]])):
        images = preprocessing.scaled_images(batch, options)
        assert images.shape == (2, 2, 2, 1)
        np.testing.assert_array_equal(images.numpy()[0, ..., 0], [[0, 85], [170, 255]])
    constant_png = _png16(np.full((3, 3), 50 * 257, np.uint16))
    constant = preprocessing.scaled_images(tf.constant([constant_png]), options)
    np.testing.assert_array_equal(constant.numpy(), 50.0)


def test_missing_or_misshapen_image_feature_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="image_png"):
        preprocessing.preprocessing_fn({"label": tf.constant([[1]], tf.int64)}, {})
    with pytest.raises(ValueError, match=r"\[batch\] or \[batch, 1\]"):
        preprocessing.scaled_images(tf.constant([["a", "b"]]), preprocessing.TransformOptions())
