"""Keras copies of the trained models stored inside each serving export.

Layout added to a SavedModel directory (TF ignores extra files; Pusher copies them along):
    <export_dir>/keras/weights.h5      Keras weights of the trained model
    <export_dir>/keras/patch_weights.h5 (whole image only) weights of the patch classifier behind the
                                       `heatmap` signature, so a fine-tune run keeps it
    <export_dir>/keras/model_info.json the export's ModelInfo (mammo_tfx/serving/model_info.py: its kind, the
                                       hparams to rebuild it, the image limits its signatures enforce and, for a
                                       whole-image export, its serving geometry and screening record)
Models are rebuilt from the stored hparams with this package's builders and the weights loaded,
so no custom Keras objects need to be deserialised. Stage 2 reads stage 1's copy from
`fn_args.base_model`; `init_from` reads a whole-image copy (or a plain Keras .h5 file), and a fine-tune run
(no patch stage) rebuilds the heatmap patch classifier of its base model from one (`load_heatmap_patch_model`).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import tensorflow as tf
import tf_keras

from mammo_tfx.evaluation.calibration import ScreeningRecord
from mammo_tfx.names import KERAS_DIR
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import (PATCH_KIND, WHOLE_IMAGE_KIND, ModelInfo, ServingGeometry, read_model_info,
                                          write_model_info)
from trainer_module.hparams import ImageHParams, PatchHParams
from trainer_module.patch_model import build_patch_model

WEIGHTS_FILE = "weights.h5"
HEATMAP_PATCH_WEIGHTS_FILE = "patch_weights.h5"


@contextlib.contextmanager
def _all_layers_trainable(model: tf_keras.Model) -> Iterator[None]:
    """Every layer trainable inside the block; each layer's own flag restored after it."""
    layers = [model] + [module for module in model.submodules if isinstance(module, tf_keras.layers.Layer)]
    flags = [layer.trainable for layer in layers]
    model.trainable = True
    try:
        yield
    finally:
        # Outer layers first (submodules lists them breadth-first): setting a layer's flag sets its sublayers'.
        for layer, flag in zip(layers, flags):
            layer.trainable = flag


def save_keras_copy(model: tf_keras.Model, export_dir: str, patch_hparams: PatchHParams, image_limits: ImageLimits,
                    image_hparams: Optional[ImageHParams] = None,
                    serving_geometry: Optional[ServingGeometry] = None,
                    screening: Optional[ScreeningRecord] = None,
                    heatmap_patch_model: Optional[tf_keras.Model] = None) -> str:
    """Writes the model's weights and its ModelInfo under <export_dir>/keras/: the hparams needed to rebuild it,
    the image limits the export's signatures enforce and, for a whole-image export (`image_hparams` given), its
    serving geometry, its screening record (None: no calibration and thresholds were fitted) and the patch
    classifier of its heatmap signature."""
    info = ModelInfo(kind=PATCH_KIND if image_hparams is None else WHOLE_IMAGE_KIND,
                     patch_hparams=patch_hparams.to_dict(), image_limits=image_limits,
                     image_hparams=None if image_hparams is None else image_hparams.to_dict(),
                     geometry=serving_geometry, screening=None if screening is None else screening.to_dict())
    keras_dir = os.path.join(export_dir, KERAS_DIR)
    tf.io.gfile.makedirs(keras_dir)
    # The .h5 format lists a layer's trainable weights before its frozen ones, so a model saved with a frozen
    # trunk (a schedule that ends with a 'new_layers' step) would store another order than a freshly built model
    # loads: save it with every layer trainable, and leave the caller's model as it was.
    with _all_layers_trainable(model):
        model.save_weights(os.path.join(keras_dir, WEIGHTS_FILE))
    if heatmap_patch_model is not None:
        with _all_layers_trainable(heatmap_patch_model):
            heatmap_patch_model.save_weights(os.path.join(keras_dir, HEATMAP_PATCH_WEIGHTS_FILE))
    write_model_info(export_dir, info)
    return keras_dir


def _rebuilt_patch_model(hparams: PatchHParams, weights_path: str) -> tf_keras.Model:
    # The exported weights replace any backbone init, so no weights file is needed to rebuild.
    model = build_patch_model(PatchHParams.from_dict({**hparams.to_dict(), "backbone_weights": None}))
    _load_weights(model, weights_path)
    return model


def load_patch_model(export_dir: str) -> tuple[PatchHParams, tf_keras.Model]:
    """Rebuilds stage 1's patch classifier from its export (e.g. `fn_args.base_model`)."""
    info = read_model_info(export_dir)
    if info.kind != PATCH_KIND:
        raise ValueError(f"{export_dir} holds a {info.kind} model, expected a patch classifier export")
    hparams = PatchHParams.from_dict(info.patch_hparams)
    return hparams, _rebuilt_patch_model(hparams, os.path.join(export_dir, KERAS_DIR, WEIGHTS_FILE))


def load_heatmap_patch_model(export_dir: str) -> tuple[PatchHParams, ImageHParams, tf_keras.Model]:
    """The patch hparams, the image hparams (the architecture) and the heatmap patch classifier of a whole-image
    export: what a fine-tune run, which trains no patch stage, keeps of its base model."""
    info = read_model_info(export_dir)
    if info.kind != WHOLE_IMAGE_KIND:
        raise ValueError(f"the base model {export_dir} holds a {info.kind} model, not a whole-image export of this "
                         "project")
    weights_path = os.path.join(export_dir, KERAS_DIR, HEATMAP_PATCH_WEIGHTS_FILE)
    if not tf.io.gfile.exists(weights_path):
        raise FileNotFoundError(f"the base model {export_dir} has no {KERAS_DIR}/{HEATMAP_PATCH_WEIGHTS_FILE} (the "
                                "patch classifier of its heatmap signature); it was exported by an older version of "
                                "this project: re-export it or train it again")
    patch_hparams = PatchHParams.from_dict(info.patch_hparams)
    image_hparams = ImageHParams.from_dict(info.image_hparams)
    return patch_hparams, image_hparams, _rebuilt_patch_model(patch_hparams, weights_path)


def load_whole_image_weights(model: tf_keras.Model, init_from: str) -> None:
    """Loads a whole-image model of the same architecture: an export directory of this module or a
    Keras .h5 file (full model or weights)."""
    if tf.io.gfile.isdir(init_from):
        info = read_model_info(init_from)
        if info.kind != WHOLE_IMAGE_KIND:
            raise ValueError(f"init_from {init_from} holds a {info.kind} model, expected a whole-image one")
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
