"""Convolutional trunks for the patch classifier, each with its cut points named.

The trunk is a fully convolutional `tf_keras.Model` named `trunk` taking a 3-channel image of any
size. Layers are found by NAME, never by index: Keras-2.0-era layer indices (the seed's 162 / 15)
do not survive into TF2's applications (docs/training.md).
- trunk output: ResNet50 `conv5_block3_out` (TF2 has no 7x7 avg_pool there), VGG16 `block5_pool`,
  small `block<n>_pool`;
- "top of trunk" (trained in the middle patch step): layers whose name starts with `conv5_`
  (ResNet50 from `conv5_block1`), `block5_` (VGG16), `block<n>_` (small).
Initial weights: random, or the file `backbone_weights.resolve_backbone_weights` gives for the setting
('imagenet', a local path or a bucket path), loaded the same way whatever its origin.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import tf_keras

from trainer_module.backbone_weights import resolve_backbone_weights

TRUNK_NAME = "trunk"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    trunk_output_layer: str
    top_of_trunk_prefixes: tuple[str, ...]
    stride: int  # input pixels per trunk-output cell


def backbone_spec(name: str, small_widths: Sequence[int] = (32, 64, 128)) -> BackboneSpec:
    """The named cut points and stride of a backbone ('resnet50', 'vgg16' or 'small')."""
    if name == "resnet50":
        return BackboneSpec(name, "conv5_block3_out", ("conv5_",), 32)
    if name == "vgg16":
        return BackboneSpec(name, "block5_pool", ("block5_",), 32)
    if name == "small":
        last = len(small_widths)
        return BackboneSpec(name, f"block{last}_pool", (f"block{last}_",), 2 ** last)
    raise ValueError(f"Unknown backbone {name!r}; expected 'resnet50', 'vgg16' or 'small'")


def _small_convnet(widths: Sequence[int]) -> tf_keras.Model:
    """A narrow all-conv VGG-style net (the seed's 'yaroslav' blocks): per block two 3x3 conv + BN +
    ReLU, then a 2x2 max-pool."""
    inputs = tf_keras.Input((None, None, 3), name="rgb")
    x = inputs
    for block, width in enumerate(widths, start=1):
        for conv in (1, 2):
            x = tf_keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                       kernel_initializer="he_normal", name=f"block{block}_conv{conv}")(x)
            x = tf_keras.layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = tf_keras.layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        x = tf_keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return tf_keras.Model(inputs, x, name="small_convnet")


def build_trunk(name: str, weights: Optional[str] = None,
                small_widths: Sequence[int] = (32, 64, 128)) -> tf_keras.Model:
    """The trunk (head removed) of a backbone as a model named 'trunk' on [B, H, W, 3] inputs; `weights` is the
    `backbone_weights` setting (None, 'imagenet' or a local or bucket path)."""
    spec = backbone_spec(name, small_widths)
    weights_file = resolve_backbone_weights(name, weights)
    if name == "resnet50":
        full = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    elif name == "vgg16":
        full = tf_keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    else:
        full = _small_convnet(small_widths)
    if weights_file is not None:
        full.load_weights(weights_file)
    return tf_keras.Model(full.input, full.get_layer(spec.trunk_output_layer).output, name=TRUNK_NAME)


def is_top_of_trunk(layer_name: str, spec: BackboneSpec) -> bool:
    return layer_name.startswith(spec.top_of_trunk_prefixes)


def grey_to_rgb(grey: "tf_keras.KerasTensor") -> "tf_keras.KerasTensor":
    """Repeats a 1-channel image to the 3 channels the backbones expect (no ImageNet preprocessing:
    the Transform's featurewise centring replaces it, as in the seed)."""
    return tf_keras.layers.Concatenate(axis=-1, name="grey_to_rgb")([grey, grey, grey])
