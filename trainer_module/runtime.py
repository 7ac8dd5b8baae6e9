"""Runtime switches shared by both run_fns: seeds and op determinism, distribution strategy, mixed precision, step
counts, TensorBoard and the training summary written next to the logs."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from typing import Any, Iterator, Optional, Sequence

import tensorflow as tf
import tf_keras
# TF 2.16 exports only the switch that turns op determinism on; the one that turns it off and the query live here.
from tensorflow.python.framework import config as tf_config

from mammo_tfx.names import TRAINING_SUMMARY_FILE
from trainer_module.checkpoints import CheckpointStore
from trainer_module.hparams import Distribution, TrainingConfig
from trainer_module.schedule import StepResult

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def reproducible(config: TrainingConfig) -> Iterator[None]:
    """Seeds Python, NumPy and TensorFlow with `config.seed` (Keras draws the seeds of unseeded initialisers and
    dropout from Python's generator) and, with `config.deterministic_ops`, turns on TensorFlow's op determinism
    until the block ends: op determinism is process-wide, and the LocalDagRunner runs the Evaluator and the other
    components after the Trainer in the same process, where it would only cost speed."""
    tf_keras.utils.set_random_seed(config.seed)
    was_deterministic = tf_config.is_op_determinism_enabled()
    _set_op_determinism(config.deterministic_ops)
    logger.info("training seed %d, op determinism %s", config.seed, "on" if config.deterministic_ops else "off")
    try:
        yield
    finally:
        _set_op_determinism(was_deterministic)


def _set_op_determinism(enabled: bool) -> None:
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def select_strategy(distribution: Distribution) -> tf.distribute.Strategy:
    """MirroredStrategy over the visible GPUs ('auto' only when there is one), else the default."""
    gpus = tf.config.list_logical_devices("GPU")
    if distribution == Distribution.MIRRORED or (distribution == Distribution.AUTO and gpus):
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logger.info("distribution: %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


@contextlib.contextmanager
def precision_policy(mixed_precision: bool) -> Iterator[None]:
    """Sets the global Keras dtype policy for model building, restoring the previous one after."""
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def steps_per_epoch(config: TrainingConfig, train_steps: Optional[int]) -> int:
    """hparams.steps_per_epoch if set, else TFX's TrainArgs.num_steps spread over the schedule's epochs."""
    if config.steps_per_epoch is not None:
        return config.steps_per_epoch
    if not train_steps:
        raise ValueError("set hparams.steps_per_epoch or the Trainer's TrainArgs(num_steps=...)")
    return max(1, train_steps // max(1, config.total_epochs))


def validation_batches(config: TrainingConfig, eval_steps: Optional[int]) -> Optional[int]:
    """Batches per validation: hparams.validation_steps, else EvalArgs.num_steps, else the whole split."""
    return config.validation_steps or eval_steps or None


def tensorboard_callbacks(model_run_dir: Optional[str]) -> list[tf_keras.callbacks.Callback]:
    if not model_run_dir:
        return []
    return [tf_keras.callbacks.TensorBoard(log_dir=model_run_dir, update_freq="epoch")]


def write_training_summary(model_run_dir: Optional[str], stage: str, results: Sequence[StepResult],
                           extra: dict[str, Any], checkpoints: Optional[CheckpointStore] = None) -> Optional[str]:
    """Writes what each step ran (epochs, losses, validation metrics) as JSON in model_run_dir, and the epochs done
    before this attempt (`resumed_from_epoch`, 0 for a training that started afresh)."""
    if not model_run_dir:
        return None
    tf.io.gfile.makedirs(model_run_dir)
    path = os.path.join(model_run_dir, TRAINING_SUMMARY_FILE)
    summary = {"stage": stage, "steps": [dataclasses.asdict(result) for result in results],
               "resumed_from_epoch": checkpoints.resumed_from_epoch if checkpoints else 0, **extra}
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(summary, handle, indent=2)
    return path
