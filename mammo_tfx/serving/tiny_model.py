"""A tiny SavedModel with the exported model's serving interface, for tests and the serving benchmark.

The trainer's export's image signatures with their input keys and dtypes (contracts: `serving_default` and
`heatmap` take `image_bytes`, `serving_examples` takes serialized tf.Examples with `image_png`) and the outputs
`probability`, `probability_single` and `heatmap` (not the screening outputs `score`/`recall` nor `serving_exam`,
which need a calibration record), but the "model" is a fixed, cheap function of the pixels, so serving can be
exercised without the trainer.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mammo_tfx.names import (DEFAULT_SIGNATURE, EXAMPLES_INPUT, EXAMPLES_SIGNATURE, HEATMAP, HEATMAP_SIGNATURE,
                             IMAGE_BYTES_INPUT, IMAGE_PNG, PROBABILITY, PROBABILITY_SINGLE)

HEATMAP_STRIDE = 8


class _TinyScreeningModel(tf.Module):
    def __init__(self, gain: float) -> None:
        super().__init__()
        # A variable so the export has a variables/ directory like a trained model.
        self.gain = tf.Variable(gain, dtype=tf.float32, name="gain")

    def _decode(self, encoded: tf.Tensor) -> tf.Tensor:
        # decode_image handles 8- and 16-bit PNG and JPEG; float32 output is scaled to [0, 1].
        image = tf.io.decode_image(encoded, channels=1, dtype=tf.float32, expand_animations=False)
        return image[:, :, 0]

    def _score(self, image: tf.Tensor) -> tf.Tensor:
        # Brightness weighted towards the right and bottom edges, so flips change it (like a real model).
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        row_weights = tf.linspace(0.5, 1.5, height)[:, tf.newaxis]
        column_weights = tf.linspace(0.5, 1.5, width)[tf.newaxis, :]
        return tf.clip_by_value(self.gain * tf.reduce_mean(image * row_weights * column_weights), 0.0, 1.0)

    def _probabilities(self, encoded_images: tf.Tensor) -> dict:
        def one_image(encoded: tf.Tensor) -> tf.Tensor:
            image = self._decode(encoded)
            flips = [image, image[:, ::-1], image[::-1, :], image[::-1, ::-1]]
            return tf.stack([tf.reduce_mean([self._score(flip) for flip in flips]), self._score(image)])

        both = tf.map_fn(one_image, encoded_images, fn_output_signature=tf.TensorSpec([2], tf.float32))
        return {PROBABILITY: both[:, 0], PROBABILITY_SINGLE: both[:, 1]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
    def serving_default(self, image_bytes: tf.Tensor) -> dict:
        return self._probabilities(image_bytes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serving_examples(self, examples: tf.Tensor) -> dict:
        features = tf.io.parse_example(examples, {IMAGE_PNG: tf.io.FixedLenFeature([], tf.string)})
        return self._probabilities(features[IMAGE_PNG])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
    def heatmap(self, image_bytes: tf.Tensor) -> dict:
        def one_image(encoded: tf.Tensor) -> tf.Tensor:
            image = self._decode(encoded)[tf.newaxis, :, :, tf.newaxis]
            pooled = tf.nn.avg_pool2d(image, HEATMAP_STRIDE, HEATMAP_STRIDE, "SAME")
            return self.gain * pooled[0, :, :, 0]

        # A batch must hold images of one size, as the real model's fixed input size implies.
        maps = tf.map_fn(one_image, image_bytes, fn_output_signature=tf.TensorSpec([None, None], tf.float32))
        return {HEATMAP: maps}


def export_tiny_model(export_dir: str, gain: float = 1.0) -> str:
    """Write the tiny model as a SavedModel into `export_dir` (e.g. `<base>/<version>`); returns the path.

    Different `gain`s give different predictions, which tells two exported versions apart.
    """
    module = _TinyScreeningModel(gain)
    signatures = {
        DEFAULT_SIGNATURE: module.serving_default,
        EXAMPLES_SIGNATURE: module.serving_examples,
        HEATMAP_SIGNATURE: module.heatmap,
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir


def synthetic_png(seed: int, height: int = 64, width: int = 48, bit_depth: int = 16) -> bytes:
    """A random greyscale PNG (8- or 16-bit) whose pixels differ per seed."""
    generator = np.random.default_rng(seed)
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    pixels = generator.integers(0, np.iinfo(dtype).max, size=(height, width, 1), endpoint=True).astype(dtype)
    return tf.io.encode_png(tf.constant(pixels)).numpy()
