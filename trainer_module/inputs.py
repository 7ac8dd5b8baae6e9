"""tf.data input functions for both stages.

Raw tf.Examples (whole images from ExampleGen, patches from PatchSampler; both carry `image_png`)
are parsed, passed through the Transform graph's layer (`tft_layer`, so training and serving share
one normalisation), checked for size and label range, then augmented and class-balanced (train
only). Two sources yield the same batches: TFX's `data_accessor.tf_dataset_factory` (pipeline)
and plain GZIP `tf.data.TFRecordDataset`s (benchmarks, tools).

Batches are (images [B, rows, cols, 1] float32, one-hot labels [B, classes]) plus per-example
weights [B] when class balancing is on (train only).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.public import tfxio

from mammo_tfx import names
from trainer_module import runtime
from trainer_module.augmentation import augment_images, batch_balance_weights, batch_seed
from trainer_module.hparams import TrainingConfig
from trainer_module.preprocessing import dense_image


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
    """What the examples of one stage look like: label feature, class count, image size, and the views its train
    split keeps (empty: every example; the eval and test splits always keep every view, for slicing)."""

    label_key: str
    num_classes: int
    image_size: tuple[int, int]
    train_views: tuple[str, ...] = ()


def patch_example_spec(patch_size: int) -> ExampleSpec:
    return ExampleSpec(names.PATCH_CLASS, 5, (patch_size, patch_size))


def whole_image_example_spec(image_size: Sequence[int], train_views: Sequence[str] = ()) -> ExampleSpec:
    return ExampleSpec(names.LABEL, 2, (int(image_size[0]), int(image_size[1])), tuple(train_views))


def raw_feature_spec(tf_transform_output: tft.TFTransformOutput, label_key: str,
                     views: Sequence[str] = ()) -> dict[str, Any]:
    """Parsing spec: `image_png` exactly as the Transform graph expects it, plus the int64 label (and the view when
    examples are kept by view)."""
    transform_spec = tf_transform_output.raw_feature_spec()
    if names.IMAGE_PNG not in transform_spec:
        raise ValueError(f"the Transform graph has no raw feature {names.IMAGE_PNG!r}; it has {sorted(transform_spec)}")
    spec = {names.IMAGE_PNG: transform_spec[names.IMAGE_PNG], label_key: tf.io.FixedLenFeature([], tf.int64)}
    if views:
        spec[names.VIEW] = tf.io.FixedLenFeature([], tf.string)
    return spec


def _keep_views(raw_batches: tf.data.Dataset, views: Sequence[str], batch_size: int) -> tf.data.Dataset:
    """The batches re-formed from the examples whose view is in `views` (the view feature dropped again)."""
    if not views:
        return raw_batches
    wanted = tf.constant(list(views))

    def kept(features: dict, label: tf.Tensor) -> tf.Tensor:
        return tf.reduce_any(tf.equal(features[names.VIEW], wanted))

    def without_view(features: dict, labels: tf.Tensor) -> tuple[dict, tf.Tensor]:
        return {key: value for key, value in features.items() if key != names.VIEW}, labels

    return raw_batches.unbatch().filter(kept).batch(batch_size).map(without_view)


def transform_images(tft_layer: Callable, image_png: Any) -> tf.Tensor:
    """Runs the Transform layer on raw `image_png` values (shaped as the raw spec says) and returns
    the dense float32 [B, H, W, 1] images."""
    return dense_image(tft_layer({names.IMAGE_PNG: image_png}))


def _model_batch(features: dict, labels: tf.Tensor, tft_layer: Callable, spec: ExampleSpec,
                 source: str) -> tuple[tf.Tensor, tf.Tensor]:
    images = transform_images(tft_layer, features[names.IMAGE_PNG])
    rows, cols = spec.image_size
    size_ok = tf.debugging.assert_equal(
        tf.shape(images)[1:3], tf.constant([rows, cols]),
        message=f"examples in {source} have another image size than the expected {rows}x{cols} (rows x cols)")
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    labels_ok = [
        tf.debugging.assert_non_negative(labels, message=f"negative '{spec.label_key}' in {source}"),
        tf.debugging.assert_less(labels, tf.constant(spec.num_classes, tf.int64),
                                 message=f"'{spec.label_key}' in {source} must be < {spec.num_classes}"),
    ]
    with tf.control_dependencies([size_ok, *labels_ok]):
        images = tf.ensure_shape(tf.identity(images), [None, rows, cols, 1])
        one_hot = tf.one_hot(labels, spec.num_classes, dtype=tf.float32)
    return images, one_hot


def _finish(raw_batches: tf.data.Dataset, tft_layer: Callable, spec: ExampleSpec, config: TrainingConfig,
            training: bool, source: str, max_batches: Optional[int]) -> tf.data.Dataset:
    dataset = raw_batches.map(lambda features, labels: _model_batch(features, labels, tft_layer, spec, source),
                              num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        augmentation = config.augmentation
        # Each batch's draws are seeded by its index in the (repeating) stream: the same in every run.
        dataset = dataset.enumerate().map(
            lambda index, batch: (augment_images(batch[0], augmentation, batch_seed(config.seed, index)), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
        if config.class_balance:
            dataset = dataset.map(lambda images, labels: (images, labels, batch_balance_weights(labels)))
    if max_batches is not None:
        dataset = dataset.take(max_batches)
    return dataset.prefetch(tf.data.AUTOTUNE)


def tfx_input_fn(file_patterns: Sequence[str], data_accessor: Any, tf_transform_output: tft.TFTransformOutput,
                 spec: ExampleSpec, config: TrainingConfig, training: bool,
                 max_batches: Optional[int] = None, views: Sequence[str] = ()) -> tf.data.Dataset:
    """Batches from TFX Examples via `fn_args.data_accessor.tf_dataset_factory`.

    Training data repeat forever and are shuffled; evaluation data make one pass (at most
    `max_batches` batches), so each validation sees the same examples. `views`: keep only examples of these views
    (the train split's `spec.train_views`); empty keeps all.
    """
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec(tf_transform_output, spec.label_key, views))
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=config.batch_size, label_key=spec.label_key, shuffle=training,
        shuffle_buffer_size=config.shuffle_buffer, shuffle_seed=config.seed if training else None,
        num_epochs=None if training else 1)
    raw_batches = _keep_views(data_accessor.tf_dataset_factory(list(file_patterns), options, schema), views,
                              config.batch_size)
    return _finish(raw_batches, tf_transform_output.transform_features_layer(), spec, config, training,
                   ", ".join(file_patterns), max_batches)


def _matching_files(file_patterns: Sequence[str]) -> list[str]:
    files: list[str] = []
    for pattern in file_patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
        files.extend(matched)
    return files


def tfrecord_input_fn(file_patterns: Sequence[str], tf_transform_output: tft.TFTransformOutput,
                      spec: ExampleSpec, config: TrainingConfig, training: bool,
                      max_batches: Optional[int] = None, compression_type: str = "GZIP",
                      views: Sequence[str] = ()) -> tf.data.Dataset:
    """The same batches as `tfx_input_fn`, read with a plain `tf.data.TFRecordDataset`."""
    files = _matching_files(file_patterns)
    feature_spec = raw_feature_spec(tf_transform_output, spec.label_key, views)
    records = tf.data.TFRecordDataset(files, compression_type=compression_type)
    if training:
        records = records.shuffle(config.shuffle_buffer, seed=config.seed).repeat()
    raw_batches = _keep_views(records.batch(config.batch_size).map(
        lambda serialized: _split_label(tf.io.parse_example(serialized, feature_spec), spec.label_key)),
        views, config.batch_size)
    return _finish(raw_batches, tf_transform_output.transform_features_layer(), spec, config, training,
                   ", ".join(file_patterns), max_batches)


def _split_label(features: dict, label_key: str) -> tuple[dict, tf.Tensor]:
    features = dict(features)
    return features, features.pop(label_key)


def tfx_train_and_validation(fn_args, tf_transform_output, spec, config) -> tuple:
    """The Trainer's (training, validation) datasets from its FnArgs: the train split (only spec.train_views, if set)
    augmented and shuffled, the eval split as is, capped at hparams.validation_steps / EvalArgs.num_steps batches
    when set."""
    train = tfx_input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec, config,
                         training=True, views=spec.train_views)
    validation = tfx_input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec, config,
                              training=False, max_batches=runtime.validation_batches(config, fn_args.eval_steps))
    return train, validation


def tfx_train_split_once(fn_args, tf_transform_output, spec, config) -> tf.data.Dataset:
    """One pass over the Trainer's train split as it is (no shuffle, no augmentation, no weights), for computing
    what depends only on the images (trunk_cache.py)."""
    return tfx_input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec, config,
                        training=False, views=spec.train_views)
