"""Layer-wise training schedules: which layers train in which step, recompiled per step.

Patch classifier (3 steps): new layers (the head) only; + top of trunk; all layers.
Whole-image classifier (2 steps): new layers (top blocks + head) with the trunk frozen; all layers.
Layers are chosen by name (backbones.BackboneSpec). In TF2, a BatchNormalization layer with
trainable=False runs in inference mode, so frozen BN keeps its moving statistics (the Keras 2.0
seed still updated them; docs/training.md).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional, Sequence

import tensorflow as tf
import tf_keras

from trainer_module.backbones import TRUNK_NAME, BackboneSpec, is_top_of_trunk
from trainer_module.callbacks import BestWeightsKeeper
from trainer_module.checkpoints import EPOCHS_DONE_KEY, CheckpointStore
from trainer_module.hparams import TrainingConfig, TrainingStep, TrainScope

logger = logging.getLogger(__name__)
# Keras prints a line per epoch to stdout where INFO logs are shown (`mammo-tfx --verbose`, Kubeflow's container
# logs); the local console has the tool's own progress lines instead.
_FIT_VERBOSITY = 2


def set_trainable_scope(model: tf_keras.Model, scope: TrainScope, spec: BackboneSpec) -> None:
    """Makes exactly the layers of `scope` trainable (the model must contain a sub-model 'trunk')."""
    trunk = model.get_layer(TRUNK_NAME)
    model.trainable = True  # recursive: resets every layer before narrowing
    if scope == TrainScope.ALL:
        return
    if scope == TrainScope.NEW_LAYERS:
        trunk.trainable = False
        return
    for layer in trunk.layers:
        layer.trainable = is_top_of_trunk(layer.name, spec)


def trainable_layer_names(model: tf_keras.Model) -> set[str]:
    """Names of the layers (trunk layers included) that currently own trainable weights."""
    names: set[str] = set()
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            names.update(inner.name for inner in layer.layers if inner.trainable_weights)
        elif layer.trainable_weights:
            names.add(layer.name)
    return names


def set_weight_decay(model: tf_keras.Model, weight_decay: float) -> None:
    """Sets the L2 factor of every regularised layer outside the trunk (the new layers).

    The regulariser object is read when the train function is traced, so the new factor holds
    from the next compile on (schedule steps recompile).
    """
    for layer in model.layers:
        regularizer = getattr(layer, "kernel_regularizer", None)
        if regularizer is not None and layer.name != TRUNK_NAME:
            regularizer.l2 = float(weight_decay)


def compile_for_step(model: tf_keras.Model, step: TrainingStep,
                     metrics_factory: Callable[[], list]) -> None:
    # Adam as in the paper; tf_keras wraps it in a LossScaleOptimizer under mixed_float16.
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=step.learning_rate),
                  loss=tf_keras.losses.CategoricalCrossentropy(),
                  metrics=metrics_factory(),
                  weighted_metrics=[])


@dataclasses.dataclass(frozen=True)
class FitTarget:
    """What a step's `fit` trains: a model (sharing its layers with the scheduled model) and its data."""

    model: tf_keras.Model
    train_dataset: tf.data.Dataset
    validation_dataset: tf.data.Dataset


@dataclasses.dataclass
class StepResult:
    """What one schedule step did, for logs and the training summary; also the progress a resume starts from."""

    index: int
    scope: str
    learning_rate: float
    weight_decay: float
    epochs_planned: int
    epochs_run: int
    history: dict[str, list[float]]
    stopped_early: bool = False

    @property
    def complete(self) -> bool:
        return self.stopped_early or self.epochs_run >= self.epochs_planned


class _ProgressRecorder(tf_keras.callbacks.Callback):
    """Adds each epoch's logs to its step's result and, with a checkpoint store, checkpoints the epoch.

    Runs after the BestWeightsKeeper (so the best epoch is known) and after EarlyStopping (so a step that stops
    early is saved as complete, and a resume does not re-open it).
    """

    def __init__(self, results: list[StepResult], keeper: BestWeightsKeeper, weights_of: tf_keras.Model,
                 checkpoints: Optional[CheckpointStore]) -> None:
        super().__init__()
        self._results, self._keeper, self._weights_of, self._checkpoints = results, keeper, weights_of, checkpoints

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        result = self._results[-1]
        result.epochs_run += 1
        for key, value in (logs or {}).items():
            result.history.setdefault(key, []).append(float(value))
        result.stopped_early = bool(self.model.stop_training) and result.epochs_run < result.epochs_planned
        if self._checkpoints is not None:
            best = self._keeper.best_epoch
            self._checkpoints.save_epoch(self._weights_of, self.model.optimizer,
                                         _progress_state(self._results, self._keeper),
                                         best_epochs_done=None if best is None else best + 1)


def _progress_state(results: Sequence[StepResult], keeper: BestWeightsKeeper) -> dict:
    return {EPOCHS_DONE_KEY: sum(result.epochs_run for result in results),
            "steps": [dataclasses.asdict(result) for result in results],
            "best_value": keeper.best_value, "best_epoch": keeper.best_epoch}


def _resume_progress(state: dict, checkpoints: CheckpointStore, keeper: BestWeightsKeeper,
                     model: tf_keras.Model) -> list[StepResult]:
    """The steps begun before the kill; puts the best epoch's weights (read into `model`) in `keeper`."""
    if checkpoints.restore_best(state, model):
        keeper.resume(state["best_value"], state["best_epoch"])
    return [StepResult(**step) for step in state["steps"]]


def run_schedule(
    images: FitTarget,
    spec: BackboneSpec,
    hparams: TrainingConfig,
    steps_per_epoch: int,
    metrics_factory: Callable[[], list],
    extra_callbacks: Sequence[tf_keras.callbacks.Callback] = (),
    new_layers_target: Optional[Callable[[], FitTarget]] = None,
    checkpoints: Optional[CheckpointStore] = None,
) -> list[StepResult]:
    """Trains `images.model` through `hparams.schedule`, then restores the best epoch's weights.

    The best epoch is the one with the highest `hparams.best_model_monitor`. Epoch numbers continue across steps
    (TensorBoard shows one curve). Early stopping, when `hparams.early_stopping_patience` is set, watches val_loss
    within each step. `new_layers_target`, when given, makes what 'new_layers' steps fit instead of the model on
    images: the new layers as a model on cached trunk features (trunk_cache.py); it is called once, when the first
    such step is about to train. A step's own steps_per_epoch and weight_decay, when set, replace
    `steps_per_epoch` and `hparams.weight_decay`. With `checkpoints`, every epoch is checkpointed, and a schedule
    that was checkpointed before resumes after its last checkpointed epoch (checkpoints.py).
    """
    model, steps = images.model, hparams.schedule
    keeper = BestWeightsKeeper(hparams.best_model_monitor, weights_of=model)
    state = checkpoints.load() if checkpoints else None
    results = _resume_progress(state, checkpoints, keeper, model) if state else []
    epoch = sum(result.epochs_run for result in results)
    begun = {result.index: result for result in results}
    if state:
        next_step = next((index for index, step in enumerate(steps, start=1)
                          if step.epochs and not (index in begun and begun[index].complete)), None)
        logger.info("resuming %s from epoch %d (%s) from %s", checkpoints.stage, epoch,
                    f"schedule step {next_step} of {len(steps)}" if next_step else "schedule complete",
                    checkpoints.directory)
        checkpoints.restore_latest(state, model)  # the keeper holds the best epoch's weights already
    new_layers_fit: Optional[FitTarget] = None
    for index, step in enumerate(steps, start=1):
        weight_decay = hparams.weight_decay if step.weight_decay is None else step.weight_decay
        if step.epochs == 0:
            logger.info("step %d (%s): 0 epochs, skipped", index, step.scope.value)
            continue
        result = begun.get(index)
        if result is not None and result.complete:
            continue
        set_trainable_scope(model, step.scope, spec)
        set_weight_decay(model, weight_decay)
        target = images
        if step.scope == TrainScope.NEW_LAYERS and new_layers_target:
            new_layers_fit = new_layers_fit or new_layers_target()
            target = new_layers_fit
        compile_for_step(target.model, step, metrics_factory)
        if result is None:
            result = StepResult(index, step.scope.value, step.learning_rate, weight_decay, step.epochs, 0, {})
            results.append(result)
        else:  # resumed within this step: its optimizer state goes on too
            optimizer = target.model.optimizer
            with target.model.distribute_strategy.scope():
                optimizer.build(target.model.trainable_variables)
            checkpoints.restore_latest(state, model, optimizer)
        callbacks: list[tf_keras.callbacks.Callback] = [keeper]
        if hparams.early_stopping_patience:
            callbacks.append(tf_keras.callbacks.EarlyStopping(monitor="val_loss",
                                                              patience=hparams.early_stopping_patience))
        callbacks += [_ProgressRecorder(results, keeper, model, checkpoints), *extra_callbacks]
        logger.info("step %d/%d: scope=%s lr=%g weight_decay=%g epochs=%d trainable weights=%d%s",
                    index, len(steps), step.scope.value, step.learning_rate, weight_decay, step.epochs,
                    len(target.model.trainable_weights),
                    " (on cached trunk features)" if target is not images else "")
        step_start = epoch - result.epochs_run
        target.model.fit(target.train_dataset, validation_data=target.validation_dataset,
                         initial_epoch=epoch, epochs=step_start + step.epochs,
                         steps_per_epoch=step.steps_per_epoch or steps_per_epoch,
                         callbacks=callbacks, verbose=_FIT_VERBOSITY if logger.isEnabledFor(logging.INFO) else 0)
        epoch = step_start + result.epochs_run
        logger.info("step %d done after %d epochs: loss=%s val_loss=%s %s=%s", index, result.epochs_run,
                    _last(result.history, "loss"), _last(result.history, "val_loss"), hparams.best_model_monitor,
                    _last(result.history, hparams.best_model_monitor))
    keeper.restore()
    return results


def _last(record: dict[str, list[float]], key: str) -> str:
    values = record.get(key)
    return f"{values[-1]:.4f}" if values else "n/a"
