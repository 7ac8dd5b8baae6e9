"""EvaluationConfig, the TFMA EvalConfig built from it, and the evaluation/blessing/push wiring (no Beam runs)."""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import pusher_pb2
from tfx.utils import proto_utils

from components.model_gate import ModelGate
from mammo_tfx.evaluation.config import GATED_OUTPUT, EvaluationConfig
from mammo_tfx.names import CROSSED_SLICES, MODEL_OUTPUTS, SLICE_FEATURES
from pipeline.evaluation import build_eval_config, create_evaluation_components


def _metric(config: tfma.EvalConfig, class_name: str) -> tfma.MetricConfig:
    matches = [m for spec in config.metrics_specs for m in spec.metrics if m.class_name == class_name]
    assert len(matches) == 1, class_name
    return matches[0]


@pytest.mark.parametrize("with_baseline", [False, True])
def test_eval_config_reads_the_examples_signature_of_both_outputs_on_every_slice(with_baseline):
    config = build_eval_config(EvaluationConfig(fairness_thresholds=(0.3, 0.7)), with_baseline=with_baseline)
    assert len(config.model_specs) == (2 if with_baseline else 1)
    assert [spec.is_baseline for spec in config.model_specs] == ([False, True] if with_baseline else [False])
    for spec in config.model_specs:
        assert (spec.signature_name, spec.label_key, spec.model_type) == ("serving_examples", "label", "tf_generic")
    assert not config.options.include_default_metrics.value
    assert [list(spec.output_names) for spec in config.metrics_specs] == [list(MODEL_OUTPUTS)]
    expected_slices = [[]] + [[f] for f in SLICE_FEATURES] + [list(c) for c in CROSSED_SLICES]
    assert [list(spec.feature_keys) for spec in config.slicing_specs] == expected_slices
    assert ["density", "dataset"] in expected_slices
    for class_name in ("AUC", "AUCPrecisionRecall", "ExampleCount", "Calibration", "CalibrationPlot"):
        _metric(config, class_name)
    assert json.loads("{" + _metric(config, "SensitivityAtSpecificity").config + "}") == {"specificity": 0.9}
    assert json.loads("{" + _metric(config, "SpecificityAtSensitivity").config + "}") == {"sensitivity": 0.9}
    for class_name in ("FallOut", "MissRate"):
        assert json.loads("{" + _metric(config, class_name).config + "}") == {"thresholds": [0.3, 0.7]}
    # The gate counts classes from the matrices, so 0.5 is always among their thresholds.
    assert json.loads("{" + _metric(config, "ConfusionMatrixAtThresholds").config + "}") == {
        "thresholds": [0.3, 0.5, 0.7]}
    # No thresholds: the Evaluator must not bless on its own (the ModelGate does).
    assert not tfma.metrics.metric_thresholds_from_metrics_specs(config.metrics_specs, eval_config=config)


@pytest.mark.parametrize("has_baseline", [False, True])
def test_eval_config_survives_the_evaluators_own_baseline_handling(has_baseline):
    """TFX's Evaluator rewrites the config depending on whether the Resolver found a baseline; both must verify."""
    config = build_eval_config(EvaluationConfig(compute_confidence_intervals=True), with_baseline=True)
    updated = tfma.utils.update_eval_config_with_defaults(config, has_baseline=has_baseline, rubber_stamp=True)
    tfma.utils.verify_eval_config(updated)
    assert [spec.name for spec in updated.model_specs] == (["candidate", "baseline"] if has_baseline else [""])
    assert updated.options.compute_confidence_intervals.value
    assert updated.options.confidence_intervals.method == tfma.ConfidenceIntervalOptions.JACKKNIFE


@pytest.mark.parametrize("changes, message", [
    ({"min_overall_auc": 1.5}, "min_overall_auc"),
    ({"min_dataset_auc": {"inbreast": -0.1}}, "min_dataset_auc\\[inbreast\\]"),
    ({"fairness_thresholds": ()}, "fairness_thresholds"),
    ({"fairness_thresholds": (0.5, 1.0)}, "fairness_thresholds"),
    ({"min_examples_per_class": 0}, "min_examples_per_class"),
    ({"split": ""}, "split"),
])
def test_invalid_evaluation_settings_are_refused_when_the_config_is_built(changes, message):
    with pytest.raises(ValueError, match=message):
        EvaluationConfig(**changes)


def test_gate_settings_carry_the_bounds_and_the_config_round_trips_through_json():
    config = EvaluationConfig(min_overall_auc=0.85, min_dataset_auc={"inbreast": 0.75}, max_auc_drop=0.02,
                              min_slice_size=50, min_examples_per_class=7, insufficient_blocks_blessing=False,
                              fairness_thresholds=(0.3, 0.6), gate_unit="breast", external_datasets=("mias",),
                              min_external_auc=0.65, must_beat_baseline=True)
    assert config.gate_settings() == {
        "gated_output": GATED_OUTPUT, "gate_unit": "breast", "min_overall_auc": 0.85, "min_dataset_auc": {"inbreast": 0.75},
        "external_datasets": ["mias"], "min_external_auc": 0.65, "max_auc_drop": 0.02, "must_beat_baseline": True, "min_slice_size": 50,
        "min_examples_per_class": 7, "insufficient_blocks_blessing": False}
    assert EvaluationConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"unknown EvaluationConfig key min_auc;"):
        EvaluationConfig.from_dict({"min_auc": 0.9})


def test_components_are_wired_baseline_evaluator_gate_pusher_card(tmp_path):
    examples = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples)
    model = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
    config = EvaluationConfig(serving_dir=str(tmp_path / "serving"), model_name="screening")
    baseline, evaluator, screening_evaluator, gate, pusher, card = create_evaluation_components(
        config, examples, model, pipeline_root=str(tmp_path / "root"), profile={"profile": "test"})

    # The baseline is the newest version pushed where this Pusher pushes (no Resolver: open-source KFP refuses it).
    assert baseline.id == "PushedBaseline"
    assert baseline.inputs["model"] is model
    assert baseline.exec_properties["push_base_directory"] == str(tmp_path / "serving" / "screening")
    assert evaluator.inputs["baseline_model"] is baseline.outputs["baseline_model"]
    assert evaluator.inputs["model"] is model and evaluator.inputs["examples"] is examples
    assert json.loads(evaluator.exec_properties["example_splits"]) == ["test"]
    assert isinstance(gate, ModelGate)
    assert gate.inputs["evaluation"] is evaluator.outputs["evaluation"]
    assert gate.inputs["baseline_model"] is baseline.outputs["baseline_model"]
    assert EvaluationConfig.from_dict(json.loads(gate.exec_properties["evaluation_config"])) == config
    # The screening evaluation runs the same models on the same split; the gate and the card read its figures.
    assert screening_evaluator.id == "ScreeningEvaluator"
    assert screening_evaluator.inputs["examples"] is examples and screening_evaluator.inputs["model"] is model
    assert screening_evaluator.inputs["baseline_model"] is baseline.outputs["baseline_model"]
    # Only what it reads, so that a gate bound edit leaves its cached execution valid.
    assert screening_evaluator.exec_properties == {
        "split": config.split, "breast_rule": config.screening.breast_rule.value,
        "bootstrap_samples": config.bootstrap_samples, "external_datasets": "[]"}
    assert gate.inputs["unit_evaluation"] is screening_evaluator.outputs["unit_evaluation"]
    assert card.inputs["unit_evaluation"] is screening_evaluator.outputs["unit_evaluation"]
    # The Pusher obeys the gate, never the Evaluator's (threshold-less, never blessed) blessing.
    assert pusher.inputs["model_blessing"] is gate.outputs["blessing"]
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(pusher.exec_properties["push_destination"], destination)
    assert destination.filesystem.base_directory == str(tmp_path / "serving" / "screening")
    assert card.inputs["pushed_model"] is pusher.outputs["pushed_model"]
    assert card.inputs["blessing"] is gate.outputs["blessing"]
    assert json.loads(card.exec_properties["profile"]) == {"profile": "test"}


def test_serving_dir_defaults_under_the_pipeline_root():
    assert EvaluationConfig(model_name="m").push_base_directory("/runs/root") == "/runs/root/serving/m"


def test_evaluation_components_compile_into_a_pipeline_ir(tmp_path):
    """The TFX compiler accepts the nodes (optional baseline input of the gate, custom ModelCard output type)."""
    from tfx.dsl.compiler import compiler

    examples = tfx.dsl.Importer(source_uri=str(tmp_path / "examples"),
                                artifact_type=tfx.types.standard_artifacts.Examples).with_id("examples_importer")
    model = tfx.dsl.Importer(source_uri=str(tmp_path / "model"),
                             artifact_type=tfx.types.standard_artifacts.Model).with_id("model_importer")
    nodes = create_evaluation_components(EvaluationConfig(), examples.outputs["result"], model.outputs["result"],
                                         pipeline_root=str(tmp_path / "root"), profile={"profile": "test"})
    ir = compiler.Compiler().compile(tfx.dsl.Pipeline(
        pipeline_name="evaluation-wiring", pipeline_root=str(tmp_path / "root"),
        components=[examples, model, *nodes]))
    order = [node.pipeline_node.node_info.id for node in ir.nodes]
    assert order[-3:] == ["ModelGate", "Pusher", "ModelCardWriter"]
    assert set(order[-5:-3]) == {"Evaluator", "ScreeningEvaluator"}
