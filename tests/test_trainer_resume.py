"""A schedule killed mid-run and started again with the same checkpoint store resumes after its last epoch, keeps
the best epoch across the kill, and starts afresh when the training's inputs or hparams change."""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.test_trainer_run_fn import TEST_PROFILE, _custom_config, _image_custom_config, run_trainer
from mammo_tfx.names import TRAINING_STATE_FILE, TRAINING_SUMMARY_FILE
from pipeline.config import load_config
from pipeline.pipeline import IMAGE_RUN_FN, PATCH_RUN_FN
from trainer_module.backbones import backbone_spec
from trainer_module.checkpoints import CheckpointStore, training_fingerprint
from trainer_module.hparams import CHECKPOINTS_CONFIG_KEY, TrainingStep, TrainScope
from trainer_module.patch_model import build_patch_model
from trainer_module.schedule import FitTarget, run_schedule

PATCH_HPARAMS = load_config("test").patch_training
SPEC = backbone_spec("small", PATCH_HPARAMS.small_backbone_widths)
# 7 epochs: 2 + 3 + 2. The monitor peaks at epoch 3 (index 2), the first epoch of step 2.
SCHEDULE = (TrainingStep(TrainScope.NEW_LAYERS, 1e-2, 2), TrainingStep(TrainScope.TOP_OF_TRUNK, 1e-2, 3),
            TrainingStep(TrainScope.ALL, 1e-2, 2))
STEP_STARTS = (0, 2, 5)  # first epoch of each step
MONITOR_BY_EPOCH = [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.6]
BEST_EPOCH = 2
STEPS_PER_EPOCH = 2
HPARAMS = dataclasses.replace(PATCH_HPARAMS, schedule=SCHEDULE, best_model_monitor="val_scripted")

# What the 'scripted' validation metric reports: set per epoch by ScriptMonitor, so the best epoch is known.
_scripted_value = tf.Variable(0.0, trainable=False)


class ScriptedMetric(tf_keras.metrics.Metric):
    def update_state(self, *args, **kwargs) -> None:
        pass

    def result(self) -> tf.Tensor:
        return tf.identity(_scripted_value)

    def reset_state(self) -> None:
        pass


def scripted_metrics() -> list:
    return [ScriptedMetric(name="scripted")]


class ScriptMonitor(tf_keras.callbacks.Callback):
    """Sets the monitor's value of each epoch, and records the epochs begun, the weights each epoch ended with and
    the optimizer's iteration count when a fit starts."""

    def __init__(self, model: tf_keras.Model) -> None:
        super().__init__()
        self._scheduled = model
        self.epochs_begun: list[int] = []
        self.weights_after: dict[int, list[np.ndarray]] = {}
        self.iterations_at_fit_start: list[int] = []
        self.new_layers_targets_made = 0

    def on_train_begin(self, logs=None) -> None:
        self.iterations_at_fit_start.append(int(self.model.optimizer.iterations.numpy()))

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epochs_begun.append(epoch)
        _scripted_value.assign(MONITOR_BY_EPOCH[epoch])

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.weights_after[epoch] = self._scheduled.get_weights()


class Killed(Exception):
    pass


class KillAfterEpoch(tf_keras.callbacks.Callback):
    """Stands for a preempted node: training stops dead after epoch `epoch` (0-based), once it is checkpointed."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self._epoch = epoch

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if epoch == self._epoch:
            raise Killed(f"killed after epoch {epoch}")


def _patches(count: int, seed: int) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count, 32, 32, 1)).astype("float32")
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, count)]
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)


def _run(store: CheckpointStore | None, seed: int = 0, kill_after: int | None = None, hparams=HPARAMS):
    """Trains a fresh tiny patch model (as a restarted Trainer would build it) through the schedule. The 'new_layers'
    step fits a target made on demand, as the whole-image Trainer's head on cached trunk features; the monitor
    counts how often it was made."""
    tf_keras.utils.set_random_seed(seed)
    model = build_patch_model(hparams)
    monitor = ScriptMonitor(model)
    callbacks = [monitor] + ([KillAfterEpoch(kill_after)] if kill_after is not None else [])
    target = FitTarget(model, _patches(32, seed=1).repeat(), _patches(8, seed=2))

    def new_layers_target() -> FitTarget:
        monitor.new_layers_targets_made += 1
        return target

    try:
        results = run_schedule(target, SPEC, hparams, STEPS_PER_EPOCH, scripted_metrics, callbacks,
                               new_layers_target, store)
    except Killed:
        results = None
    return model, monitor, results


def _assert_same_weights(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


@pytest.mark.e2e  # trains the tiny patch model for a schedule of 7 epochs
@pytest.mark.parametrize("kill_after, resumed_at", [(0, 1), (3, 4), (4, 5)],
                         ids=["inside-step-1", "inside-step-2", "at-step-boundary"])
def test_killed_schedule_resumes_after_its_last_epoch_and_keeps_the_best(tmp_path, kill_after, resumed_at):
    store = CheckpointStore(str(tmp_path / "ckpt"), "patch")
    _, killed, results = _run(store, kill_after=kill_after)
    assert results is None and killed.epochs_begun == list(range(kill_after + 1))
    assert killed.new_layers_targets_made == 1

    restarted = CheckpointStore(store.directory, "patch")
    model, resumed, results = _run(restarted, seed=1)  # another seed: nothing may come from a fresh build
    assert restarted.resumed_from_epoch == kill_after + 1
    # Made again only to finish the 'new_layers' step: a resume past it computes no trunk features.
    assert resumed.new_layers_targets_made == (1 if resumed_at < STEP_STARTS[1] else 0)
    # Epoch numbering continues; no epoch is run twice and none is skipped.
    assert resumed.epochs_begun == list(range(resumed_at, len(MONITOR_BY_EPOCH)))
    assert [(r.scope, r.epochs_run) for r in results] == [("new_layers", 2), ("top_of_trunk", 3), ("all", 2)]
    assert [len(r.history["val_scripted"]) for r in results] == [2, 3, 2]
    np.testing.assert_allclose(sum((r.history["val_scripted"] for r in results), []), MONITOR_BY_EPOCH, rtol=1e-6)
    # Inside a step the optimizer state goes on (Adam's iteration count); a new step starts a new optimizer.
    step_start = max(start for start in STEP_STARTS if start <= resumed_at)
    assert resumed.iterations_at_fit_start[0] == (resumed_at - step_start) * STEPS_PER_EPOCH
    # The best epoch's weights are the final ones, also when it came before the kill.
    _assert_same_weights(model.get_weights(), {**killed.weights_after, **resumed.weights_after}[BEST_EPOCH])


@pytest.mark.e2e  # trains the tiny patch model for a schedule of 7 epochs
def test_resumed_training_continues_from_the_checkpointed_weights(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"), "patch")
    _, killed, _ = _run(store, kill_after=3)
    tf_keras.utils.set_random_seed(1)
    model = build_patch_model(HPARAMS)
    state = CheckpointStore(store.directory, "patch").load()
    store.restore_latest(state, model)
    _assert_same_weights(model.get_weights(), killed.weights_after[3])
    # Only the latest and the best epoch's checkpoints are kept.
    names = sorted({name.split(".")[0] for name in os.listdir(store.directory) if name.startswith("epoch-")})
    assert names == ["epoch-3", "epoch-4"]


@pytest.mark.e2e  # trains the tiny patch model for a schedule of 7 epochs
def test_a_completed_schedule_is_not_trained_again(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"), "patch")
    _, first, first_results = _run(store)
    model, again, results = _run(CheckpointStore(store.directory, "patch"), seed=1)  # killed during the export
    assert again.epochs_begun == []
    assert [dataclasses.asdict(r) for r in results] == [dataclasses.asdict(r) for r in first_results]
    _assert_same_weights(model.get_weights(), first.weights_after[BEST_EPOCH])


def test_changed_hparams_or_inputs_start_afresh(tmp_path):
    inputs = {"train_files": ["/a/Split-train/*"], "eval_files": ["/a/Split-eval/*"], "transform_graph": "/t",
              "base_model": None}
    config = {CHECKPOINTS_CONFIG_KEY: str(tmp_path)}
    store = CheckpointStore.from_custom_config(config, "patch", inputs, HPARAMS)
    assert store.directory == os.path.join(str(tmp_path), training_fingerprint(inputs, HPARAMS))
    assert CheckpointStore.from_custom_config(config, "patch", dict(inputs), HPARAMS).directory == store.directory
    changed_hparams = dataclasses.replace(HPARAMS, weight_decay=HPARAMS.weight_decay * 2)
    changed_inputs = {**inputs, "train_files": ["/b/Split-train/*"]}
    others = {CheckpointStore.from_custom_config(config, "patch", inputs, changed_hparams).directory,
              CheckpointStore.from_custom_config(config, "patch", changed_inputs, HPARAMS).directory}
    assert store.directory not in others and len(others) == 2
    assert CheckpointStore.from_custom_config({}, "patch", inputs, HPARAMS) is None

    _run(store, kill_after=0)
    assert store.load() is not None
    assert CheckpointStore.from_custom_config(config, "patch", inputs, changed_hparams).load() is None


def test_a_corrupt_state_file_names_the_file_and_the_way_out(tmp_path):
    store = CheckpointStore(str(tmp_path), "patch")
    (tmp_path / TRAINING_STATE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"{TRAINING_STATE_FILE}.*delete the folder"):
        store.load()


def _summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, TRAINING_SUMMARY_FILE)) as handle:
        return json.load(handle)


@pytest.mark.e2e  # both run_fns through TFX's Trainer executor, one of them killed in a child process
def test_image_run_fn_resumes_from_its_checkpoint_after_a_kill(toy_data, tmp_path):
    checkpoints = str(tmp_path / "checkpoints")
    patch_dir, patch_run = run_trainer(
        PATCH_RUN_FN, toy_data["patches"], toy_data["transform_graph"], str(tmp_path / "patch"),
        {**_custom_config(TEST_PROFILE.patch_training), CHECKPOINTS_CONFIG_KEY: checkpoints})
    assert _summary(patch_run)["resumed_from_epoch"] == 0
    assert os.listdir(checkpoints) == []  # deleted after the export

    schedule = [{"scope": "new_layers", "learning_rate": 1e-2, "epochs": 3}, {"scope": "all", "learning_rate": 1e-3,
                                                                               "epochs": 3}]
    image_config = {**_image_custom_config(TEST_PROFILE.image_training, schedule=schedule, cache_trunk_features=True),
                    CHECKPOINTS_CONFIG_KEY: checkpoints}
    arguments = [IMAGE_RUN_FN, toy_data["images"], toy_data["transform_graph"], str(tmp_path / "killed"),
                 image_config, os.path.dirname(patch_dir)]
    child = subprocess.Popen([sys.executable, "-c", "import json, sys; from tests.test_trainer_run_fn import "
                              "run_trainer; run_trainer(*json.loads(sys.argv[1]))", json.dumps(arguments)],
                             cwd=os.path.dirname(os.path.dirname(__file__)), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_files = os.path.join(checkpoints, "*", TRAINING_STATE_FILE)
    deadline = time.monotonic() + 600
    while not glob.glob(state_files) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    with open(glob.glob(state_files)[0]) as handle:
        epochs_checkpointed = json.load(handle)["epochs_done"]
    assert 1 <= epochs_checkpointed < 6

    _, image_run = run_trainer(*arguments[:3], str(tmp_path / "resumed"), image_config, os.path.dirname(patch_dir))
    summary = _summary(image_run)
    assert summary["resumed_from_epoch"] == epochs_checkpointed
    assert [(step["scope"], step["epochs_run"], len(step["history"]["val_auc"])) for step in summary["steps"]] == \
        [("new_layers", 3, 3), ("all", 3, 3)]
    assert os.listdir(checkpoints) == []
