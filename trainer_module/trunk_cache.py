"""Trunk features computed once, for the whole-image steps that train only the new layers.

With the trunk frozen (and its BatchNorm in inference mode), the trunk maps an image to the same features at
every step, and flip-only augmentation draws each training image in one of at most 4 flips. So the features of
every (image, flip) pair and of the validation images are computed once, and the head (top blocks, pooling,
classifier; whole_image_model.head_on_trunk_features) trains on them: the same updates as through the full
model, at a fraction of the cost. Batches are drawn uniformly from all (image, flip) pairs, which is what random
flips of a shuffled split draw in expectation, and are class-balanced like the image batches.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import time

import numpy as np
import tensorflow as tf
import tf_keras

from trainer_module.augmentation import batch_balance_weights
from trainer_module.hparams import AugmentationConfig, ImageHParams
from trainer_module.schedule import FitTarget

logger = logging.getLogger(__name__)


def flip_variants(augmentation: AugmentationConfig) -> list[tuple[bool, bool]]:
    """The (horizontal, vertical) flips the augmentation can draw; [(False, False)] without flips."""
    if augmentation.has_affine:
        raise ValueError("trunk features can be cached only with flip-only augmentation")
    horizontal = (False, True) if augmentation.horizontal_flip else (False,)
    vertical = (False, True) if augmentation.vertical_flip else (False,)
    return list(itertools.product(horizontal, vertical))


def _flip(images: tf.Tensor, horizontal: bool, vertical: bool) -> tf.Tensor:
    axes = ([2] if horizontal else []) + ([1] if vertical else [])
    return tf.reverse(images, axes) if axes else images


def compute_trunk_features(trunk: tf_keras.Model, dataset: tf.data.Dataset,
                           flips: list[tuple[bool, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """(features [N * len(flips), h, w, c] float32, one-hot labels) of a finite dataset of (images, labels)."""
    run_trunk = tf.function(lambda images: tf.cast(trunk(tf.concat([images] * 3, axis=-1), training=False),
                                                   tf.float32))
    features, labels = [], []
    for batch in dataset:
        images, one_hot = batch[0], batch[1]
        for horizontal, vertical in flips:
            features.append(run_trunk(_flip(images, horizontal, vertical)).numpy())
            labels.append(one_hot.numpy())
    if not features:
        raise ValueError("no examples to compute trunk features from")
    return np.concatenate(features), np.concatenate(labels).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class CachedTrunkFeatures:
    train_features: np.ndarray
    train_labels: np.ndarray
    validation_features: np.ndarray
    validation_labels: np.ndarray

    @classmethod
    def compute(cls, trunk: tf_keras.Model, train_images_once: tf.data.Dataset,
                validation_dataset: tf.data.Dataset, augmentation: AugmentationConfig) -> "CachedTrunkFeatures":
        """Features of one pass over the training images (un-augmented, each in every flip the augmentation
        draws) and of the validation dataset (as it is)."""
        start = time.perf_counter()
        train_features, train_labels = compute_trunk_features(trunk, train_images_once, flip_variants(augmentation))
        validation_features, validation_labels = compute_trunk_features(trunk, validation_dataset, [(False, False)])
        cache = cls(train_features, train_labels, validation_features, validation_labels)
        logger.info("trunk features cached in %.0f s: %d training (image, flip) pairs, %d validation images, %.0f MB",
                    time.perf_counter() - start, len(train_features), len(validation_features),
                    (train_features.nbytes + validation_features.nbytes) / 2**20)
        return cache

    def train_dataset(self, batch_size: int, seed: int, class_balance: bool) -> tf.data.Dataset:
        """Endless shuffled batches of (features, one-hot labels[, balancing weights])."""
        features, labels = tf.constant(self.train_features), tf.constant(self.train_labels)
        count = len(self.train_features)
        # Shuffling indices keeps one copy of the features (a shuffle buffer of features would hold a second).
        batches = (tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True)
                   .repeat().batch(batch_size)
                   .map(lambda index: (tf.gather(features, index), tf.gather(labels, index))))
        if class_balance:
            batches = batches.map(lambda x, y: (x, y, batch_balance_weights(y)))
        return batches.prefetch(tf.data.AUTOTUNE)

    def validation_dataset(self, batch_size: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((self.validation_features, self.validation_labels)).batch(batch_size)

    def fit_target(self, head: tf_keras.Model, hparams: ImageHParams) -> FitTarget:
        """What the 'new_layers' steps fit: `head` on these features."""
        return FitTarget(head, self.train_dataset(hparams.batch_size, hparams.seed, hparams.class_balance),
                         self.validation_dataset(hparams.batch_size))
