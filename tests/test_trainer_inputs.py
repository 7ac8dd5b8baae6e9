"""Input pipeline (TFX and plain TFRecord sources), augmentation, batch balancing, and learning on
a toy problem through the real Transform layer."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils, standard_artifacts

from mammo_tfx import names
from pipeline.config import load_config
from tests.conftest import whole_image_examples, write_split
from trainer_module import inputs
from trainer_module.augmentation import augment_images, batch_balance_weights, batch_seed
from trainer_module.backbones import backbone_spec
from trainer_module.hparams import AugmentationConfig, TrainingStep, TrainScope
from trainer_module.patch_model import build_patch_model
from trainer_module.patch_trainer import patch_metrics
from trainer_module.schedule import FitTarget, compile_for_step, run_schedule


def _split(uri: str, split: str) -> list[str]:
    return [os.path.join(uri, f"Split-{split}", "*")]


def _data_accessor_factory(examples_uri: str):
    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return tfxio_utils.get_tf_dataset_factory_from_artifact([examples], [])


class _DataAccessor:
    """The one field of TFX's DataAccessor that the input functions use, built by TFX's own factory."""

    def __init__(self, examples_uri: str) -> None:
        self.tf_dataset_factory = _data_accessor_factory(examples_uri)


@pytest.mark.e2e
def test_training_batches_are_transformed_augmented_and_balanced(toy_data):
    output = tft.TFTransformOutput(toy_data["transform_graph"])
    hparams = load_config("test").patch_training
    dataset = inputs.tfrecord_input_fn(_split(toy_data["patches"], "train"), output,
                                       inputs.patch_example_spec(32), hparams, training=True)
    images, labels, weights = next(iter(dataset))
    assert images.shape == (8, 32, 32, 1) and images.dtype == tf.float32
    assert labels.shape == (8, 5)
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0)
    np.testing.assert_allclose(float(tf.reduce_mean(weights)), 1.0, rtol=1e-5)


@pytest.mark.e2e
def test_the_training_seed_fixes_the_shuffled_and_augmented_batches(toy_data):
    output = tft.TFTransformOutput(toy_data["transform_graph"])
    hparams = load_config("test").patch_training
    files = _split(toy_data["patches"], "train")

    def first_batches(seed: int) -> list[np.ndarray]:
        dataset = inputs.tfx_input_fn(files, _DataAccessor(toy_data["patches"]), output, inputs.patch_example_spec(32),
                                      dataclasses.replace(hparams, seed=seed), training=True, max_batches=3)
        return [images.numpy() for images, _, _ in dataset]

    first = first_batches(5)
    for one, again in zip(first, first_batches(5)):
        np.testing.assert_array_equal(one, again)
    assert not all(np.array_equal(one, other) for one, other in zip(first, first_batches(6)))


@pytest.mark.e2e
def test_tfx_and_tfrecord_sources_give_the_same_evaluation_batches(toy_data):
    output = tft.TFTransformOutput(toy_data["transform_graph"])
    hparams = load_config("test").image_training
    spec = inputs.whole_image_example_spec(hparams.image_size)
    files = _split(toy_data["images"], "eval")
    from_tfx = list(inputs.tfx_input_fn(files, _DataAccessor(toy_data["images"]), output, spec, hparams,
                                        training=False))
    from_tfrecord = list(inputs.tfrecord_input_fn(files, output, spec, hparams, training=False))
    assert len(from_tfx) == len(from_tfrecord) == 4  # 16 eval images, batch 4, one pass
    for (tfx_images, tfx_labels), (plain_images, plain_labels) in zip(from_tfx, from_tfrecord):
        np.testing.assert_allclose(tfx_images.numpy(), plain_images.numpy())
        np.testing.assert_array_equal(tfx_labels.numpy(), plain_labels.numpy())
    limited = inputs.tfrecord_input_fn(files, output, spec, hparams, training=False, max_batches=2)
    assert len(list(limited)) == 2


@pytest.mark.e2e
def test_wrong_image_size_and_label_range_are_clear_errors(toy_data):
    output = tft.TFTransformOutput(toy_data["transform_graph"])
    hparams = load_config("test").image_training
    files = _split(toy_data["images"], "eval")
    wrong_size = inputs.tfrecord_input_fn(files, output, inputs.whole_image_example_spec((60, 48)), hparams, False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Split-eval.*expected 60x48"):
        next(iter(wrong_size))
    one_class = dataclasses.replace(inputs.whole_image_example_spec((64, 48)), num_classes=1)
    wrong_label = inputs.tfrecord_input_fn(files, output, one_class, hparams, False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label.{0,3} in .*Split-eval.* must be < 1"):
        list(wrong_label)
    with pytest.raises(FileNotFoundError, match="Split-nothing"):
        inputs.tfrecord_input_fn(_split(toy_data["images"], "nothing"), output,
                                 inputs.whole_image_example_spec((64, 48)), hparams, False)


SEED = batch_seed(12345, 0)


def test_flips_give_each_image_or_its_mirror():
    images = tf.constant(np.random.default_rng(0).normal(size=(16, 6, 5, 1)), tf.float32)
    flipped = augment_images(images, AugmentationConfig(horizontal_flip=True), SEED).numpy()
    mirrored = images.numpy()[:, :, ::-1]
    same = np.all(flipped == images.numpy(), axis=(1, 2, 3))
    mirror = np.all(flipped == mirrored, axis=(1, 2, 3))
    assert np.all(same | mirror) and same.any() and mirror.any()


def test_affine_augmentation_keeps_shape_and_constant_images():
    config = AugmentationConfig(rotation_degrees=25.0, shear_radians=0.2, zoom_range=(0.8, 1.2))
    constant = tf.fill([4, 20, 12, 1], 3.5)
    np.testing.assert_allclose(augment_images(constant, config, SEED).numpy(), 3.5, rtol=1e-6)
    ramp = tf.constant(np.tile(np.arange(20, dtype=np.float32)[None, :, None, None], [4, 1, 12, 1]))
    moved = augment_images(ramp, config, SEED).numpy()
    assert moved.shape == (4, 20, 12, 1) and not np.allclose(moved, ramp.numpy())
    # 'nearest' fill: values stay inside the input range.
    assert moved.min() >= 0 and moved.max() <= 19
    identity = augment_images(ramp, AugmentationConfig(), SEED).numpy()
    np.testing.assert_array_equal(identity, ramp.numpy())


def test_augmentation_is_fixed_by_the_batch_seed():
    config = AugmentationConfig(horizontal_flip=True, vertical_flip=True, rotation_degrees=25.0, shear_radians=0.2,
                                zoom_range=(0.8, 1.2))
    ramp = tf.constant(np.random.default_rng(1).normal(size=(8, 20, 12, 1)), tf.float32)
    first = augment_images(ramp, config, batch_seed(7, 3)).numpy()
    np.testing.assert_array_equal(augment_images(ramp, config, batch_seed(7, 3)).numpy(), first)
    assert not np.array_equal(augment_images(ramp, config, batch_seed(8, 3)).numpy(), first)  # another seed
    assert not np.array_equal(augment_images(ramp, config, batch_seed(7, 4)).numpy(), first)  # another batch


def test_batch_balance_weights_are_inverse_class_frequency_with_mean_one():
    labels = tf.one_hot([0, 0, 0, 1], 2)
    np.testing.assert_allclose(batch_balance_weights(labels).numpy(), [2 / 3, 2 / 3, 2 / 3, 2.0], rtol=1e-6)
    np.testing.assert_allclose(batch_balance_weights(tf.one_hot([4, 4], 5)).numpy(), [1.0, 1.0])


@pytest.mark.e2e
def test_loss_goes_down_on_the_toy_patch_problem(toy_data):
    tf.random.set_seed(7)
    output = tft.TFTransformOutput(toy_data["transform_graph"])
    hparams = dataclasses.replace(load_config("test").patch_training, augmentation=AugmentationConfig())
    spec = inputs.patch_example_spec(32)
    train = inputs.tfrecord_input_fn(_split(toy_data["patches"], "train"), output, spec, hparams, training=True)
    evaluation = inputs.tfrecord_input_fn(_split(toy_data["patches"], "eval"), output, spec, hparams,
                                          training=False)
    model = build_patch_model(hparams)
    steps = (TrainingStep(TrainScope.ALL, 3e-3, 4),)
    compile_for_step(model, steps[0], patch_metrics)
    loss_before = model.evaluate(evaluation, verbose=0, return_dict=True)["loss"]
    results = run_schedule(FitTarget(model, train, evaluation), backbone_spec("small", hparams.small_backbone_widths),
                           dataclasses.replace(hparams, schedule=steps), steps_per_epoch=5,
                           metrics_factory=patch_metrics)
    assert results[0].epochs_run == 4
    assert min(results[0].history["val_loss"]) < loss_before
    assert results[0].history["loss"][-1] < results[0].history["loss"][0]


@pytest.mark.e2e
def test_train_views_keep_only_those_views_in_both_sources(toy_data, tmp_path):
    output = tft.TFTransformOutput(toy_data["transform_graph"])
    hparams = dataclasses.replace(load_config("test").image_training, batch_size=3)
    views = ["CC", "MLO", "ML", "AT", "LM", "CC", "MLO", "LMO"]
    examples = whole_image_examples(len(views), seed=5)
    for number, (example, view) in enumerate(zip(examples, views)):
        example.features.feature[names.VIEW].bytes_list.value.append(view.encode())
        example.features.feature[names.LABEL].int64_list.value[0] = number  # labels tell the examples apart
    uri = str(tmp_path / "examples")
    write_split(uri, "eval", examples)
    files = _split(uri, "eval")
    spec = dataclasses.replace(inputs.whole_image_example_spec(hparams.image_size, ("CC", "MLO")), num_classes=8)
    kept = {"CC": [0, 5], "MLO": [1, 6]}
    for dataset in (inputs.tfrecord_input_fn(files, output, spec, hparams, training=False, views=spec.train_views),
                    inputs.tfx_input_fn(files, _DataAccessor(uri), output, spec, hparams, training=False,
                                        views=spec.train_views)):
        batches = list(dataset)
        assert [len(labels) for _, labels in batches] == [3, 1]  # re-batched after the filter
        labels = sorted(int(np.argmax(row)) for _, batch_labels in batches for row in batch_labels.numpy())
        assert labels == sorted(kept["CC"] + kept["MLO"])
    every_view = inputs.tfrecord_input_fn(files, output, spec, hparams, training=False)
    assert sum(len(labels) for _, labels in every_view) == len(views)
