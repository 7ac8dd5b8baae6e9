"""Epoch checkpoints of a Trainer, so that a Trainer killed mid-run and started again resumes its schedule.

TFX gives a re-run Trainer a new execution with new output folders (and removes a failed execution's), so the
checkpoints live outside the artifacts: in the folder the pipeline passes as custom_config['checkpoints_dir'], in a
subfolder named by a fingerprint of what determines the training (input artifacts and hparams). Same inputs and
hparams: same subfolder, resume; anything changed: another subfolder, fresh start.

A subfolder holds TensorFlow checkpoints `epoch-<epochs done>` (model weights, and the optimizer of the step being
fit) and training_state.json, the schedule's progress (schedule.py), which names the latest checkpoint and the best
epoch's. The state file is written last and replaced atomically, so it only ever names complete checkpoints; the
checkpoints it no longer names are deleted after it. Paths go through tf.io.gfile (bucket pipeline roots).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Mapping, Optional

import tensorflow as tf
import tf_keras

from mammo_tfx.names import EPOCH_CHECKPOINT_PREFIX, TRAINING_STATE_FILE
from trainer_module.hparams import CHECKPOINTS_CONFIG_KEY, TrainingConfig

logger = logging.getLogger(__name__)

_LATEST_KEY = "latest_checkpoint"
_BEST_KEY = "best_checkpoint"
EPOCHS_DONE_KEY = "epochs_done"


def training_fingerprint(training_inputs: Mapping[str, Any], hparams: TrainingConfig) -> str:
    """A short sha256 of the input artifact paths and the hparams (JSON, keys sorted)."""
    identity = json.dumps({"inputs": training_inputs, "hparams": hparams.to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def checkpoint_name(epochs_done: int) -> str:
    return f"{EPOCH_CHECKPOINT_PREFIX}{epochs_done}"


class CheckpointStore:
    """One training's checkpoint folder: saves an epoch's checkpoint and the schedule's state, and reads them back."""

    def __init__(self, directory: str, stage: str) -> None:
        self.directory = directory
        self.stage = stage
        self.resumed_from_epoch = 0  # set by load(): epochs done before this attempt

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Mapping[str, Any]], stage: str,
                           training_inputs: Mapping[str, Any], hparams: TrainingConfig) -> Optional["CheckpointStore"]:
        """The store of this training under custom_config['checkpoints_dir']; None when the key is absent."""
        root = (custom_config or {}).get(CHECKPOINTS_CONFIG_KEY)
        if not root:
            return None
        return cls(os.path.join(root, training_fingerprint(training_inputs, hparams)), stage)

    @property
    def _state_path(self) -> str:
        return os.path.join(self.directory, TRAINING_STATE_FILE)

    def load(self) -> Optional[dict[str, Any]]:
        """The saved state of the schedule (schedule.py's, with the checkpoint names), or None to start afresh."""
        if not tf.io.gfile.exists(self._state_path):
            return None
        with tf.io.gfile.GFile(self._state_path) as handle:
            try:
                state = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self._state_path}: not a training state ({error}); delete the folder "
                                 f"{self.directory} to train afresh") from error
        self.resumed_from_epoch = int(state[EPOCHS_DONE_KEY])
        return state

    def save_epoch(self, model: tf_keras.Model, optimizer: Optional[tf_keras.optimizers.Optimizer],
                   state: dict[str, Any], best_epochs_done: Optional[int]) -> None:
        """Checkpoints the model (and optimizer) after state[EPOCHS_DONE_KEY] epochs, then the state.

        `best_epochs_done` names the best epoch's checkpoint, which is kept: it was written at the end of that epoch.
        """
        tf.io.gfile.makedirs(self.directory)
        latest = checkpoint_name(state[EPOCHS_DONE_KEY])
        _checkpoint(model, optimizer).write(os.path.join(self.directory, latest))
        best = checkpoint_name(best_epochs_done) if best_epochs_done is not None else None
        temporary = self._state_path + ".tmp"
        with tf.io.gfile.GFile(temporary, "w") as handle:
            json.dump({**state, _LATEST_KEY: latest, _BEST_KEY: best}, handle, indent=2)
        tf.io.gfile.rename(temporary, self._state_path, overwrite=True)
        self._delete_checkpoints_except({latest, best})

    def restore_latest(self, state: Mapping[str, Any], model: tf_keras.Model,
                       optimizer: Optional[tf_keras.optimizers.Optimizer] = None) -> None:
        """Loads the latest checkpoint's weights into `model`, and its optimizer state into a built `optimizer`."""
        self._restore(state[_LATEST_KEY], model, optimizer)

    def restore_best(self, state: Mapping[str, Any], model: tf_keras.Model) -> bool:
        """Loads the best epoch's weights into `model`; False when no epoch was best (all monitor values NaN)."""
        if not state.get(_BEST_KEY):
            return False
        self._restore(state[_BEST_KEY], model, None)
        return True

    def clear(self) -> None:
        """Deletes this training's checkpoints (after a successful export: a deliberate re-run trains afresh)."""
        if tf.io.gfile.exists(self.directory):
            tf.io.gfile.rmtree(self.directory)

    def _restore(self, name: str, model: tf_keras.Model, optimizer: Optional[tf_keras.optimizers.Optimizer]) -> None:
        prefix = os.path.join(self.directory, name)
        status = _checkpoint(model, optimizer).read(prefix)
        # Every variable of the model (and of the optimizer, when given) must come from the checkpoint; a checkpoint
        # may hold an optimizer nobody asks for.
        status.expect_partial().assert_existing_objects_matched()

    def _delete_checkpoints_except(self, keep: set[Optional[str]]) -> None:
        for path in tf.io.gfile.glob(os.path.join(self.directory, EPOCH_CHECKPOINT_PREFIX + "*")):
            # A TensorFlow checkpoint `prefix` is the files prefix.index and prefix.data-*.
            if os.path.basename(path).split(".")[0] not in keep:
                tf.io.gfile.remove(path)


def _checkpoint(model: tf_keras.Model, optimizer: Optional[tf_keras.optimizers.Optimizer]) -> tf.train.Checkpoint:
    # The model's layers rather than the model: a compiled model also tracks its optimizer, which a read would then
    # restore into whatever optimizer the model is compiled with later (deferred restoration), also that of another
    # step. tf_keras optimizers track their slot variables by position in the list they were built from, so an
    # optimizer's state fits only the optimizer of the same step (the same trainable variables).
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    return (tf.train.Checkpoint(layers=layers, optimizer=optimizer) if optimizer
            else tf.train.Checkpoint(layers=layers))
