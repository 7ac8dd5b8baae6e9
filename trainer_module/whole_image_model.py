"""Stage-2 model: patch trunk (head removed) -> top blocks -> GAP -> Dropout -> Dense(2, softmax).

Top blocks (seed-methods.md 1.3): 'resnet' = bottleneck units (v1, conv-BN-ReLU), first unit of each
stage stride 2 with a projection shortcut; 'vgg' = 3x3 conv + BN + ReLU units then a 2x2 max-pool.
With the paper's sizes a 1152x896 image gives 36x28 trunk cells, then 18x14 and 9x7.
Only the new layers carry an L2 regulariser (the trunk keeps its patch training).

The layers after the trunk (the "head") are built by one graph function that asks a `LayerSource` for
each layer by name: building the model creates them; `head_on_trunk_features` asks the built model for the
same layer objects, so the head can also be trained on trunk features computed once (trunk_cache.py).
"""
from __future__ import annotations

from typing import Callable

import tf_keras

from mammo_tfx.names import TRANSFORMED_IMAGE
from trainer_module.backbones import TRUNK_NAME, grey_to_rgb
from trainer_module.hparams import ImageHParams, TopBlockSpec

IMAGE_HEAD_NAME = "image_classes"
FEATURES_INPUT_NAME = "trunk_features"
MALIGNANT_IMAGE_CLASS = 1

# (layer name, factory taking that name) -> the layer to call.
LayerSource = Callable[[str, Callable[[str], tf_keras.layers.Layer]], tf_keras.layers.Layer]


def _create(name: str, factory: Callable[[str], tf_keras.layers.Layer]) -> tf_keras.layers.Layer:
    return factory(name)


def _conv_bn(x, filters: int, kernel: int, stride: int, weight_decay: float, name: str, layer: LayerSource,
             relu: bool = True):
    x = layer(f"{name}_conv", lambda n: tf_keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal",
        kernel_regularizer=tf_keras.regularizers.L2(weight_decay), name=n))(x)
    x = layer(f"{name}_bn", lambda n: tf_keras.layers.BatchNormalization(name=n))(x)
    if relu:
        x = layer(f"{name}_relu", lambda n: tf_keras.layers.Activation("relu", name=n))(x)
    return x


def _bottleneck_unit(x, depth: int, expansion: int, stride: int, project: bool, weight_decay: float, name: str,
                     layer: LayerSource):
    residual = _conv_bn(x, depth, 1, stride, weight_decay, f"{name}_1", layer)
    residual = _conv_bn(residual, depth, 3, 1, weight_decay, f"{name}_2", layer)
    residual = _conv_bn(residual, depth * expansion, 1, 1, weight_decay, f"{name}_3", layer, relu=False)
    shortcut = (_conv_bn(x, depth * expansion, 1, stride, weight_decay, f"{name}_0", layer, relu=False)
                if project else x)
    added = layer(f"{name}_add", lambda n: tf_keras.layers.Add(name=n))([shortcut, residual])
    return layer(f"{name}_out", lambda n: tf_keras.layers.Activation("relu", name=n))(added)


def add_top_blocks(features, spec: TopBlockSpec, weight_decay: float, layer: LayerSource = _create):
    """Applies the top-block stages to trunk features; each stage halves the resolution."""
    x = features
    for stage, (depth, repetitions) in enumerate(zip(spec.depths, spec.repetitions), start=1):
        for unit in range(1, repetitions + 1):
            name = f"top{stage}_unit{unit}"
            if spec.kind == "resnet":
                first = unit == 1
                x = _bottleneck_unit(x, depth, spec.bottleneck_expansion, 2 if first else 1, first, weight_decay,
                                     name, layer)
            else:
                x = _conv_bn(x, depth, 3, 1, weight_decay, name, layer)
        if spec.kind == "vgg":
            x = layer(f"top{stage}_pool", lambda n: tf_keras.layers.MaxPooling2D(2, padding="same", name=n))(x)
    return x


def _head(features, hparams: ImageHParams, layer: LayerSource):
    """Top blocks -> GAP -> Dropout -> Dense(2, softmax) on trunk features."""
    x = add_top_blocks(features, hparams.top_block, hparams.weight_decay, layer)
    x = layer("image_gap", lambda n: tf_keras.layers.GlobalAveragePooling2D(name=n))(x)
    if hparams.dropout > 0:
        x = layer("image_dropout", lambda n: tf_keras.layers.Dropout(hparams.dropout, name=n))(x)
    return layer(IMAGE_HEAD_NAME, lambda n: tf_keras.layers.Dense(
        2, activation="softmax", kernel_initializer="he_normal", name=n, dtype="float32",
        kernel_regularizer=tf_keras.regularizers.L2(hparams.weight_decay)))(x)


def build_whole_image_model(trunk: tf_keras.Model, hparams: ImageHParams) -> tf_keras.Model:
    """Builds the whole-image classifier on [B, rows, cols, 1] centred images around `trunk`
    (the patch classifier's 'trunk' sub-model, whose weights it shares)."""
    if trunk.name != TRUNK_NAME:
        raise ValueError(f"the trunk model must be named {TRUNK_NAME!r}, got {trunk.name!r}")
    rows, cols = hparams.image_size
    inputs = tf_keras.Input((rows, cols, 1), name=TRANSFORMED_IMAGE)
    probabilities = _head(trunk(grey_to_rgb(inputs)), hparams, _create)
    return tf_keras.Model(inputs, probabilities, name="whole_image_classifier")


def head_on_trunk_features(model: tf_keras.Model, hparams: ImageHParams) -> tf_keras.Model:
    """The layers of `model` after its trunk, as a model on trunk features [B, h, w, channels].

    It shares every layer (hence every weight) with `model`: training it trains `model`'s head.
    """
    trunk = model.get_layer(TRUNK_NAME)
    features = tf_keras.Input(trunk.output_shape[1:], name=FEATURES_INPUT_NAME)
    return tf_keras.Model(features, _head(features, hparams, lambda name, _factory: model.get_layer(name)),
                          name="whole_image_head")
