"""Train-time augmentation and per-batch class balancing, vectorised over a batch for tf.data.

Augmentation follows Keras' ImageDataGenerator as the seed used it (docs/training.md): random
horizontal/vertical flips, rotation, shear and independent x/y zoom about the image centre, with
'nearest' fill. It runs after the Transform's mean-centring, which is equivalent to the seed's
order (augment, then subtract the mean): flips and bilinear resampling with edge replication
commute with subtracting a constant.

The draws are stateless: each batch's come from a [2] seed (the training seed and the batch's index), so a batch
is augmented the same way in every run however tf.data schedules the map, and the map stays parallel under op
determinism (stateful random ops would make tf.data run it serially).
"""
from __future__ import annotations

import math

import tensorflow as tf

from trainer_module.hparams import AugmentationConfig


# Offsets that give each kind of draw its own stream from one batch seed.
_HORIZONTAL, _VERTICAL, _ROTATION, _SHEAR, _ZOOM_X, _ZOOM_Y = range(6)


def _uniform(batch: tf.Tensor, seed: tf.Tensor, stream: int, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform([batch], seed=tf.random.experimental.stateless_fold_in(seed, stream),
                                       minval=low, maxval=high)


def batch_seed(seed: int, batch_index: tf.Tensor) -> tf.Tensor:
    """The [2] int64 seed of one batch's augmentation: the training seed and the batch's index in the stream."""
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_index, tf.int64)])


def _random_flips(images: tf.Tensor, axis: int, seed: tf.Tensor, stream: int) -> tf.Tensor:
    batch = tf.shape(images)[0]
    flip = _uniform(batch, seed, stream) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[axis]), images)


def _affine_transforms(batch: tf.Tensor, height: tf.Tensor, width: tf.Tensor,
                       config: AugmentationConfig, seed: tf.Tensor) -> tf.Tensor:
    """Per-image [B, 8] projective transforms mapping output (x, y) to input coordinates."""
    angle = _uniform(batch, seed, _ROTATION, -1.0, 1.0) * (config.rotation_degrees * math.pi / 180.0)
    shear = _uniform(batch, seed, _SHEAR, -1.0, 1.0) * config.shear_radians
    low, high = config.zoom_range
    zoom_x = _uniform(batch, seed, _ZOOM_X, low, high)
    zoom_y = _uniform(batch, seed, _ZOOM_Y, low, high)
    zeros, ones = tf.zeros([batch]), tf.ones([batch])
    rotation = tf.reshape(tf.stack([tf.cos(angle), -tf.sin(angle), tf.sin(angle), tf.cos(angle)], -1), [-1, 2, 2])
    shearing = tf.reshape(tf.stack([ones, -tf.sin(shear), zeros, tf.cos(shear)], -1), [-1, 2, 2])
    zooming = tf.reshape(tf.stack([zoom_x, zeros, zeros, zoom_y], -1), [-1, 2, 2])
    matrix = rotation @ shearing @ zooming
    # About the centre: input = M (output - c) + c.
    centre = tf.stack([(tf.cast(width, tf.float32) - 1.0) / 2.0, (tf.cast(height, tf.float32) - 1.0) / 2.0])
    offset = centre[None, :] - tf.linalg.matvec(matrix, tf.tile(centre[None, :], [batch, 1]))
    return tf.stack([matrix[:, 0, 0], matrix[:, 0, 1], offset[:, 0],
                     matrix[:, 1, 0], matrix[:, 1, 1], offset[:, 1], zeros, zeros], axis=-1)


def augment_images(images: tf.Tensor, config: AugmentationConfig, seed: tf.Tensor) -> tf.Tensor:
    """Randomly augments a float [B, H, W, C] batch (each image drawn independently); `seed` is the batch's [2]
    int64 seed (`batch_seed`): the same seed gives the same augmentation."""
    seed = tf.cast(seed, tf.int64)
    if config.horizontal_flip:
        images = _random_flips(images, 2, seed, _HORIZONTAL)
    if config.vertical_flip:
        images = _random_flips(images, 1, seed, _VERTICAL)
    if config.has_affine:
        shape = tf.shape(images)
        transforms = _affine_transforms(shape[0], shape[1], shape[2], config, seed)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=shape[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="NEAREST")
    return images


def batch_balance_weights(one_hot_labels: tf.Tensor) -> tf.Tensor:
    """Per-example weights inverse to the frequency of the example's class in its batch.

    Seed's --auto-batch-balance (weight = 1 / class fraction), normalised so the weights of a batch
    average to 1: each class present contributes equally and the loss scale (hence the learning
    rate's meaning) is the same as without balancing.
    """
    labels = tf.cast(one_hot_labels, tf.float32)
    class_counts = tf.reduce_sum(labels, axis=0)
    classes_present = tf.reduce_sum(tf.cast(class_counts > 0, tf.float32))
    count_of_own_class = tf.reduce_sum(labels * class_counts[None, :], axis=-1)
    batch = tf.cast(tf.shape(labels)[0], tf.float32)
    return batch / (classes_present * count_of_own_class)
