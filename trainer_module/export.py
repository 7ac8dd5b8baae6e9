"""Serving exports (tf.saved_model.save) of both stages.

Whole-image export (stage 2, what Evaluator and Pusher use):
  * `serving_default`  image_bytes [B] string (PNG 8/16-bit or JPEG, any size within the export's
    ImageLimits, checked from the headers before decoding) -> decoded to the 16-bit range, resized to the
    working size, re-encoded as 16-bit PNG and passed through the
    Transform layer (the training graph), then the model on 4 flips (none, horizontal, vertical,
    both). Outputs `probability` [B] (mean malignant probability of the 4 flips) and
    `probability_single` [B] (no flip).
  * `serving_examples` examples [B] serialized tf.Example with one `image_png` each -> that image goes
    through exactly the path of `serving_default` (limits, resize to the working size), so the same
    outputs; for TFMA (`signature_name='serving_examples'`).
  * `heatmap`          image_bytes -> `heatmap` [B, h, w] in [0, 1]: stage 1's ORIGINAL patch
    classifier run convolutionally (trunk over the whole image, the head's GAP replaced by a
    stride-1 average pool of patch_size/stride cells, the Dense applied at every cell);
    value = p(calc malignant) + p(mass malignant). Cell (i, j) covers the patch whose top-left
    corner is at pixel (i, j) * stride; h = rows/stride - patch_size/stride + 1.
Patch export (stage 1, needed by stage 2 and tests only):
  * `serving_default`  image_bytes of patches -> `probabilities` [B, 5], `probability` [B] malignant.
Both carry a Keras copy (model_io.py) so that stage 2 / init_from can rebuild the models, and record the
ImageLimits their graphs enforce in its model_info.json; the whole-image export also records its working size
and heatmap cell grid there, for `mammo-tfx predict`.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from mammo_tfx.names import (DEFAULT_SIGNATURE, EXAMPLES_INPUT, EXAMPLES_SIGNATURE, HEATMAP, HEATMAP_SIGNATURE,
                             IMAGE_BYTES_INPUT, IMAGE_PNG, PROBABILITY, PROBABILITY_SINGLE)
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import ServingGeometry
from trainer_module.backbones import TRUNK_NAME, backbone_spec
from trainer_module.hparams import ImageHParams, PatchHParams
from trainer_module.image_decoding import as_raw_feature, batch_to_working_png
from trainer_module.inputs import transform_images
from trainer_module.model_io import save_keras_copy
from trainer_module.patch_model import MALIGNANT_PATCH_CLASSES, PATCH_HEAD_NAME
from trainer_module.whole_image_model import MALIGNANT_IMAGE_CLASS


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
    """Malignant probability averaged over the 4 flips, and without flipping."""
    flips = [images, tf.reverse(images, [2]), tf.reverse(images, [1]), tf.reverse(images, [1, 2])]
    probabilities = model(tf.concat(flips, axis=0), training=False)[:, MALIGNANT_IMAGE_CLASS]
    per_flip = tf.reshape(tf.cast(probabilities, tf.float32), [len(flips), -1])
    return {PROBABILITY: tf.reduce_mean(per_flip, axis=0), PROBABILITY_SINGLE: per_flip[0]}


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
                 image_limits: ImageLimits) -> None:
        super().__init__()
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._image_png_spec = tf_transform_output.raw_feature_spec()[IMAGE_PNG]
        self._rows, self._cols = rows, cols
        self._image_limits = image_limits

    def images_from_bytes(self, image_bytes: tf.Tensor) -> tf.Tensor:
        pngs = batch_to_working_png(image_bytes, self._rows, self._cols, self._image_limits)
        return transform_images(self.tft_layer, as_raw_feature(pngs, self._image_png_spec))

    def images_from_examples(self, examples: tf.Tensor) -> tf.Tensor:
        # Exactly one image per example, then the path of encoded images: no example reaches the trunk unchecked or
        # at another size than the working size.
        features = tf.io.parse_example(examples, {IMAGE_PNG: tf.io.FixedLenFeature([], tf.string)})
        return self.images_from_bytes(features[IMAGE_PNG])


def _bytes_spec() -> tf.TensorSpec:
    return tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)


def export_whole_image_model(model: tf_keras.Model, patch_model: tf_keras.Model, image_hparams: ImageHParams,
                             patch_hparams: PatchHParams, tf_transform_output: tft.TFTransformOutput,
                             export_dir: str, image_limits: ImageLimits = ImageLimits()) -> None:
    """Saves the stage-2 serving model; `patch_model` must hold the original stage-1 weights."""
    rows, cols = image_hparams.image_size
    window = heatmap_window(patch_hparams)
    stride = backbone_spec(patch_hparams.backbone, patch_hparams.small_backbone_widths).stride
    module = _ServingModule(tf_transform_output, rows, cols, image_limits)
    module.model, module.patch_model = model, patch_model

    @tf.function(input_signature=[_bytes_spec()])
    def serve_bytes(image_bytes):
        return flip_tta(module.model, module.images_from_bytes(image_bytes))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(examples):
        return flip_tta(module.model, module.images_from_examples(examples))

    @tf.function(input_signature=[_bytes_spec()])
    def serve_heatmap(image_bytes):
        return {HEATMAP: patch_heatmap(module.patch_model, module.images_from_bytes(image_bytes), window)}

    signatures = {DEFAULT_SIGNATURE: serve_bytes, EXAMPLES_SIGNATURE: serve_examples, HEATMAP_SIGNATURE: serve_heatmap}
    tf.saved_model.save(module, export_dir, signatures=signatures)
    geometry = ServingGeometry(working_size=(rows, cols), heatmap_stride=stride, heatmap_pooled_size=window * stride)
    save_keras_copy(model, export_dir, patch_hparams, image_limits, image_hparams, geometry)


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
