"""Stage-1 model: the 5-class patch classifier, trunk -> GAP -> Dropout -> Dense(5, softmax, L2).

One softmax output per lesion class, in the order of the mask codes (mammo_tfx/lesion_classes.py).
"""
from __future__ import annotations

from typing import Optional

import tf_keras

from mammo_tfx.lesion_classes import CLASS_NAMES, MALIGNANT_CLASSES
from mammo_tfx.names import TRANSFORMED_IMAGE
from trainer_module.backbones import TRUNK_NAME, build_trunk, grey_to_rgb
from trainer_module.hparams import PatchHParams

# Output i of the head is the probability of mask code i.
PATCH_CLASSES = tuple(CLASS_NAMES[code] for code in sorted(CLASS_NAMES))
MALIGNANT_PATCH_CLASSES = tuple(sorted(MALIGNANT_CLASSES))
PATCH_HEAD_NAME = "patch_classes"


def build_patch_model(hparams: PatchHParams, trunk: Optional[tf_keras.Model] = None) -> tf_keras.Model:
    """Builds the patch classifier on [B, patch_size, patch_size, 1] centred images.

    `trunk` defaults to a fresh `build_trunk` of `hparams.backbone` (random or local weights).
    """
    if trunk is None:
        trunk = build_trunk(hparams.backbone, hparams.backbone_weights, hparams.small_backbone_widths)
    if trunk.name != TRUNK_NAME:
        raise ValueError(f"the trunk model must be named {TRUNK_NAME!r}, got {trunk.name!r}")
    size = hparams.patch_size
    inputs = tf_keras.Input((size, size, 1), name=TRANSFORMED_IMAGE)
    features = trunk(grey_to_rgb(inputs))
    if hparams.head_border_cells:
        features = tf_keras.layers.Cropping2D(hparams.head_border_cells, name="patch_centre")(features)
    pooled = tf_keras.layers.GlobalAveragePooling2D(name="patch_gap")(features)
    if hparams.dropout > 0:
        pooled = tf_keras.layers.Dropout(hparams.dropout, name="patch_dropout")(pooled)
    # float32 so the softmax stays exact under mixed precision.
    probabilities = tf_keras.layers.Dense(
        len(PATCH_CLASSES), activation="softmax", name=PATCH_HEAD_NAME, dtype="float32",
        kernel_regularizer=tf_keras.regularizers.L2(hparams.weight_decay))(pooled)
    return tf_keras.Model(inputs, probabilities, name="patch_classifier")
