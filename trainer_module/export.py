"""Serving exports (tf.saved_model.save) of both stages.

Whole-image export (stage 2, what Evaluator and Pusher use):
  * `serving_default`  image_bytes [B] string (PNG 8/16-bit or JPEG, any size within the export's
    ImageLimits, checked from the headers before decoding) -> decoded to the 16-bit range, brought to the
    working size as ingestion did (its resize mode: stretched, or scaled and padded), re-encoded as 16-bit PNG
    and passed through the Transform layer (the training graph), then the model on 4 flips (none, horizontal,
    vertical, both). Outputs `score` [B] (mean malignant probability of the 4 flips), `probability` [B] (that score
    calibrated on the eval split), `recall` [B] bool (probability >= the image threshold chosen on the eval
    split) and `probability_single` [B] (no flip, uncalibrated).
  * `serving_examples` examples [B] serialized tf.Example with one `image_png` each -> that image goes
    through exactly the path of `serving_default` (limits, resize to the working size), so the same
    outputs; for TFMA (`signature_name='serving_examples'`).
  * `serving_exam`     image_bytes [N] and breast_id [N] strings (one request may hold several exams) -> the
    outputs of `serving_default` per image, `breast_index` [N] int32 (the image's row among the breasts), and
    per distinct breast id in order of first appearance `breast_ids` [M], `breast_score` [M] (the breast rule
    over its images' `probability`) and `breast_recall` [M] bool (breast_score >= the breast threshold).
  The calibration and thresholds (mammo_tfx/evaluation/calibration.py, fitted here on the eval split scored
  with this graph) are constants of the graph and are recorded in model_info.json under "screening".
  * `heatmap`          image_bytes -> `heatmap` [B, h, w] in [0, 1]: stage 1's ORIGINAL patch
    classifier run convolutionally (trunk over the whole image, the head's GAP replaced by a
    stride-1 average pool of patch_size/stride cells, the Dense applied at every cell);
    value = p(calc malignant) + p(mass malignant). Cell (i, j) covers the patch whose top-left
    corner is at pixel (i, j) * stride; h = rows/stride - patch_size/stride + 1.
Patch export (stage 1, needed by stage 2 and tests only):
  * `serving_default`  image_bytes of patches -> `probabilities` [B, 5], `probability` [B] malignant.
Both carry a Keras copy (model_io.py) so that stage 2 / init_from can rebuild the models, and record the
ImageLimits their graphs enforce in its model_info.json; the whole-image export also records its working size,
resize mode and heatmap cell grid there, for `mammo-tfx predict`.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Dict, List, Sequence, Tuple

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from mammo_tfx.evaluation.calibration import ScreeningRecord, fit_screening_record
from mammo_tfx.evaluation.screening import ScoredUnit, ScreeningOptions
from mammo_tfx.example_files import serialized_examples
from mammo_tfx.names import (BREAST_ID_INPUT, BREAST_KEY, DEFAULT_SIGNATURE, EXAM_KEY, EXAM_SIGNATURE, EXAMPLES_INPUT,
                             EXAMPLES_SIGNATURE, HEATMAP, HEATMAP_SIGNATURE, IMAGE_BYTES_INPUT, IMAGE_KEY, IMAGE_PNG,
                             LABEL, PROBABILITY, PROBABILITY_SINGLE, SCORE, STRETCH)
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import ServingGeometry
from trainer_module.backbones import TRUNK_NAME, backbone_spec
from trainer_module.hparams import ImageHParams, PatchHParams
from trainer_module.image_decoding import as_raw_feature, batch_to_working_png
from trainer_module.inputs import transform_images
from trainer_module.model_io import save_keras_copy
from trainer_module.patch_model import MALIGNANT_PATCH_CLASSES, PATCH_HEAD_NAME
from trainer_module.screening_graph import exam_outputs, image_outputs
from trainer_module.whole_image_model import MALIGNANT_IMAGE_CLASS

logger = logging.getLogger(__name__)


def heatmap_window(patch_hparams: PatchHParams) -> int:
    """Trunk cells per side that the patch head pools (the patch's cells minus the head's border on each side);
    the patch size must be a multiple of the trunk stride."""
    stride = backbone_spec(patch_hparams.backbone, patch_hparams.small_backbone_widths).stride
    if patch_hparams.patch_size % stride:
        raise ValueError(f"patch_size {patch_hparams.patch_size} must be a multiple of the {patch_hparams.backbone} "
                         f"trunk stride {stride} for the convolutional heatmap")
    window = patch_hparams.patch_size // stride - 2 * patch_hparams.head_border_cells
    if window < 1:
        raise ValueError(f"head_border_cells={patch_hparams.head_border_cells} leaves no cell of the "
                         f"{patch_hparams.patch_size // stride}x{patch_hparams.patch_size // stride} trunk cells of a "
                         f"{patch_hparams.patch_size}-px patch for the head to pool")
    return window


def flip_tta(model: tf_keras.Model, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """Malignant probability averaged over the 4 flips (the uncalibrated `score`), and without flipping."""
    flips = [images, tf.reverse(images, [2]), tf.reverse(images, [1]), tf.reverse(images, [1, 2])]
    probabilities = model(tf.concat(flips, axis=0), training=False)[:, MALIGNANT_IMAGE_CLASS]
    per_flip = tf.reshape(tf.cast(probabilities, tf.float32), [len(flips), -1])
    return {SCORE: tf.reduce_mean(per_flip, axis=0), PROBABILITY_SINGLE: per_flip[0]}


def malignant_probability(patch_probabilities: tf.Tensor) -> tf.Tensor:
    """Sum of the malignant classes' probabilities over the last axis of patch class probabilities."""
    return tf.reduce_sum(tf.gather(patch_probabilities, list(MALIGNANT_PATCH_CLASSES), axis=-1), axis=-1)


def patch_heatmap(patch_model: tf_keras.Model, images: tf.Tensor, window: int) -> tf.Tensor:
    """Malignant probability of every patch position on a trunk-stride grid, [B, h, w]: cell (i, j) is what the
    patch head computes from trunk cells [i, i + window) x [j, j + window), the pooled centre of the patch there."""
    trunk = patch_model.get_layer(TRUNK_NAME)
    head = patch_model.get_layer(PATCH_HEAD_NAME)
    features = tf.cast(trunk(tf.concat([images, images, images], axis=-1), training=False), tf.float32)
    pooled = tf.nn.avg_pool2d(features, ksize=window, strides=1, padding="VALID")
    logits = tf.einsum("bhwc,ck->bhwk", pooled, tf.cast(head.kernel, tf.float32)) + tf.cast(head.bias, tf.float32)
    malignant = malignant_probability(tf.nn.softmax(logits, axis=-1))
    # A sum of softmax entries can round to just above 1 (seen: 1.0000001); clients expect a probability.
    return tf.clip_by_value(malignant, 0.0, 1.0)


class _ServingModule(tf.Module):
    """Holds the models and the Transform layer so tf.saved_model.save tracks their variables."""

    def __init__(self, tf_transform_output: tft.TFTransformOutput, rows: int, cols: int,
                 image_limits: ImageLimits, resize_mode: str = STRETCH) -> None:
        super().__init__()
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._image_png_spec = tf_transform_output.raw_feature_spec()[IMAGE_PNG]
        self._rows, self._cols = rows, cols
        self._image_limits = image_limits
        self._resize_mode = resize_mode

    def images_from_bytes(self, image_bytes: tf.Tensor) -> tf.Tensor:
        pngs = batch_to_working_png(image_bytes, self._rows, self._cols, self._image_limits, self._resize_mode)
        return transform_images(self.tft_layer, as_raw_feature(pngs, self._image_png_spec))

    def images_from_examples(self, examples: tf.Tensor) -> tf.Tensor:
        # Exactly one image per example, then the path of encoded images: no example reaches the trunk unchecked or
        # at another size than the working size.
        features = tf.io.parse_example(examples, {IMAGE_PNG: tf.io.FixedLenFeature([], tf.string)})
        return self.images_from_bytes(features[IMAGE_PNG])


def _bytes_spec() -> tf.TensorSpec:
    return tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)


def _examples_spec() -> tf.TensorSpec:
    return tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)


def _bytes_feature(example: tf.train.Example, key: str, path: str) -> str:
    values = example.features.feature[key].bytes_list.value
    if not values:
        raise ValueError(f"{path}: an eval example has no {key!r}; the Examples were written before screening keys "
                         "were ingested: run the ExampleGen again")
    return values[0].decode("utf-8")


def _unscored_image(record: bytes, path: str, index: int) -> ScoredUnit:
    example = tf.train.Example.FromString(record)
    labels = example.features.feature[LABEL].int64_list.value
    if len(labels) != 1:
        raise ValueError(f"{path}: an eval example has {len(labels)} {LABEL!r} values, expected 1")
    image_key = example.features.feature[IMAGE_KEY].bytes_list.value
    return ScoredUnit(key=image_key[0].decode("utf-8") if image_key else f"{path}#{index}", label=int(labels[0]),
                      score=float("nan"), breast_key=_bytes_feature(example, BREAST_KEY, path),
                      exam_key=_bytes_feature(example, EXAM_KEY, path))


def scored_eval_images(score_examples: Callable[[tf.Tensor], Dict[str, tf.Tensor]], eval_files: Sequence[str],
                       batch_size: int) -> List[ScoredUnit]:
    """Every eval example as an image unit (label, breast and exam keys) whose score is the uncalibrated flip mean
    `score_examples` gives it, the graph `serving_examples` serves. Streams the split batch by batch (an eval split
    of full-size scans does not fit in memory) and checks each example's keys before its batch is scored."""
    images: List[ScoredUnit] = []
    batch: List[Tuple[bytes, ScoredUnit]] = []

    def score_batch() -> None:
        scores = score_examples(tf.constant([record for record, _ in batch]))[SCORE].numpy()
        images.extend(dataclasses.replace(image, score=float(score)) for (_, image), score in zip(batch, scores))
        batch.clear()

    for path, record in serialized_examples(eval_files):
        batch.append((record, _unscored_image(record, path, len(images) + len(batch))))
        if len(batch) == batch_size:
            score_batch()
    if batch:
        score_batch()
    return images


def export_whole_image_model(model: tf_keras.Model, patch_model: tf_keras.Model, image_hparams: ImageHParams,
                             patch_hparams: PatchHParams, tf_transform_output: tft.TFTransformOutput,
                             export_dir: str, eval_files: Sequence[str], screening_options: ScreeningOptions,
                             image_limits: ImageLimits = ImageLimits()) -> ScreeningRecord:
    """Saves the stage-2 serving model; `patch_model` must hold the original stage-1 weights. The eval split
    (`eval_files`, never the test split) is scored with the export's own graph first, and the calibration and
    thresholds fitted there are built into the signatures and recorded in the model info."""
    rows, cols = image_hparams.image_size
    window = heatmap_window(patch_hparams)
    stride = backbone_spec(patch_hparams.backbone, patch_hparams.small_backbone_widths).stride
    module = _ServingModule(tf_transform_output, rows, cols, image_limits, image_hparams.resize_mode)
    module.model, module.patch_model = model, patch_model

    # One trace of the model over the four flips, shared by the eval scoring and every signature that scores images:
    # at the production geometry each trace costs tens of seconds on a CPU (docs/benchmarks.md, Export).
    @tf.function
    def flip_scores(images):
        return flip_tta(module.model, images)

    @tf.function(input_signature=[_examples_spec()])
    def score_examples(examples):
        return flip_scores(module.images_from_examples(examples))

    record = fit_screening_record(scored_eval_images(score_examples, eval_files, image_hparams.batch_size),
                                  screening_options)
    logger.info("screening calibration %s on the eval split (%s); thresholds %s; ECE %s",
                record.calibration.method, record.reason or "fitted", record.thresholds, record.eval_ece)

    def served(images: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = flip_scores(images)
        return image_outputs(record, scores[SCORE], scores[PROBABILITY_SINGLE])

    @tf.function(input_signature=[_bytes_spec()])
    def serve_bytes(image_bytes):
        return served(module.images_from_bytes(image_bytes))

    @tf.function(input_signature=[_examples_spec()])
    def serve_examples(examples):
        return served(module.images_from_examples(examples))

    @tf.function(input_signature=[_bytes_spec(), tf.TensorSpec([None], tf.string, name=BREAST_ID_INPUT)])
    def serve_exam(image_bytes, breast_id):
        tf.debugging.assert_equal(tf.size(image_bytes), tf.size(breast_id),
                                  message=f"{IMAGE_BYTES_INPUT} and {BREAST_ID_INPUT} must have one entry per image")
        scores = flip_scores(module.images_from_bytes(image_bytes))
        return exam_outputs(record, scores[SCORE], scores[PROBABILITY_SINGLE], breast_id)

    @tf.function(input_signature=[_bytes_spec()])
    def serve_heatmap(image_bytes):
        return {HEATMAP: patch_heatmap(module.patch_model, module.images_from_bytes(image_bytes), window)}

    signatures = {DEFAULT_SIGNATURE: serve_bytes, EXAMPLES_SIGNATURE: serve_examples, EXAM_SIGNATURE: serve_exam,
                  HEATMAP_SIGNATURE: serve_heatmap}
    tf.saved_model.save(module, export_dir, signatures=signatures)
    geometry = ServingGeometry(working_size=(rows, cols), heatmap_stride=stride, heatmap_pooled_size=window * stride,
                               resize_mode=image_hparams.resize_mode)
    save_keras_copy(model, export_dir, patch_hparams, image_limits, image_hparams, geometry, record, patch_model)
    return record


def export_patch_model(patch_model: tf_keras.Model, patch_hparams: PatchHParams,
                       tf_transform_output: tft.TFTransformOutput, export_dir: str,
                       image_limits: ImageLimits = ImageLimits()) -> None:
    """Saves the stage-1 export: patch classification of patch images, plus the Keras copy."""
    size = patch_hparams.patch_size
    module = _ServingModule(tf_transform_output, size, size, image_limits)
    module.patch_model = patch_model

    @tf.function(input_signature=[_bytes_spec()])
    def serve_patches(image_bytes):
        probabilities = tf.cast(module.patch_model(module.images_from_bytes(image_bytes), training=False), tf.float32)
        return {"probabilities": probabilities, PROBABILITY: malignant_probability(probabilities)}

    tf.saved_model.save(module, export_dir, signatures={DEFAULT_SIGNATURE: serve_patches})
    save_keras_copy(patch_model, export_dir, patch_hparams, image_limits)
