"""Both run_fns end to end through TFX's own Trainer executor (real FnArgs and DataAccessor built
from Examples / TransformGraph / Model artifacts), then the exported signatures."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer import executor as trainer_executor
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.utils import json_utils, proto_utils

from tests.conftest import (IMAGE_COLS, IMAGE_ROWS, encode_png16, feature, read_split, toy_whole_image,
                            whole_image_example)
from mammo_tfx.evaluation.calibration import read_screening_record
from mammo_tfx.names import (BREAST_KEY, EXAMPLES_INPUT, EXAMPLES_SIGNATURE, HEATMAP_SIGNATURE, IMAGE_BYTES_INPUT,
                             LABEL, TRAINING_SUMMARY_FILE)
from pipeline.config import load_config
from trainer_module.backbones import TRUNK_NAME
from trainer_module.export import patch_heatmap
from trainer_module.hparams import ImageHParams, PatchHParams
from trainer_module.inputs import transform_images
from trainer_module.model_io import load_patch_model, load_whole_image_weights, read_model_info
from trainer_module.patch_model import build_patch_model
from trainer_module.whole_image_model import build_whole_image_model

pytestmark = pytest.mark.e2e  # both models trained and exported through TFX's Trainer executor


def _artifact(artifact_type, uri: str, splits=None):
    artifact = artifact_type()
    artifact.uri = uri
    if splits:
        artifact.split_names = artifact_utils.encode_split_names(list(splits))
    return artifact


def run_trainer(run_fn: str, examples_uri: str, transform_dir: str, output_dir: str, custom_config: dict,
                base_model_uri: str | None = None) -> tuple[str, str]:
    """Runs TFX's GenericExecutor like the Trainer component; returns (serving dir, model_run dir)."""
    input_dict = {
        specs.EXAMPLES_KEY: [_artifact(standard_artifacts.Examples, examples_uri, ["train", "eval"])],
        specs.TRANSFORM_GRAPH_KEY: [_artifact(standard_artifacts.TransformGraph, transform_dir)],
    }
    if base_model_uri:
        input_dict[specs.BASE_MODEL_KEY] = [_artifact(standard_artifacts.Model, base_model_uri)]
    model_uri, run_uri = os.path.join(output_dir, "model"), os.path.join(output_dir, "model_run")
    output_dict = {specs.MODEL_KEY: [_artifact(standard_artifacts.Model, model_uri)],
                   specs.MODEL_RUN_KEY: [_artifact(standard_artifacts.ModelRun, run_uri)]}
    exec_properties = {
        specs.TRAIN_ARGS_KEY: proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=6)),
        specs.EVAL_ARGS_KEY: proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=2)),
        specs.CUSTOM_CONFIG_KEY: json_utils.dumps(custom_config),
        "run_fn": run_fn,
    }
    trainer_executor.GenericExecutor().Do(input_dict, output_dict, exec_properties)
    return os.path.join(model_uri, "Format-Serving"), run_uri


TEST_PROFILE = load_config("test")


def _custom_config(hparams, **changes) -> dict:
    """A Trainer's custom_config as the pipeline writes it: the test profile's hparams, with `changes`."""
    return {"hparams": {**hparams.to_dict(), **changes}}


def _image_custom_config(hparams, **changes) -> dict:
    """The whole-image Trainer's, with the test profile's screening options."""
    return {**_custom_config(hparams, **changes), "screening": TEST_PROFILE.evaluation.screening.to_dict()}


def _train_both_stages(toy_data, root: str) -> dict:
    """The patch Trainer, then the whole-image Trainer on its export, with the test profile's hparams."""
    patch_dir, patch_run = run_trainer(
        "trainer_module.patch_trainer.run_fn", toy_data["patches"], toy_data["transform_graph"],
        os.path.join(root, "patch"), _custom_config(TEST_PROFILE.patch_training))
    image_dir, image_run = run_trainer(
        "trainer_module.image_trainer.run_fn", toy_data["images"], toy_data["transform_graph"],
        os.path.join(root, "image"), _image_custom_config(TEST_PROFILE.image_training, steps_per_epoch=None),
        base_model_uri=os.path.dirname(patch_dir))
    return {"patch_dir": patch_dir, "patch_run": patch_run, "image_dir": image_dir, "image_run": image_run,
            "root": root}


@pytest.fixture(scope="module")
def trained(toy_data, tmp_path_factory):
    return _train_both_stages(toy_data, str(tmp_path_factory.mktemp("trainer_runs")))


def _load_whole_image_model(export_dir: str):
    """Rebuilds a whole-image classifier from its export's Keras copy."""
    info = read_model_info(export_dir)
    patch_hparams = PatchHParams.from_dict({**info.patch_hparams, "backbone_weights": None})
    image_hparams = ImageHParams.from_dict({**info.image_hparams, "init_from": None})
    model = build_whole_image_model(build_patch_model(patch_hparams).get_layer(TRUNK_NAME), image_hparams)
    load_whole_image_weights(model, export_dir)
    return model


def _summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, TRAINING_SUMMARY_FILE)) as handle:
        return json.load(handle)


def _toy_images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [toy_whole_image(rng, malignant=i % 2 == 0) for i in range(count)]


def test_patch_run_fn_trains_three_steps_and_serves_patches(trained):
    summary = _summary(trained["patch_run"])
    assert [step["scope"] for step in summary["steps"]] == ["new_layers", "top_of_trunk", "all"]
    assert all(step["epochs_run"] == 1 and "val_auc" in step["history"] for step in summary["steps"])
    assert any(name.startswith("events.out.tfevents") for _, _, files in os.walk(trained["patch_run"])
               for name in files)
    served = tf.saved_model.load(trained["patch_dir"]).signatures["serving_default"]
    rng = np.random.default_rng(5)
    patches = tf.constant([encode_png16(rng.integers(0, 65535, (32, 32))) for _ in range(3)])
    outputs = served(**{IMAGE_BYTES_INPUT: patches})
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert outputs["probability"].shape == (3,)


def test_image_run_fn_uses_train_steps_over_the_schedule(trained):
    summary = _summary(trained["image_run"])
    assert [step["scope"] for step in summary["steps"]] == ["new_layers", "all"]
    assert summary["patch_hparams"]["backbone"] == "small"
    # TrainArgs(num_steps=6) over 2 epochs -> 3 optimiser steps per epoch; val AUC logged per epoch.
    assert all(len(step["history"]["val_auc"]) == 1 for step in summary["steps"])


def test_exported_signatures_agree_with_each_other_and_with_keras(trained):
    loaded = tf.saved_model.load(trained["image_dir"])
    images = _toy_images(4, seed=11)
    image_bytes = tf.constant([encode_png16(image) for image in images])
    examples = tf.constant([whole_image_example(image, 0).SerializeToString() for image in images])
    from_bytes = loaded.signatures["serving_default"](**{IMAGE_BYTES_INPUT: image_bytes})
    from_examples = loaded.signatures[EXAMPLES_SIGNATURE](**{EXAMPLES_INPUT: examples})
    assert set(from_bytes) == set(from_examples) == {"probability", "score", "probability_single", "recall"}
    for key in ("probability", "score", "probability_single"):
        np.testing.assert_allclose(from_bytes[key].numpy(), from_examples[key].numpy(), rtol=1e-5, atol=1e-6)
        assert from_bytes[key].shape == (4,)
    np.testing.assert_array_equal(from_bytes["recall"].numpy(), from_examples["recall"].numpy())

    keras_model = loaded.model
    transformed = transform_images(loaded.tft_layer, image_bytes[:, None])
    keras_probabilities = keras_model(transformed, training=False).numpy()[:, 1]
    np.testing.assert_allclose(from_bytes["probability_single"].numpy(), keras_probabilities, rtol=1e-5, atol=1e-6)
    flips = [transformed, tf.reverse(transformed, [2]), tf.reverse(transformed, [1]), tf.reverse(transformed, [1, 2])]
    mean_of_flips = np.mean([keras_model(flip, training=False).numpy()[:, 1] for flip in flips], axis=0)
    np.testing.assert_allclose(from_bytes["score"].numpy(), mean_of_flips, rtol=1e-5, atol=1e-6)
    # The served probability is the eval split's calibration of that mean.
    record = read_screening_record(trained["image_dir"])
    np.testing.assert_allclose(from_bytes["probability"].numpy(), record.calibration.apply(mean_of_flips), rtol=1e-5,
                               atol=1e-6)


def test_the_screening_record_is_fitted_on_the_eval_split_only(trained, toy_data):
    record = read_screening_record(trained["image_dir"])
    eval_split = read_split(toy_data["images"], "eval")
    assert record.eval_counts["image"] == len(eval_split) != len(read_split(toy_data["images"], "train"))
    assert record.eval_counts["breast"] == len({feature(e, BREAST_KEY) for e in eval_split})
    assert record.eval_counts["positives"]["image"] == sum(feature(e, LABEL) for e in eval_split)
    assert read_model_info(trained["image_dir"]).screening == record.to_dict()
    assert record.options == TEST_PROFILE.evaluation.screening


def test_flipped_input_gives_the_same_probability(trained):
    serve = tf.saved_model.load(trained["image_dir"]).signatures["serving_default"]
    image = _toy_images(1, seed=12)[0]
    variants = [image, image[:, ::-1], image[::-1, :], image[::-1, ::-1]]
    outputs = serve(**{IMAGE_BYTES_INPUT: tf.constant([encode_png16(v) for v in variants])})
    probabilities = outputs["probability"].numpy()
    np.testing.assert_allclose(probabilities, probabilities[0], rtol=1e-5, atol=1e-6)


def test_serving_accepts_8_bit_png_and_jpeg_at_other_sizes(trained):
    serve = tf.saved_model.load(trained["image_dir"]).signatures["serving_default"]
    image16 = _toy_images(1, seed=13)[0]
    image8 = (image16 // 257).astype(np.uint8)[..., None]
    png8 = tf.io.encode_png(tf.constant(image8)).numpy()
    big_png16 = encode_png16(np.kron(image16, np.ones((2, 2), np.uint16)))
    jpeg = tf.io.encode_jpeg(tf.constant(image8), quality=100).numpy()
    outputs = serve(**{IMAGE_BYTES_INPUT: tf.constant([encode_png16(image16), png8, big_png16, jpeg])})
    probabilities = outputs["probability"].numpy()
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # An 8-bit copy x257 differs from the 16-bit original by < 257 grey levels: nearly the same score.
    np.testing.assert_allclose(probabilities[1], probabilities[0], atol=0.05)
    with pytest.raises(tf.errors.InvalidArgumentError, match="PNG .* or a JPEG"):
        serve(**{IMAGE_BYTES_INPUT: tf.constant([b"GIF89a not an image"])})


def test_heatmap_uses_the_original_patch_classifier(trained):
    loaded = tf.saved_model.load(trained["image_dir"])
    image_bytes = tf.constant([encode_png16(image) for image in _toy_images(2, seed=14)])
    heatmap = loaded.signatures[HEATMAP_SIGNATURE](**{IMAGE_BYTES_INPUT: image_bytes})["heatmap"].numpy()
    # Small trunk (stride 8): 64x48 -> 8x6 cells; a 32-pixel patch spans 4 cells -> 5x3 positions.
    assert heatmap.shape == (2, IMAGE_ROWS // 8 - 3, IMAGE_COLS // 8 - 3)
    assert np.all((heatmap >= 0) & (heatmap <= 1))

    patch_hparams, stage1_model = load_patch_model(trained["patch_dir"])
    transformed = transform_images(loaded.tft_layer, image_bytes[:, None])
    expected = patch_heatmap(stage1_model, transformed, window=4).numpy()
    np.testing.assert_allclose(heatmap, expected, rtol=1e-5, atol=1e-6)
    # The export holds its own copy of the patch classifier, not the fine-tuned trunk shared with it.
    whole_image_variables = {id(variable) for variable in loaded.model.variables}
    assert loaded.patch_model.variables
    assert not any(id(variable) in whole_image_variables for variable in loaded.patch_model.variables)


def test_init_from_a_previous_export_starts_from_that_model(trained, toy_data):
    # No training step: the export made from init_from answers exactly as the model it was initialised from.
    no_training = [{"scope": "new_layers", "learning_rate": 1e-3, "epochs": 0}]
    image_dir, _ = run_trainer(
        "trainer_module.image_trainer.run_fn", toy_data["images"], toy_data["transform_graph"],
        os.path.join(trained["root"], "image_again"),
        _custom_config(TEST_PROFILE.image_training, init_from=trained["image_dir"], schedule=no_training),
        base_model_uri=os.path.dirname(trained["patch_dir"]))
    image_bytes = tf.constant([encode_png16(image) for image in _toy_images(3, seed=15)])
    before = tf.saved_model.load(trained["image_dir"]).signatures["serving_default"](image_bytes=image_bytes)
    after = tf.saved_model.load(image_dir).signatures["serving_default"](image_bytes=image_bytes)
    np.testing.assert_allclose(after["probability"].numpy(), before["probability"].numpy(), rtol=1e-5)


def test_image_run_fn_trains_the_new_layers_on_cached_trunk_features(trained, toy_data):
    cached_step = [{"scope": "new_layers", "learning_rate": 1e-2, "epochs": 2, "steps_per_epoch": 5}]
    image_dir, image_run = run_trainer(
        "trainer_module.image_trainer.run_fn", toy_data["images"], toy_data["transform_graph"],
        os.path.join(trained["root"], "image_cached"),
        _custom_config(TEST_PROFILE.image_training, cache_trunk_features=True, schedule=cached_step),
        base_model_uri=os.path.dirname(trained["patch_dir"]))
    summary = _summary(image_run)
    assert [(step["scope"], step["epochs_run"]) for step in summary["steps"]] == [("new_layers", 2)]
    assert summary["hparams"]["cache_trunk_features"] is True
    assert len(summary["steps"][0]["history"]["val_auc"]) == 2
    # Only the head trained: the exported whole-image model's trunk is still stage 1's trunk.
    _, stage1_model = load_patch_model(trained["patch_dir"])
    whole_image = _load_whole_image_model(image_dir)
    for stage1, exported in zip(stage1_model.get_layer("trunk").get_weights(),
                                whole_image.get_layer("trunk").get_weights()):
        np.testing.assert_array_equal(stage1, exported)
    outputs = tf.saved_model.load(image_dir).signatures["serving_default"](
        image_bytes=tf.constant([encode_png16(image) for image in _toy_images(2, seed=16)]))
    assert np.all((outputs["probability"].numpy() >= 0) & (outputs["probability"].numpy() <= 1))


def test_whole_image_trainer_requires_the_patch_model(toy_data, tmp_path):
    with pytest.raises(ValueError, match="base_model"):
        run_trainer("trainer_module.image_trainer.run_fn", toy_data["images"], toy_data["transform_graph"],
                    str(tmp_path), _custom_config(TEST_PROFILE.image_training))


def test_patch_heatmap_of_a_patch_sized_image_is_the_patch_classifier(trained):
    _, patch_model = load_patch_model(trained["patch_dir"])
    patches = tf.constant(np.random.default_rng(16).normal(0, 30, (3, 32, 32, 1)), tf.float32)
    heatmap = patch_heatmap(patch_model, patches, window=4).numpy()
    probabilities = patch_model(patches, training=False).numpy()
    assert heatmap.shape == (3, 1, 1)
    np.testing.assert_allclose(heatmap[:, 0, 0], probabilities[:, 1] + probabilities[:, 3], rtol=1e-5, atol=1e-6)


def test_export_carries_a_tf_serving_warmup_request_from_a_real_example(trained):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(trained["image_dir"], "assets.extra", "tf_serving_warmup_requests")
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert len(records) == 1
    request = records[0].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    image_bytes = request.inputs["image_bytes"].string_val[0]
    assert tf.io.decode_png(image_bytes, dtype=tf.uint16).shape[-1] == 1


def test_a_second_run_with_the_same_seed_exports_the_same_weights(trained, toy_data):
    """Reproducible training: the same Examples, Transform graph, hparams and seed give the same weights, to the bit
    (trunk, head and top blocks; the seed reaching each random source apart is tested in test_trainer_models.py)."""
    again = _train_both_stages(toy_data, os.path.join(trained["root"], "again"))
    patch_dir, image_dir = again["patch_dir"], again["image_dir"]
    for first_model, again_model in (
            (load_patch_model(trained["patch_dir"])[1], load_patch_model(patch_dir)[1]),
            (_load_whole_image_model(trained["image_dir"]), _load_whole_image_model(image_dir))):
        first_weights, again_weights = first_model.get_weights(), again_model.get_weights()
        assert len(first_weights) == len(again_weights) > 0
        for one, other in zip(first_weights, again_weights):
            np.testing.assert_array_equal(one, other)
    info = read_model_info(image_dir)
    assert info.image_hparams["seed"] == info.patch_hparams["seed"] == TEST_PROFILE.reproducibility.seed
    assert info.image_hparams["deterministic_ops"] is True
