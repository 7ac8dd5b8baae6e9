"""Stage-2 model: patch trunk (head removed) -> top blocks -> GAP -> Dropout -> Dense(2, softmax).

Top blocks (seed-methods.md 1.3): 'resnet' = bottleneck units (v1, conv-BN-ReLU), first unit of each
stage stride 2 with a projection shortcut; 'vgg' = 3x3 conv + BN + ReLU units then a 2x2 max-pool.
With the paper's sizes a 1152x896 image gives 36x28 trunk cells, then 18x14 and 9x7.
Only the new layers carry an L2 regulariser (the trunk keeps its patch training).
"""
from __future__ import annotations

import tf_keras

from trainer_module.backbones import TRUNK_NAME, grey_to_rgb
from trainer_module.hparams import ImageHParams, TopBlockSpec

IMAGE_HEAD_NAME = "image_classes"
INPUT_NAME = "image"
MALIGNANT_IMAGE_CLASS = 1


def _conv_bn(x, filters: int, kernel: int, stride: int, weight_decay: float, name: str, relu: bool = True):
    x = tf_keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                               kernel_initializer="he_normal",
                               kernel_regularizer=tf_keras.regularizers.L2(weight_decay),
                               name=f"{name}_conv")(x)
    x = tf_keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = tf_keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _bottleneck_unit(x, depth: int, expansion: int, stride: int, project: bool, weight_decay: float, name: str):
    residual = _conv_bn(x, depth, 1, stride, weight_decay, f"{name}_1")
    residual = _conv_bn(residual, depth, 3, 1, weight_decay, f"{name}_2")
    residual = _conv_bn(residual, depth * expansion, 1, 1, weight_decay, f"{name}_3", relu=False)
    shortcut = _conv_bn(x, depth * expansion, 1, stride, weight_decay, f"{name}_0", relu=False) if project else x
    added = tf_keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return tf_keras.layers.Activation("relu", name=f"{name}_out")(added)


def add_top_blocks(features, spec: TopBlockSpec, weight_decay: float):
    """Applies the top-block stages to trunk features; each stage halves the resolution."""
    x = features
    for stage, (depth, repetitions) in enumerate(zip(spec.depths, spec.repetitions), start=1):
        for unit in range(1, repetitions + 1):
            name = f"top{stage}_unit{unit}"
            if spec.kind == "resnet":
                first = unit == 1
                x = _bottleneck_unit(x, depth, spec.bottleneck_expansion, 2 if first else 1, first, weight_decay, name)
            else:
                x = _conv_bn(x, depth, 3, 1, weight_decay, name)
        if spec.kind == "vgg":
            x = tf_keras.layers.MaxPooling2D(2, padding="same", name=f"top{stage}_pool")(x)
    return x


def build_whole_image_model(trunk: tf_keras.Model, hparams: ImageHParams) -> tf_keras.Model:
    """Builds the whole-image classifier on [B, rows, cols, 1] centred images around `trunk`
    (the patch classifier's 'trunk' sub-model, whose weights it shares)."""
    if trunk.name != TRUNK_NAME:
        raise ValueError(f"the trunk model must be named {TRUNK_NAME!r}, got {trunk.name!r}")
    rows, cols = hparams.image_size
    inputs = tf_keras.Input((rows, cols, 1), name=INPUT_NAME)
    features = trunk(grey_to_rgb(inputs))
    x = add_top_blocks(features, hparams.top_block, hparams.weight_decay)
    x = tf_keras.layers.GlobalAveragePooling2D(name="image_gap")(x)
    if hparams.dropout > 0:
        x = tf_keras.layers.Dropout(hparams.dropout, name="image_dropout")(x)
    probabilities = tf_keras.layers.Dense(
        2, activation="softmax", kernel_initializer="he_normal", name=IMAGE_HEAD_NAME, dtype="float32",
        kernel_regularizer=tf_keras.regularizers.L2(hparams.weight_decay))(x)
    return tf_keras.Model(inputs, probabilities, name="whole_image_classifier")
