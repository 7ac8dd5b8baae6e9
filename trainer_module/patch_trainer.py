"""TFX Trainer `run_fn` of stage 1: the 5-class patch classifier on PatchSampler examples.

custom_config: {'hparams': PatchHParams fields (defaults for missing ones), 'checkpoints_dir': where epoch
checkpoints go, so a killed Trainer resumes (checkpoints.py; optional)}. The patch export is stage 2's base model,
never served: its signature enforces the default ImageLimits, so a change of the serving limits leaves this
Trainer's cached execution valid.
Inputs: `fn_args.train_files` / `eval_files` (patch Examples), `transform_graph_path` (Transform
output, applied as a layer), `train_steps` / `eval_steps`. Output: the patch export in
`serving_model_dir` (export.py), TensorBoard logs and training_summary.json in `model_run_dir`.
"""
from __future__ import annotations

import logging
from typing import Optional

import tensorflow as tf
import tensorflow_transform as tft

from mammo_tfx.serving.limits import ImageLimits
from trainer_module import inputs, runtime
from trainer_module.backbone_weights import resolve_backbone_weights
from trainer_module.backbones import backbone_spec
from trainer_module.checkpoints import CheckpointStore
from trainer_module.export import export_patch_model, heatmap_window
from trainer_module.hparams import PatchHParams, TrainingConfig, hparams_from_custom_config
from trainer_module.metrics import MalignantAUC
from trainer_module.patch_model import MALIGNANT_PATCH_CLASSES, build_patch_model
from trainer_module.schedule import FitTarget, run_schedule

logger = logging.getLogger(__name__)

STAGE = "patch"


def patch_metrics() -> list:
    return ["accuracy", MalignantAUC(MALIGNANT_PATCH_CLASSES, name="auc")]


def transform_graph_dir(fn_args) -> str:
    path = getattr(fn_args, "transform_graph_path", None) or getattr(fn_args, "transform_output", None)
    if not path:
        raise ValueError("the Trainer needs the Transform graph (transform_graph=transform.outputs['transform_graph'])")
    return path


def open_stage_data(fn_args, hparams: TrainingConfig, spec: inputs.ExampleSpec
                    ) -> tuple[tft.TFTransformOutput, tf.data.Dataset, tf.data.Dataset]:
    """Opens a stage's Transform graph and its training and validation datasets."""
    tf_transform_output = tft.TFTransformOutput(transform_graph_dir(fn_args))
    train_dataset, validation_dataset = inputs.tfx_train_and_validation(fn_args, tf_transform_output, spec, hparams)
    return tf_transform_output, train_dataset, validation_dataset


def stage_checkpoints(fn_args, hparams: TrainingConfig, stage: str) -> Optional[CheckpointStore]:
    """The epoch checkpoints of this training (checkpoints.py): keyed by the input artifacts and the hparams."""
    training_inputs = {"train_files": list(fn_args.train_files), "eval_files": list(fn_args.eval_files),
                       "transform_graph": transform_graph_dir(fn_args),
                       "base_model": getattr(fn_args, "base_model", None)}
    return CheckpointStore.from_custom_config(fn_args.custom_config, stage, training_inputs, hparams)


def run_fn(fn_args) -> None:
    """Trains the patch classifier through its 3-step schedule and exports it."""
    hparams = hparams_from_custom_config(PatchHParams, fn_args.custom_config)
    heatmap_window(hparams)  # fail before training if the heatmap geometry cannot work
    resolve_backbone_weights(hparams.backbone, hparams.backbone_weights)  # fetched before the data is read
    with runtime.reproducible(hparams):
        _train_and_export(fn_args, hparams)
    logger.info("patch classifier exported to %s", fn_args.serving_model_dir)


def _train_and_export(fn_args, hparams: PatchHParams) -> None:
    tf_transform_output, train_dataset, validation_dataset = open_stage_data(
        fn_args, hparams, inputs.patch_example_spec(hparams.patch_size))
    checkpoints = stage_checkpoints(fn_args, hparams, STAGE)
    with runtime.precision_policy(hparams.mixed_precision):
        with runtime.select_strategy(hparams.distribution).scope():
            model = build_patch_model(hparams)
        results = run_schedule(
            FitTarget(model, train_dataset, validation_dataset),
            backbone_spec(hparams.backbone, hparams.small_backbone_widths), hparams,
            runtime.steps_per_epoch(hparams, fn_args.train_steps), patch_metrics,
            runtime.tensorboard_callbacks(fn_args.model_run_dir), checkpoints=checkpoints)
        export_patch_model(model, hparams, tf_transform_output, fn_args.serving_model_dir, ImageLimits())
    runtime.write_training_summary(fn_args.model_run_dir, STAGE, results, {"hparams": hparams.to_dict()},
                                   checkpoints)
    if checkpoints:
        checkpoints.clear()
