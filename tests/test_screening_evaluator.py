"""The screening evaluation (mammo_tfx/evaluation/unit_pipeline.py) on the DirectRunner with trainer_module's real
whole-image export (tiny untrained models), and the ScreeningEvaluator component through its executor.

The examples form exams of two breasts with one or two views each; the expected figures are recomputed from the
written predictions with screening.all_units and the figure functions, independently of the Beam grouping.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from tfx.types import artifact_utils, standard_artifacts

from components.screening_evaluator import executor as screening_executor
from components.screening_evaluator.artifacts import ScreeningPredictions, UnitEvaluation
from mammo_tfx import names
from mammo_tfx.evaluation import screening
from mammo_tfx.evaluation.calibration import (IDENTITY, SCREENING_INFO_KEY, Calibration, ScreeningRecord,
                                              read_screening_record)
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.screening import BREAST_UNIT, EXAM_UNIT, IMAGE_UNIT, BreastRule, ScreeningOptions
from mammo_tfx.evaluation.unit_pipeline import (PREDICTION_COLUMNS, ModelUnderTest, add_unit_evaluation,
                                                evaluated_breast_rule, example_columns, image_unit,
                                                predictions_path, read_predictions, slice_keys)
from mammo_tfx.evaluation.unit_results import BASELINE, CANDIDATE, read_unit_evaluation
from mammo_tfx.serving.model_info import model_info_path
from pipeline.config import BeamConfig
from tests.conftest import encode_png16, export_untrained_whole_image_model, toy_whole_image, write_split

WORKING_SIZE = (64, 48)
SPLIT = "test"
SAMPLES = 100
# Image threshold, and breast threshold (the exam's is the breast's, as the Trainer records it).
THRESHOLDS = {IMAGE_UNIT: 0.5, BREAST_UNIT: 0.5, EXAM_UNIT: 0.5}
DATASETS = ("cbis-ddsm", "inbreast")


def _feature(value) -> tf.train.Feature:
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def scan_examples(exams: int, seed: int) -> List[tf.train.Example]:
    """`exams` exams of two breasts; a breast has two views (CC, MLO) except every third exam's right breast (one
    view); every second exam has one malignant breast whose views are both malignant."""
    rng = np.random.default_rng(seed)
    examples = []
    for exam in range(exams):
        for side in ("L", "R"):
            malignant = exam % 2 == 1 and side == "L"
            for view in ("CC", "MLO") if not (exam % 3 == 0 and side == "R") else ("CC",):
                features = {
                    names.IMAGE_PNG: encode_png16(toy_whole_image(rng, malignant, 72, 56)),
                    names.LABEL: int(malignant),
                    names.IMAGE_KEY: f"img{exam:02d}{side}{view}".encode(),
                    names.BREAST_KEY: f"breast{exam:02d}{side}".encode(),
                    names.EXAM_KEY: f"exam{exam:02d}".encode(),
                    names.DATASET: DATASETS[exam % 2 if exam < exams // 2 else 0].encode(),
                    names.DENSITY: 1 + exam % 4,
                    names.VIEW: view.encode(),
                    names.LATERALITY: side.encode(),
                    names.ABNORMALITY_TYPE: b"mass" if malignant else b"none",
                }
                examples.append(tf.train.Example(features=tf.train.Features(
                    feature={key: _feature(value) for key, value in features.items()})))
    return examples


def set_screening_record(export_dir: str, rule: Optional[BreastRule]) -> None:
    """Gives the export's model info a screening record as the whole-image Trainer writes it (identity
    calibration, THRESHOLDS, `rule`), or none (rule None: an export without a fitted record)."""
    path = model_info_path(export_dir)
    with tf.io.gfile.GFile(path) as handle:
        info = json.load(handle)
    info[SCREENING_INFO_KEY] = None
    if rule is not None:
        info[SCREENING_INFO_KEY] = ScreeningRecord(
            options=ScreeningOptions(breast_rule=rule), calibration=Calibration(IDENTITY), thresholds=THRESHOLDS,
            eval={}, eval_ece={}, eval_counts={}, fitted=False, reason="test record").to_dict()
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(info, handle)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Dict[str, str]:
    """`plain`: the real export (no screening record); `recorded`: the same with a record (mean rule)."""
    root = str(tmp_path_factory.mktemp("screening_models"))
    plain = os.path.join(root, "plain")
    export_untrained_whole_image_model(root, plain, WORKING_SIZE)
    recorded = os.path.join(root, "recorded")
    shutil.copytree(plain, recorded)
    set_screening_record(plain, None)
    set_screening_record(recorded, BreastRule.MEAN)
    return {"plain": plain, "recorded": recorded}


@pytest.fixture(scope="module")
def examples_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("screening_examples"))
    examples = scan_examples(8, seed=3)
    write_split(uri, SPLIT, examples[:13])
    # A second file: the evaluation reads every file of the split.
    with tf.io.TFRecordWriter(os.path.join(uri, f"Split-{SPLIT}", "data_tfrecord-00001-of-00002.gz"), "GZIP") as out:
        for example in examples[13:]:
            out.write(example.SerializeToString())
    return uri


def _beam_pipeline() -> beam.Pipeline:
    return beam.Pipeline(options=PipelineOptions(
        BeamConfig(direct_running_mode="in_memory", direct_num_workers=1).pipeline_args()))


def _evaluate(out_dir: str, examples_uri: str, models: List[ModelUnderTest], rule: BreastRule,
              samples: int = SAMPLES) -> None:
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{SPLIT}", "*"))
    with _beam_pipeline() as pipeline:
        add_unit_evaluation(pipeline, files, models, SPLIT, rule, samples, os.path.join(out_dir, "predictions"),
                            os.path.join(out_dir, "evaluation"))


def _models(exports: Dict[str, str]) -> List[ModelUnderTest]:
    return [ModelUnderTest(CANDIDATE, exports["recorded"], read_screening_record(exports["recorded"])),
            ModelUnderTest(BASELINE, exports["plain"], read_screening_record(exports["plain"]))]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, exports, examples_uri) -> str:
    out_dir = str(tmp_path_factory.mktemp("screening_run"))
    _evaluate(out_dir, examples_uri, _models(exports), BreastRule.MEAN)
    return out_dir


@pytest.mark.e2e
def test_every_example_is_one_prediction_row_with_the_signatures_outputs(evaluated, exports, examples_uri):
    rows = read_predictions(predictions_path(os.path.join(evaluated, "predictions"), CANDIDATE))
    examples = scan_examples(8, seed=3)
    assert [row[names.IMAGE_KEY] for row in rows] == sorted(
        example.features.feature[names.IMAGE_KEY].bytes_list.value[0].decode() for example in examples)
    loaded = tf.saved_model.load(exports["plain"])
    outputs = loaded.signatures[names.EXAMPLES_SIGNATURE](
        **{names.EXAMPLES_INPUT: tf.constant([example.SerializeToString() for example in examples])})
    keys = [example.features.feature[names.IMAGE_KEY].bytes_list.value[0].decode() for example in examples]
    expected = {name: dict(zip(keys, outputs[name].numpy().reshape(-1).tolist())) for name in outputs}
    for row in rows:
        key = row[names.IMAGE_KEY]
        for name in (names.PROBABILITY, names.PROBABILITY_SINGLE):
            assert row[name] == pytest.approx(expected[name][key], abs=1e-6)
        if names.SCORE in outputs:
            assert row[names.SCORE] == pytest.approx(expected[names.SCORE][key], abs=1e-6)
            assert row[names.RECALL] == int(expected[names.RECALL][key])
        else:
            # An export from before calibration: its probability is its score, and it makes no decision.
            assert row[names.SCORE] == row[names.PROBABILITY] and row[names.RECALL] is None
    first = next(row for row in rows if row[names.IMAGE_KEY] == "img01LCC")
    assert (first[names.BREAST_KEY], first[names.EXAM_KEY], first[names.LABEL]) == ("breast01L", "exam01", 1)
    assert (first[names.DATASET], first[names.DENSITY], first[names.VIEW], first[names.SITE]) == (
        "inbreast", "2", "CC", "")
    baseline_rows = read_predictions(predictions_path(os.path.join(evaluated, "predictions"), BASELINE))
    assert [row[names.IMAGE_KEY] for row in baseline_rows] == [row[names.IMAGE_KEY] for row in rows]


@pytest.mark.e2e
def test_unit_figures_equal_the_screening_library_on_the_written_predictions(evaluated):
    document = read_unit_evaluation(os.path.join(evaluated, "evaluation"))
    assert (document.split, document.breast_rule, document.bootstrap_samples) == (SPLIT, "mean", SAMPLES)
    assert set(document.models) == {CANDIDATE, BASELINE}
    for name, model in document.models.items():
        rows = read_predictions(os.path.join(document.uri, model.predictions_file))
        units = screening.all_units([image_unit(row) for row in rows], BreastRule.MEAN)
        assert {unit: len(found) for unit, found in units.items()} == {IMAGE_UNIT: 29, BREAST_UNIT: 16, EXAM_UNIT: 8}
        thresholds = THRESHOLDS if name == CANDIDATE else {}
        assert model.thresholds == thresholds
        for unit, found in units.items():
            expected_slices = {key for u in found for key in slice_keys(unit, u.slices)}
            assert set(model.figures[unit]) == expected_slices
            for slice_key, figures in model.figures[unit].items():
                members = sorted((u for u in found if slice_key in slice_keys(unit, u.slices)), key=lambda u: u.key)
                labels, scores = screening.unit_arrays(members)
                assert (figures.count, figures.positives, figures.negatives) == (
                    len(members), int(labels.sum()), int(len(labels) - labels.sum()))
                if np.isnan(figures.auc):
                    assert len(set(labels)) < 2 and figures.auc_interval is None
                else:
                    assert figures.auc == pytest.approx(screening.auc(labels, scores))
                    interval = screening.bootstrap_auc_interval(labels, scores, SAMPLES, seed=0)
                    assert figures.auc_interval == (pytest.approx(list(interval)) if interval else None)
                if unit in thresholds:
                    operating = screening.operating_figures(labels, scores, thresholds[unit]).to_dict()
                    assert {k: figures.operating[k] for k in ("tp", "fp", "tn", "fn", "threshold")} == {
                        k: operating[k] for k in ("tp", "fp", "tn", "fn", "threshold")}
                else:
                    assert figures.operating is None
            labels, scores = screening.unit_arrays(found)
            assert model.roc[unit] == screening.roc_points(labels, scores)
        image_labels = np.array([row[names.LABEL] for row in rows])
        for when, column in (("before", names.SCORE), ("after", names.PROBABILITY)):
            assert model.ece[when] == pytest.approx(screening.expected_calibration_error(
                image_labels, np.array([row[column] for row in rows])))


@pytest.mark.e2e
def test_slices_of_breasts_and_exams_leave_out_per_image_features(evaluated):
    document = read_unit_evaluation(os.path.join(evaluated, "evaluation"))
    columns = {unit: {column for key in figures for column, _ in key}
               for unit, figures in document.candidate.figures.items()}
    assert {names.VIEW, names.LATERALITY, names.DATASET, names.DENSITY} <= columns[IMAGE_UNIT]
    assert names.VIEW not in columns[BREAST_UNIT] and names.LATERALITY in columns[BREAST_UNIT]
    assert not {names.VIEW, names.LATERALITY} & columns[EXAM_UNIT]
    # Crossed slices are keyed as TFMA keys them (columns by name); an exam's two breasts differ in abnormality.
    assert (("dataset", "inbreast"), ("density", "2")) in document.candidate.figures[EXAM_UNIT]
    assert ((names.ABNORMALITY_TYPE, screening.MIXED),) in document.candidate.figures[EXAM_UNIT]


@pytest.mark.e2e
def test_a_rerun_writes_identical_files(evaluated, exports, examples_uri, tmp_path):
    _evaluate(str(tmp_path), examples_uri, _models(exports), BreastRule.MEAN)
    for relative in (os.path.join("predictions", CANDIDATE, names.PREDICTIONS_FILE),
                     os.path.join("predictions", BASELINE, names.PREDICTIONS_FILE),
                     os.path.join("evaluation", names.UNIT_EVALUATION_FILE)):
        with open(os.path.join(evaluated, relative)) as first, open(os.path.join(tmp_path, relative)) as second:
            assert first.read() == second.read(), relative


@pytest.mark.e2e
def test_a_baseline_scored_with_another_breast_rule_keeps_only_its_image_operating_point(exports, examples_uri,
                                                                                       tmp_path):
    max_rule = str(tmp_path / "max_rule")
    shutil.copytree(exports["plain"], max_rule)
    set_screening_record(max_rule, BreastRule.MAX)
    models = [ModelUnderTest(CANDIDATE, exports["recorded"], read_screening_record(exports["recorded"])),
              ModelUnderTest(BASELINE, max_rule, read_screening_record(max_rule))]
    _evaluate(str(tmp_path), examples_uri, models, BreastRule.MEAN, samples=0)
    document = read_unit_evaluation(str(tmp_path / "evaluation"))
    assert document.baseline.thresholds == {IMAGE_UNIT: THRESHOLDS[IMAGE_UNIT]}
    assert document.baseline.figures[IMAGE_UNIT][()].operating is not None
    assert document.baseline.figures[BREAST_UNIT][()].operating is None
    assert document.candidate.figures[BREAST_UNIT][()].operating is not None
    assert document.candidate.figures[IMAGE_UNIT][()].auc_interval is None  # no resamples asked for


def test_examples_without_unit_keys_are_refused_naming_the_file():
    example = scan_examples(1, seed=1)[0]
    del example.features.feature[names.BREAST_KEY]
    with pytest.raises(ValueError, match=r"some/file\.gz: example img00LCC has no 'breast_key'"):
        example_columns(example.SerializeToString(), "some/file.gz")
    row = example_columns(scan_examples(1, seed=1)[0].SerializeToString(), "f")
    assert set(row) == set(PREDICTION_COLUMNS) - {names.PROBABILITY, names.PROBABILITY_SINGLE, names.SCORE,
                                                  names.RECALL}


def _artifact(artifact_type, uri: str):
    artifact = artifact_type()
    artifact.uri = uri
    os.makedirs(uri, exist_ok=True)
    return artifact


@pytest.mark.e2e
def test_the_component_executor_evaluates_candidate_and_baseline(exports, examples_uri, tmp_path):
    examples = _artifact(standard_artifacts.Examples, examples_uri)
    examples.split_names = artifact_utils.encode_split_names([SPLIT])
    models = {}
    for name, export in (("candidate", "recorded"), ("baseline", "plain")):
        models[name] = _artifact(standard_artifacts.Model, str(tmp_path / name))
        shutil.copytree(exports[export], os.path.join(models[name].uri, "Format-Serving"))
    predictions = _artifact(ScreeningPredictions, str(tmp_path / "predictions"))
    unit_evaluation = _artifact(UnitEvaluation, str(tmp_path / "unit_evaluation"))
    config = EvaluationConfig(split=SPLIT, bootstrap_samples=20)
    beam_args = BeamConfig(direct_running_mode="in_memory", direct_num_workers=1).pipeline_args()
    context = screening_executor.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=str(tmp_path / "tmp"))
    inputs = {"examples": [examples], "model": [models["candidate"]], "baseline_model": [models["baseline"]]}
    screening_executor.Executor(context).Do(
        inputs, {"predictions": [predictions], "unit_evaluation": [unit_evaluation]},
        _parameters(config))
    document = read_unit_evaluation(unit_evaluation.uri)
    assert set(document.models) == {CANDIDATE, BASELINE} and document.bootstrap_samples == 20
    assert document.candidate.thresholds == THRESHOLDS and document.baseline.thresholds == {}
    assert len(read_predictions(os.path.join(predictions.uri, BASELINE, names.PREDICTIONS_FILE))) == 29
    assert document.candidate.figures[EXAM_UNIT][()].count == 8

    # First run: no blessed baseline.
    without = _artifact(UnitEvaluation, str(tmp_path / "without_baseline"))
    inputs["baseline_model"] = []
    screening_executor.Executor(context).Do(
        inputs, {"predictions": [_artifact(ScreeningPredictions, str(tmp_path / "p2"))], "unit_evaluation": [without]},
        _parameters(config))
    assert set(read_unit_evaluation(without.uri).models) == {CANDIDATE}
    assert not os.path.exists(tmp_path / "p2" / BASELINE)

    inputs["examples"][0].split_names = artifact_utils.encode_split_names(["train"])
    with pytest.raises(ValueError, match="split 'test' is not in the examples"):
        screening_executor.Executor(context).Do(
            inputs, {"predictions": [predictions], "unit_evaluation": [unit_evaluation]},
            _parameters(config))


def _parameters(config: EvaluationConfig) -> dict:
    return {"split": config.split, "breast_rule": config.screening.breast_rule.value,
            "bootstrap_samples": config.bootstrap_samples}


def test_bootstrap_interval_is_the_percentile_interval_of_sklearn_aucs_over_the_same_resamples():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.random(40) + 0.3 * labels, 1)  # rounded: ties must count half, as in roc_auc_score
    resampler = np.random.default_rng(11)
    values = []
    for _ in range(200):
        index = resampler.integers(0, 40, 40)
        if labels[index].min() != labels[index].max():
            values.append(roc_auc_score(labels[index], scores[index]))
    low, high = screening.bootstrap_auc_interval(labels, scores, samples=200, seed=11)
    assert (low, high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))


@pytest.mark.e2e
def test_breasts_are_scored_with_the_candidates_recorded_rule_else_the_configured_one(exports):
    record = read_screening_record(exports["recorded"])  # mean rule
    assert evaluated_breast_rule(record, BreastRule.MAX) == BreastRule.MEAN
    assert evaluated_breast_rule(None, BreastRule.MAX) == BreastRule.MAX
