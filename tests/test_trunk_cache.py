"""Whole-image 'new_layers' steps on cached trunk features: the head shares the model's layers, the features are
those of every (image, flip) pair, and training on them changes the head only."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from pipeline.config import load_config
from trainer_module import inputs
from trainer_module.backbones import TRUNK_NAME, backbone_spec
from trainer_module.hparams import AugmentationConfig, TrainingStep, TrainScope
from trainer_module.image_trainer import image_metrics
from trainer_module.patch_model import build_patch_model
from trainer_module.schedule import FitTarget, run_schedule, set_trainable_scope
from trainer_module.trunk_cache import CachedTrunkFeatures, compute_trunk_features, flip_variants
from trainer_module.whole_image_model import build_whole_image_model, head_on_trunk_features

SPEC = backbone_spec("small", load_config("test").patch_training.small_backbone_widths)


def _tiny_model(**image_changes):
    hparams = dataclasses.replace(load_config("test").image_training, **image_changes)
    trunk = build_patch_model(load_config("test").patch_training).get_layer(TRUNK_NAME)
    return build_whole_image_model(trunk, hparams), hparams


def test_the_head_model_shares_the_layers_after_the_trunk():
    model, hparams = _tiny_model(dropout=0.3)
    head = head_on_trunk_features(model, hparams)
    images = np.random.default_rng(0).normal(size=(3, 64, 48, 1)).astype("float32")
    features = model.get_layer(TRUNK_NAME)(np.repeat(images, 3, axis=-1), training=False)
    np.testing.assert_allclose(head(features, training=False), model(images, training=False), rtol=1e-5, atol=1e-6)
    set_trainable_scope(model, TrainScope.NEW_LAYERS, SPEC)
    assert {id(v) for v in head.trainable_weights} == {id(v) for v in model.trainable_weights}
    assert TRUNK_NAME not in [layer.name for layer in head.layers]


def test_flip_variants_follow_the_augmentation():
    assert flip_variants(AugmentationConfig(horizontal_flip=True, vertical_flip=True)) == [
        (False, False), (False, True), (True, False), (True, True)]
    assert flip_variants(AugmentationConfig(horizontal_flip=True)) == [(False, False), (True, False)]
    assert flip_variants(AugmentationConfig()) == [(False, False)]
    with pytest.raises(ValueError, match="flip-only"):
        flip_variants(AugmentationConfig(rotation_degrees=10.0))
    with pytest.raises(ValueError, match="flip-only"):
        dataclasses.replace(load_config("test").image_training, cache_trunk_features=True,
                            augmentation=AugmentationConfig(zoom_range=(0.9, 1.1)))


@pytest.mark.e2e
def test_features_are_the_trunk_output_of_every_image_in_every_flip():
    model, _ = _tiny_model()
    trunk = model.get_layer(TRUNK_NAME)
    images = np.random.default_rng(1).normal(size=(5, 64, 48, 1)).astype("float32")
    labels = np.eye(2, dtype="float32")[[0, 1, 0, 1, 1]]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    flips = flip_variants(AugmentationConfig(horizontal_flip=True, vertical_flip=True))
    features, feature_labels = compute_trunk_features(trunk, dataset, flips)
    assert features.shape == (20, 8, 6, 8) and feature_labels.shape == (20, 2)
    assert feature_labels[:, 1].sum() == 12
    # Batch 1 (images 0-1) in flip (True, True) comes at rows 6-7: trunk of the image flipped both ways.
    expected = trunk(np.repeat(images[:2, ::-1, ::-1], 3, axis=-1), training=False)
    np.testing.assert_allclose(features[6:8], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.e2e
def test_a_cached_new_layers_step_trains_the_head_and_leaves_the_trunk(toy_data):
    tf.random.set_seed(3)
    model, hparams = _tiny_model(cache_trunk_features=True, batch_size=8)
    output = tft.TFTransformOutput(toy_data["transform_graph"])
    spec = inputs.whole_image_example_spec(hparams.image_size)
    train_files = [os.path.join(toy_data["images"], "Split-train", "*")]
    eval_files = [os.path.join(toy_data["images"], "Split-eval", "*")]
    train_once = inputs.tfrecord_input_fn(train_files, output, spec, hparams, training=False)
    train = inputs.tfrecord_input_fn(train_files, output, spec, hparams, training=True)
    validation = inputs.tfrecord_input_fn(eval_files, output, spec, hparams, training=False)

    cache = CachedTrunkFeatures.compute(model.get_layer(TRUNK_NAME), train_once, validation, hparams.augmentation)
    assert len(cache.train_features) == 4 * 48 and len(cache.validation_features) == 16
    trunk_before = [w.copy() for w in model.get_layer(TRUNK_NAME).get_weights()]
    head_before = model.get_layer("image_classes").get_weights()[0].copy()

    steps = (TrainingStep(TrainScope.NEW_LAYERS, 1e-2, 4, steps_per_epoch=12),)
    results = run_schedule(FitTarget(model, train, validation), SPEC, dataclasses.replace(hparams, schedule=steps),
                           steps_per_epoch=1, metrics_factory=image_metrics,
                           new_layers_target=lambda: cache.fit_target(head_on_trunk_features(model, hparams), hparams))
    assert results[0].epochs_run == 4 and results[0].scope == "new_layers"
    assert results[0].history["loss"][-1] < results[0].history["loss"][0]
    for before, after in zip(trunk_before, model.get_layer(TRUNK_NAME).get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.allclose(head_before, model.get_layer("image_classes").get_weights()[0])
    # The full model now computes what the trained head computes on the cached validation features.
    images = np.concatenate([x.numpy() for x, _ in validation])
    head = head_on_trunk_features(model, hparams)
    np.testing.assert_allclose(model.predict(images, verbose=0), head.predict(cache.validation_features, verbose=0),
                               rtol=1e-4, atol=1e-5)
