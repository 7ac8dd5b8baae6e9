"""TFX Trainer `run_fn` of stage 2: the whole-image classifier on ExampleGen examples.

`fn_args.base_model` is stage 1's export (Trainer `base_model=patch_trainer.outputs['model']`):
its trunk is fine-tuned here, and a second, untouched copy of the patch classifier goes into the
export for the `heatmap` signature. custom_config: {'hparams': ImageHParams fields (defaults for missing ones),
'image_limits': ImageLimits fields the export's graph enforces, 'screening': ScreeningOptions fields of the
calibration and operating thresholds fitted on the eval split after training (export.py), 'checkpoints_dir' as for
the patch Trainer};
`init_from` fine-tunes an existing whole-image model (export dir or Keras .h5) of the same architecture.
A fine-tune run (pipeline/config.py `base_model`) trains no patch stage: without `fn_args.base_model`, `init_from`
must be a whole-image export, whose architecture, weights and heatmap patch classifier the run starts from.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import tf_keras

from mammo_tfx.evaluation.screening import ScreeningOptions
from mammo_tfx.example_files import first_image_png
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.warmup import write_warmup_file
from trainer_module import inputs, runtime
from trainer_module.backbones import TRUNK_NAME, backbone_spec
from trainer_module.export import export_whole_image_model, heatmap_window
from trainer_module.hparams import (ImageHParams, TrainScope, hparams_from_custom_config,
                                    image_limits_from_custom_config, screening_options_from_custom_config)
from trainer_module.metrics import MalignantAUC
from trainer_module.model_io import load_heatmap_patch_model, load_patch_model, load_whole_image_weights
from trainer_module.patch_model import build_patch_model
from trainer_module.patch_trainer import open_stage_data, stage_checkpoints
from trainer_module.schedule import FitTarget, run_schedule
from trainer_module.trunk_cache import CachedTrunkFeatures
from trainer_module.whole_image_model import MALIGNANT_IMAGE_CLASS, build_whole_image_model, head_on_trunk_features

logger = logging.getLogger(__name__)

STAGE = "whole_image"


def image_metrics() -> list:
    return ["accuracy", MalignantAUC([MALIGNANT_IMAGE_CLASS], name="auc")]


def _trains_on_cached_features(hparams: ImageHParams) -> bool:
    return hparams.cache_trunk_features and any(
        step.scope == TrainScope.NEW_LAYERS and step.epochs > 0 for step in hparams.schedule)


def weights_digest(model: tf_keras.Model) -> str:
    """SHA-256 of a model's weight values in its weight order: what a fine-tune run records of its start."""
    digest = hashlib.sha256()
    for value in model.get_weights():
        digest.update(np.ascontiguousarray(value, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _models_from_patch_stage(base_model: str, hparams: ImageHParams):
    """The whole-image model on stage 1's trunk, and a frozen copy of stage 1's classifier for the heatmap."""
    patch_hparams, patch_model = load_patch_model(base_model)
    heatmap_window(patch_hparams)
    _, original_patch_model = load_patch_model(base_model)
    model = build_whole_image_model(patch_model.get_layer(TRUNK_NAME), hparams)
    if hparams.init_from:
        load_whole_image_weights(model, hparams.init_from)
        logger.info("whole-image model initialised from %s", hparams.init_from)
    return hparams, patch_hparams, model, original_patch_model


def _models_from_base_model(hparams: ImageHParams):
    """A fine-tune run's start: the base model's whole-image model (its architecture and weights) and its heatmap
    patch classifier; the schedule, augmentation and the rest of `hparams` are this run's."""
    patch_hparams, base_hparams, original_patch_model = load_heatmap_patch_model(hparams.init_from)
    if tuple(base_hparams.image_size) != tuple(hparams.image_size):
        raise ValueError(f"the base model {hparams.init_from} works on {base_hparams.image_size[0]}x"
                         f"{base_hparams.image_size[1]} images and this run ingests {hparams.image_size[0]}x"
                         f"{hparams.image_size[1]}: set ingest.height and ingest.width to the base model's size")
    hparams = dataclasses.replace(hparams, top_block=base_hparams.top_block, dropout=base_hparams.dropout)
    trunk = build_patch_model(dataclasses.replace(patch_hparams, backbone_weights=None)).get_layer(TRUNK_NAME)
    model = build_whole_image_model(trunk, hparams)
    load_whole_image_weights(model, hparams.init_from)
    logger.info("fine-tuning the whole-image model of %s (no patch stage)", hparams.init_from)
    return hparams, patch_hparams, model, original_patch_model


def run_fn(fn_args) -> None:
    """Trains the whole-image classifier through its schedule and exports it."""
    hparams = hparams_from_custom_config(ImageHParams, fn_args.custom_config)
    image_limits = image_limits_from_custom_config(fn_args.custom_config)
    screening_options = screening_options_from_custom_config(fn_args.custom_config)
    if not fn_args.base_model and not hparams.init_from:
        raise ValueError("the whole-image Trainer needs base_model = the patch Trainer's model output, or "
                         "hparams.init_from = a whole-image export to fine-tune")
    with runtime.reproducible(hparams):
        _train_and_export(fn_args, hparams, image_limits, screening_options)
    logger.info("whole-image classifier exported to %s", fn_args.serving_model_dir)


def _train_and_export(fn_args, hparams: ImageHParams, image_limits: ImageLimits,
                      screening_options: ScreeningOptions) -> None:
    spec = inputs.whole_image_example_spec(hparams.image_size, hparams.train_views)
    tf_transform_output, train_dataset, validation_dataset = open_stage_data(fn_args, hparams, spec)
    checkpoints = stage_checkpoints(fn_args, hparams, STAGE)
    with runtime.precision_policy(hparams.mixed_precision):
        with runtime.select_strategy(hparams.distribution).scope():
            hparams, patch_hparams, model, original_patch_model = (
                _models_from_patch_stage(fn_args.base_model, hparams) if fn_args.base_model
                else _models_from_base_model(hparams))
            original_patch_model.trainable = False
            initial_weights = weights_digest(model)
            # Built in the strategy's scope like the model whose layers it shares.
            head = head_on_trunk_features(model, hparams) if _trains_on_cached_features(hparams) else None

        def head_on_cached_features() -> FitTarget:
            # Called by the schedule when a 'new_layers' step is about to train: not at all when a resumed
            # schedule is past those steps (computing the features is the expensive part).
            cache = CachedTrunkFeatures.compute(
                model.get_layer(TRUNK_NAME), inputs.tfx_train_split_once(fn_args, tf_transform_output, spec, hparams),
                validation_dataset, hparams.augmentation)
            return cache.fit_target(head, hparams)

        results = run_schedule(
            FitTarget(model, train_dataset, validation_dataset),
            backbone_spec(patch_hparams.backbone, patch_hparams.small_backbone_widths), hparams,
            runtime.steps_per_epoch(hparams, fn_args.train_steps), image_metrics,
            runtime.tensorboard_callbacks(fn_args.model_run_dir),
            head_on_cached_features if head is not None else None, checkpoints)
        # The eval split only: the test split, which the Trainer never sees, judges the calibrated model.
        export_whole_image_model(model, original_patch_model, hparams, patch_hparams, tf_transform_output,
                                 fn_args.serving_model_dir, fn_args.eval_files, screening_options, image_limits)
    # TF Serving replays this at load so the first real request does not pay for graph tracing; the Pusher copies
    # it with the model.
    write_warmup_file(fn_args.serving_model_dir, [first_image_png(fn_args.eval_files)])
    runtime.write_training_summary(fn_args.model_run_dir, STAGE, results,
                                   {"hparams": hparams.to_dict(), "patch_hparams": patch_hparams.to_dict(),
                                    "initial_weights_sha256": initial_weights},
                                   checkpoints)
    if checkpoints:
        checkpoints.clear()
