"""Transform `preprocessing_fn`: 16-bit PNG bytes -> featurewise mean-centred float image.

Follows Shen et al.'s whole-image normalisation (docs/training.md): pixels x `rescale`
(default 255/65535 = 0.003891), optional histogram equalisation on the 0-255 scale, minus the
featurewise mean. The mean is a `tft.mean` analyzer over the analysed split, so the seeds' 52.18
(DDSM) / 44.33 (INbreast) come out of the data instead of being typed in.

Only `image_png` is read, so the same transform graph serves whole-image examples (ExampleGen)
and patch examples (PatchSampler), which both carry `image_png` at their own size.

Output shape: TFT writes a transformed schema whose dense (FixedLen) features must have a fully
known shape apart from the batch; a dense output would therefore pin one image size into the
graph and the layer could not be applied to patches. The image is therefore returned as a
`tf.RaggedTensor` of logical shape [B, H, W, 1] (rows and columns as ragged dimensions, one size
per batch). Call `dense_image(transformed)` (or `.to_tensor()`) to get the float32
[B, H, W, 1] tensor for the model.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Union

import tensorflow as tf
import tensorflow_transform as tft

from mammo_tfx import names
from mammo_tfx.options import Options, from_mapping

# 16-bit full range -> 0-255, the seed's x0.003891.
DEFAULT_RESCALE = 255.0 / 65535.0

# Histogram equalisation works on 8-bit grey levels, as OpenCV's equalizeHist in the seed.
_GREY_LEVELS = 256

TensorLike = Union[tf.Tensor, tf.SparseTensor, tf.RaggedTensor]


@dataclasses.dataclass(frozen=True)
class TransformOptions(Options):
    """Normalisation settings passed to Transform as `custom_config` (use `to_dict()`).

    rescale: factor applied to the 16-bit pixel values (default maps 0..65535 to 0..255).
    equalize_hist: histogram-equalise each image on its 0-255 scaled, 8-bit quantised values
        (output stays on 0..255), before mean-centring. Needs a rescale that maps to 0..255.
    """

    rescale: float = DEFAULT_RESCALE
    equalize_hist: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rescale, bool) or not isinstance(self.rescale, (int, float)):
            raise TypeError(f"TransformOptions.rescale must be a number, got {self.rescale!r}")
        if not self.rescale > 0:
            raise ValueError(f"TransformOptions.rescale must be > 0, got {self.rescale!r}")
        if not isinstance(self.equalize_hist, bool):
            raise TypeError(
                f"TransformOptions.equalize_hist must be a bool, got {self.equalize_hist!r}")

    @classmethod
    def from_dict(cls, values: Optional[Mapping[str, Any]]) -> "TransformOptions":
        """Options from a Transform `custom_config` (None: the defaults)."""
        return from_mapping(cls, values or {})


def _png_bytes_vector(image_png: TensorLike) -> tf.Tensor:
    """Returns the PNG strings as a [B] tensor from a [B], [B, 1] or VarLen (sparse) feature."""
    if isinstance(image_png, tf.SparseTensor):
        # Schema without a fixed shape: a VarLen feature with exactly one value per example.
        image_png = tf.sparse.to_dense(image_png, default_value="")
    elif isinstance(image_png, tf.RaggedTensor):
        image_png = image_png.to_tensor(default_value="")
    rank = image_png.shape.rank
    if rank == 1:
        return image_png
    if rank == 2 and image_png.shape[1] in (1, None):
        return image_png[:, 0]
    raise ValueError(
        f"'{names.IMAGE_PNG}' must be a [batch] or [batch, 1] string feature, got shape "
        f"{image_png.shape}")


def _equalize_histogram(image_0_255: tf.Tensor) -> tf.Tensor:
    """Histogram equalisation of one [H, W, 1] image on 0..255 values (OpenCV equalizeHist rule).

    The lowest occupied grey level maps to 0 and the cumulative histogram above it is stretched
    to 0..255; a constant image is returned unchanged.
    """
    levels = tf.cast(tf.clip_by_value(tf.round(image_0_255), 0.0, _GREY_LEVELS - 1.0), tf.int32)
    histogram = tf.math.bincount(
        tf.reshape(levels, [-1]), minlength=_GREY_LEVELS, maxlength=_GREY_LEVELS, dtype=tf.float32)
    cumulative = tf.cumsum(histogram)
    total = cumulative[-1]
    first_occupied = tf.reduce_min(tf.where(histogram > 0))
    count_at_lowest = histogram[first_occupied]
    spread = total - count_at_lowest
    lookup = tf.where(
        spread > 0,
        tf.round(tf.maximum(cumulative - count_at_lowest, 0.0) * (_GREY_LEVELS - 1.0)
                 / tf.maximum(spread, 1.0)),
        tf.range(_GREY_LEVELS, dtype=tf.float32))
    return tf.gather(lookup, levels)


def _decode_and_scale(png: tf.Tensor, options: TransformOptions) -> tf.Tensor:
    """One PNG string -> float32 [H, W, 1] image on the rescaled (optionally equalised) scale."""
    pixels = tf.io.decode_png(png, channels=1, dtype=tf.uint16)
    scaled = tf.cast(pixels, tf.float32) * tf.constant(options.rescale, tf.float32)
    if options.equalize_hist:
        scaled = _equalize_histogram(scaled)
    return scaled


def scaled_images(image_png: TensorLike, options: TransformOptions) -> tf.Tensor:
    """Decodes a batch of 16-bit PNGs and rescales them: float32 [B, H, W, 1], before centring.

    All images of one batch must share one size (whole images and patches are never mixed).
    """
    pngs = _png_bytes_vector(image_png)
    return tf.map_fn(
        lambda png: _decode_and_scale(png, options),
        pngs,
        fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32))


def preprocessing_fn(
    inputs: Mapping[str, TensorLike],
    custom_config: Optional[Mapping[str, Any]] = None,
) -> dict[str, tf.RaggedTensor]:
    """TFT preprocessing_fn; `custom_config` is `TransformOptions.to_dict()` (or empty for defaults).

    Returns {'image': RaggedTensor float32 of logical shape [B, H, W, 1]} (see module docstring).
    """
    if names.IMAGE_PNG not in inputs:
        raise KeyError(
            f"preprocessing_fn needs the '{names.IMAGE_PNG}' feature; got {sorted(inputs)}")
    options = TransformOptions.from_dict(custom_config)
    images = scaled_images(inputs[names.IMAGE_PNG], options)
    featurewise_mean = tft.mean(images, name="featurewise_pixel_mean")
    centred = images - featurewise_mean
    return {names.TRANSFORMED_IMAGE: tf.RaggedTensor.from_tensor(centred, ragged_rank=2)}


def dense_image(transformed: Mapping[str, TensorLike]) -> tf.Tensor:
    """The transformed image as a dense float32 [B, H, W, 1] tensor (from the TFT layer's output
    or from materialized transformed examples)."""
    image = transformed[names.TRANSFORMED_IMAGE]
    if isinstance(image, tf.RaggedTensor):
        image = image.to_tensor()
    return tf.ensure_shape(image, [None, None, None, 1])
