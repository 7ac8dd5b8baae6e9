"""A real whole-image export's screening answer: the record fitted on its eval split, the calibrated outputs of
`serving_default` / `serving_examples`, and `serving_exam` in process and through the built-in REST server."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mammo_tfx import names
from mammo_tfx.evaluation import screening
from mammo_tfx.evaluation.calibration import fit_screening_record, read_screening_record
from mammo_tfx.evaluation.screening import ScoredUnit, ScreeningOptions
from mammo_tfx.example_files import serialized_examples
from mammo_tfx.serving.limits import RequestLimits
from mammo_tfx.serving.rest_client import RestClient
from mammo_tfx.serving.server import ModelServer
from mammo_tfx.serving.warmup import write_warmup_file
from tests.conftest import encode_png16, export_untrained_whole_image_model, toy_whole_image

pytestmark = pytest.mark.e2e  # exports a (tiny, untrained) whole-image model

WORKING_SIZE = (64, 48)
MODEL = "mammo"
VERSION = 1


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("screening_export")
    export_dir = root / MODEL / str(VERSION)
    export_untrained_whole_image_model(str(root), str(export_dir), WORKING_SIZE)
    eval_files = [str(root / "examples" / "Split-eval" / "*.gz")]
    return {"dir": str(export_dir), "eval_files": eval_files, "loaded": tf.saved_model.load(str(export_dir))}


def _eval_examples(eval_files) -> list[tf.train.Example]:
    return [tf.train.Example.FromString(record) for _, record in serialized_examples(eval_files)]


def _text(example: tf.train.Example, key: str) -> str:
    return example.features.feature[key].bytes_list.value[0].decode()


def _numpy(outputs) -> dict:
    return {key: value.numpy() for key, value in outputs.items()}


def test_the_record_is_fitted_on_the_eval_split_and_reproduced_from_its_predictions(export):
    record = read_screening_record(export["dir"])
    examples = _eval_examples(export["eval_files"])
    assert record is not None and record.fitted
    assert record.eval_counts["image"] == len(examples)
    assert record.eval_counts["breast"] == len({_text(e, names.BREAST_KEY) for e in examples})
    assert record.eval_counts["exam"] == len({_text(e, names.EXAM_KEY) for e in examples})
    served = _numpy(export["loaded"].signatures[names.EXAMPLES_SIGNATURE](
        examples=tf.constant([e.SerializeToString() for e in examples])))
    images = [ScoredUnit(key=str(i), label=int(e.features.feature[names.LABEL].int64_list.value[0]),
                         score=float(score), breast_key=_text(e, names.BREAST_KEY), exam_key=_text(e, names.EXAM_KEY))
              for i, (e, score) in enumerate(zip(examples, served[names.SCORE]))]
    refitted = fit_screening_record(images, ScreeningOptions())
    assert refitted.calibration.method == record.calibration.method == "platt"
    assert refitted.calibration.slope == pytest.approx(record.calibration.slope, rel=1e-4, abs=1e-6)
    assert refitted.calibration.intercept == pytest.approx(record.calibration.intercept, rel=1e-4, abs=1e-6)
    assert refitted.thresholds == pytest.approx(record.thresholds, rel=1e-5)
    assert refitted.eval == record.eval
    # What the graph serves is the record's calibration of the uncalibrated flip mean, decided at its threshold.
    np.testing.assert_allclose(served[names.PROBABILITY], record.calibration.apply(served[names.SCORE]), rtol=1e-5)
    np.testing.assert_array_equal(served[names.RECALL],
                                  served[names.PROBABILITY] >= np.float32(record.thresholds["image"]))
    assert int(np.sum(served[names.RECALL] & np.array([u.label > 0 for u in images]))) == record.eval["image"].tp


def test_image_signatures_serve_the_same_calibrated_answer(export):
    rng = np.random.default_rng(3)
    images = [toy_whole_image(rng, i % 2 == 0, *WORKING_SIZE) for i in range(3)]
    image_bytes = tf.constant([encode_png16(image) for image in images])
    default = _numpy(export["loaded"].signatures[names.DEFAULT_SIGNATURE](image_bytes=image_bytes))
    examples = tf.constant([tf.train.Example(features=tf.train.Features(feature={names.IMAGE_PNG: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[encode_png16(image)]))})).SerializeToString() for image in images])
    from_examples = _numpy(export["loaded"].signatures[names.EXAMPLES_SIGNATURE](examples=examples))
    assert set(default) == set(from_examples) == {names.PROBABILITY, names.SCORE, names.PROBABILITY_SINGLE,
                                                  names.RECALL}
    for key in (names.PROBABILITY, names.SCORE, names.PROBABILITY_SINGLE):
        np.testing.assert_allclose(default[key], from_examples[key], rtol=1e-5, atol=1e-6)
        assert default[key].dtype == np.float32 and default[key].shape == (3,)
    assert default[names.RECALL].dtype == bool


def _two_exams() -> tuple[list[bytes], list[str]]:
    rng = np.random.default_rng(9)
    ids = ["exam1/L", "exam1/R", "exam1/L", "exam2/L", "exam1/R", "exam2/R", "exam2/R"]
    return [encode_png16(toy_whole_image(rng, i % 3 == 0, *WORKING_SIZE)) for i in range(len(ids))], ids


def _expected_breasts(probabilities: np.ndarray, ids: list[str], rule) -> list[ScoredUnit]:
    images = [ScoredUnit(key=str(i), label=0, score=float(p), breast_key=b, exam_key=b.split("/")[0])
              for i, (p, b) in enumerate(zip(probabilities, ids))]
    return screening.breasts(images, rule)


def test_serving_exam_aggregates_breasts_as_the_screening_library(export):
    record = read_screening_record(export["dir"])
    image_bytes, ids = _two_exams()
    outputs = _numpy(export["loaded"].signatures[names.EXAM_SIGNATURE](
        image_bytes=tf.constant(image_bytes), breast_id=tf.constant(ids)))
    single = _numpy(export["loaded"].signatures[names.DEFAULT_SIGNATURE](image_bytes=tf.constant(image_bytes)))
    for key in (names.PROBABILITY, names.SCORE, names.PROBABILITY_SINGLE):
        np.testing.assert_allclose(outputs[key], single[key], rtol=1e-5, atol=1e-6)
    expected = _expected_breasts(outputs[names.PROBABILITY], ids, record.options.breast_rule)
    assert [b.decode() for b in outputs[names.BREAST_IDS]] == ["exam1/L", "exam1/R", "exam2/L", "exam2/R"]
    assert [unit.key for unit in expected] == [b.decode() for b in outputs[names.BREAST_IDS]]
    np.testing.assert_allclose(outputs[names.BREAST_SCORE], [unit.score for unit in expected], rtol=1e-6)
    np.testing.assert_array_equal(outputs[names.BREAST_INDEX], [0, 1, 0, 2, 1, 3, 3])
    np.testing.assert_array_equal(outputs[names.BREAST_RECALL],
                                  outputs[names.BREAST_SCORE] >= np.float32(record.thresholds["breast"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one entry per image"):
        export["loaded"].signatures[names.EXAM_SIGNATURE](image_bytes=tf.constant(image_bytes),
                                                          breast_id=tf.constant(ids[:-1]))


def test_serving_exam_answers_through_the_rest_server_with_its_warmup(export):
    record = read_screening_record(export["dir"])
    write_warmup_file(export["dir"], [encode_png16(toy_whole_image(np.random.default_rng(1), True, *WORKING_SIZE))])
    image_bytes, ids = _two_exams()
    columnar = {"signature_name": names.EXAM_SIGNATURE,
                "inputs": {names.IMAGE_BYTES_INPUT: [{"b64": base64.b64encode(b).decode()} for b in image_bytes],
                           names.BREAST_ID_INPUT: ids}}
    rows = {"signature_name": names.EXAM_SIGNATURE,
            "instances": [{names.IMAGE_BYTES_INPUT: {"b64": base64.b64encode(b).decode()}, names.BREAST_ID_INPUT: i}
                          for b, i in zip(image_bytes, ids)]}
    # The warm-up file is replayed when the version loads: a broken one would keep the server from serving it.
    with ModelServer(str(Path(export["dir"]).parent), MODEL, limits=RequestLimits(max_body_bytes=1 << 20),
                     poll_interval_s=60) as server, RestClient(server.url) as client:
        status, body = client.predict(MODEL, columnar)
        row_status, row_body = client.predict(MODEL, rows)
    assert status == 200, body
    outputs = body["outputs"]
    assert outputs[names.BREAST_IDS] == ["exam1/L", "exam1/R", "exam2/L", "exam2/R"]
    assert len(outputs[names.PROBABILITY]) == len(ids) and outputs[names.BREAST_INDEX] == [0, 1, 0, 2, 1, 3, 3]
    expected = _expected_breasts(np.array(outputs[names.PROBABILITY], dtype=np.float32), ids,
                                 record.options.breast_rule)
    np.testing.assert_allclose(outputs[names.BREAST_SCORE], [unit.score for unit in expected], rtol=1e-6)
    assert outputs[names.BREAST_RECALL] == [score >= np.float32(record.thresholds["breast"])
                                            for score in np.array(outputs[names.BREAST_SCORE], dtype=np.float32)]
    assert all(isinstance(value, bool) for value in outputs[names.RECALL])
    # Row format cannot carry 7 images and 4 breasts in one list: a clear error, as TF Serving gives.
    assert row_status == 400 and "columnar 'inputs' format" in row_body["error"]


def test_tfx_evaluator_evaluates_the_export_with_its_screening_outputs(export, tmp_path):
    """TFMA runs `serving_examples`, whose outputs now include the bool `recall`, and reads the two model outputs."""
    import json

    from tfx.components.evaluator import executor as evaluator_executor
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import proto_utils

    from mammo_tfx.evaluation.config import EvaluationConfig
    from mammo_tfx.evaluation.tfma_results import read_evaluation
    from pipeline.evaluation import build_eval_config
    from tests.conftest import whole_image_examples, write_split

    def artifact(artifact_type, uri, splits=None):
        instance = artifact_type()
        instance.uri = uri
        if splits:
            instance.split_names = artifact_utils.encode_split_names(splits)
        return instance

    examples_uri = str(tmp_path / "examples")
    write_split(examples_uri, "test", whole_image_examples(12, seed=5, rows=WORKING_SIZE[0], cols=WORKING_SIZE[1]))
    model = artifact(standard_artifacts.Model, str(tmp_path / "model"))
    os.makedirs(model.uri)
    os.symlink(export["dir"], os.path.join(model.uri, "Format-Serving"))
    evaluation = artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "evaluation"))
    eval_config = build_eval_config(EvaluationConfig(compute_confidence_intervals=False), with_baseline=False)
    evaluator_executor.Executor().Do(
        {"examples": [artifact(standard_artifacts.Examples, examples_uri, ["test"])], "model": [model]},
        {"evaluation": [evaluation],
         "blessing": [artifact(standard_artifacts.ModelBlessing, str(tmp_path / "blessing"))]},
        {"eval_config": proto_utils.proto_to_json(eval_config), "example_splits": json.dumps(["test"])})
    metrics = read_evaluation(evaluation.uri)
    assert metrics.output_names() == sorted(names.MODEL_OUTPUTS)
    for output in names.MODEL_OUTPUTS:
        overall = metrics.slices(output)[()]
        assert overall.example_count == 12 and overall.class_counts() == (6, 6)


def test_a_one_class_eval_split_exports_the_identity_and_recalls_every_image(tmp_path):
    """Training does not fail: the record says why nothing was fitted, and the graph serves probability = score."""
    from tests.conftest import whole_image_example

    rng = np.random.default_rng(4)
    benign = [whole_image_example(toy_whole_image(rng, False, *WORKING_SIZE), 0, f"b{i // 2}", f"e{i // 4}")
              for i in range(6)]
    export_dir = str(tmp_path / "export")
    export_untrained_whole_image_model(str(tmp_path), export_dir, WORKING_SIZE, eval_examples=benign)
    record = read_screening_record(export_dir)
    assert not record.fitted and record.calibration.method == "identity"
    assert "0 malignant and 6 other images" in record.reason
    assert record.thresholds == {"image": 0.0, "breast": 0.0, "exam": 0.0}
    assert record.eval_counts == {"image": 6, "breast": 3, "exam": 2,
                                  "positives": {"image": 0, "breast": 0, "exam": 0}}
    outputs = _numpy(tf.saved_model.load(export_dir).signatures[names.DEFAULT_SIGNATURE](
        image_bytes=tf.constant([encode_png16(toy_whole_image(rng, True, *WORKING_SIZE)) for _ in range(2)])))
    np.testing.assert_array_equal(outputs[names.PROBABILITY], outputs[names.SCORE])
    assert outputs[names.RECALL].all()
