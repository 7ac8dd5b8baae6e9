"""Keras copies of the trained models stored inside each serving export.

Layout added to a SavedModel directory (TF ignores extra files; Pusher copies them along):
    <export_dir>/keras/weights.h5      Keras weights of the trained model
    <export_dir>/keras/patch_weights.h5 (whole image only) weights of the patch classifier behind the
                                        `heatmap` signature, so a fine-tune run keeps it
    <export_dir>/keras/model_info.json {"kind": "patch" | "whole_image", "patch_hparams": {...},
                                        "image_hparams": {...} (whole image only),
                                        "image_limits": {...} (what the serving graph refuses),
                                        "working_size": [rows, cols], "heatmap_stride": pixels,
                                        "heatmap_pooled_size": pixels (whole image only: what the
                                        signatures resize to and where heatmap cells lie, read
                                        by mammo_tfx/serving/model_info.py),
                                        "screening": {...} (whole image only: the calibration and
                                        thresholds of its graph, mammo_tfx/evaluation/calibration.py)}
Models are rebuilt from the stored hparams with this package's builders and the weights loaded,
so no custom Keras objects need to be deserialised. Stage 2 reads stage 1's copy from
`fn_args.base_model`; `init_from` reads a whole-image copy (or a plain Keras .h5 file), and a fine-tune run
(no patch stage) rebuilds the whole-image model and its heatmap patch classifier from one (`load_whole_image_base`).
"""
from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf
import tf_keras

from mammo_tfx.evaluation.calibration import SCREENING_INFO_KEY, ScreeningRecord
from mammo_tfx.names import KERAS_DIR, MODEL_INFO_FILE
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import KIND_INFO_KEY, WHOLE_IMAGE_KIND, ServingGeometry, read_model_info
from trainer_module.hparams import ImageHParams, PatchHParams
from trainer_module.patch_model import build_patch_model

WEIGHTS_FILE = "weights.h5"
HEATMAP_PATCH_WEIGHTS_FILE = "patch_weights.h5"
IMAGE_LIMITS_INFO_KEY = "image_limits"
PATCH_KIND = "patch"


def save_keras_copy(model: tf_keras.Model, export_dir: str, patch_hparams: PatchHParams, image_limits: ImageLimits,
                    image_hparams: Optional[ImageHParams] = None,
                    serving_geometry: Optional[ServingGeometry] = None,
                    screening: Optional[ScreeningRecord] = None,
                    heatmap_patch_model: Optional[tf_keras.Model] = None) -> str:
    """Writes the model's weights and the hparams needed to rebuild it under <export_dir>/keras/, with the image
    limits the export's signatures enforce (read by the model card) and, for a whole-image export, its serving
    geometry (read by predict), its screening record (calibration and thresholds) and the patch classifier of its
    heatmap signature."""
    keras_dir = os.path.join(export_dir, KERAS_DIR)
    tf.io.gfile.makedirs(keras_dir)
    # The .h5 format lists a layer's trainable weights before its frozen ones, so a model saved with a frozen
    # trunk (a schedule that ends with a 'new_layers' step) would store another order than a freshly built model
    # loads. Training is over when the copy is written: save it with every layer trainable.
    model.trainable = True
    model.save_weights(os.path.join(keras_dir, WEIGHTS_FILE))
    if heatmap_patch_model is not None:
        heatmap_patch_model.trainable = True
        heatmap_patch_model.save_weights(os.path.join(keras_dir, HEATMAP_PATCH_WEIGHTS_FILE))
    info = {KIND_INFO_KEY: PATCH_KIND if image_hparams is None else WHOLE_IMAGE_KIND,
            "patch_hparams": patch_hparams.to_dict(), IMAGE_LIMITS_INFO_KEY: image_limits.to_dict()}
    if image_hparams is not None:
        info["image_hparams"] = image_hparams.to_dict()
    if serving_geometry is not None:
        info.update(serving_geometry.to_info())
    if screening is not None:
        info[SCREENING_INFO_KEY] = screening.to_dict()
    with tf.io.gfile.GFile(os.path.join(keras_dir, MODEL_INFO_FILE), "w") as handle:
        json.dump(info, handle, indent=2)
    return keras_dir


def _rebuilt_patch_model(hparams: PatchHParams, weights_path: str) -> tf_keras.Model:
    # The exported weights replace any backbone init, so no weights file is needed to rebuild.
    model = build_patch_model(PatchHParams.from_dict({**hparams.to_dict(), "backbone_weights": None}))
    _load_weights(model, weights_path)
    return model


def load_patch_model(export_dir: str) -> tuple[PatchHParams, tf_keras.Model]:
    """Rebuilds stage 1's patch classifier from its export (e.g. `fn_args.base_model`)."""
    info = read_model_info(export_dir)
    if info.get(KIND_INFO_KEY) != PATCH_KIND:
        raise ValueError(f"{export_dir!r} holds a {info.get(KIND_INFO_KEY)!r} model, "
                         "expected a patch classifier export")
    hparams = PatchHParams.from_dict(info["patch_hparams"])
    return hparams, _rebuilt_patch_model(hparams, os.path.join(export_dir, KERAS_DIR, WEIGHTS_FILE))


def load_heatmap_patch_model(export_dir: str) -> tuple[PatchHParams, ImageHParams, tf_keras.Model]:
    """The patch hparams, the image hparams (the architecture) and the heatmap patch classifier of a whole-image
    export: what a fine-tune run, which trains no patch stage, keeps of its base model."""
    info = read_model_info(export_dir)
    if info.get(KIND_INFO_KEY) != WHOLE_IMAGE_KIND:
        raise ValueError(f"the base model {export_dir} holds a {info.get(KIND_INFO_KEY)} model, not a whole-image "
                         "export of this project")
    weights_path = os.path.join(export_dir, KERAS_DIR, HEATMAP_PATCH_WEIGHTS_FILE)
    if not tf.io.gfile.exists(weights_path):
        raise FileNotFoundError(f"the base model {export_dir} has no {KERAS_DIR}/{HEATMAP_PATCH_WEIGHTS_FILE} (the "
                                "patch classifier of its heatmap signature); it was exported by an older version of "
                                "this project: re-export it or train it again")
    patch_hparams = PatchHParams.from_dict(info["patch_hparams"])
    image_hparams = ImageHParams.from_dict(info["image_hparams"])
    return patch_hparams, image_hparams, _rebuilt_patch_model(patch_hparams, weights_path)


def load_whole_image_weights(model: tf_keras.Model, init_from: str) -> None:
    """Loads a whole-image model of the same architecture: an export directory of this module or a
    Keras .h5 file (full model or weights)."""
    if tf.io.gfile.isdir(init_from):
        info = read_model_info(init_from)
        if info.get(KIND_INFO_KEY) != WHOLE_IMAGE_KIND:
            raise ValueError(f"init_from {init_from!r} holds a {info.get(KIND_INFO_KEY)!r} model, "
                             "expected a whole-image one")
        path = os.path.join(init_from, KERAS_DIR, WEIGHTS_FILE)
    else:
        path = init_from
    _load_weights(model, path)


def _load_weights(model: tf_keras.Model, path: str) -> None:
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"model weights file {path!r} does not exist")
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(f"cannot load {path!r} into {model.name}: not the same architecture ({error})") from error
