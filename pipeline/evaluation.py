"""Evaluation, blessing and push of the whole-image model: TFMA config, baseline, gates, Pusher, model card.

Who blesses: the ModelGate component (components/model_gate), not the Evaluator. The Evaluator gets no metric
thresholds, so it computes metrics only and writes no `blessed` property on its own blessing output (TFX skips
validation when no threshold is configured). The gate reads the evaluation and applies this project's rules, which
TFMA thresholds cannot express: a slice that is too small or holds one class gets TFMA AUC 0.0, which a TFMA
threshold would count as a failure; the gate reports it as `insufficient` instead. The Pusher obeys the gate's
blessing, which follows TFX's conventions.

The baseline: the PushedBaseline component (components/pushed_baseline) copies the newest version under the
Pusher's base directory, which holds only models the gate blessed, and hands it to the Evaluator, the
ScreeningEvaluator and the gate; on a first run (nothing pushed yet) its artifact holds no model and they evaluate
the candidate alone. The same mechanism runs on every runner: TFX's latest-blessed-model Resolver it replaces is a
`resolver` task in a compiled KFP pipeline, which open-source KFP refuses (kfp/README.md).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components.evaluator.component import Evaluator
from components.model_card.component import ModelCardWriter
from components.model_gate import ModelGate
from components.pushed_baseline.component import PushedBaseline
from components.screening_evaluator.component import ScreeningEvaluator
from mammo_tfx import names
from mammo_tfx.evaluation.config import EvaluationConfig

# Operating points of the screening literature: sensitivity at 90% specificity and the converse.
OPERATING_POINT = 0.9
CANDIDATE_MODEL_NAME = tfma.CANDIDATE_KEY
BASELINE_MODEL_NAME = tfma.BASELINE_KEY
BASELINE_ID = "PushedBaseline"
EVALUATOR_ID = "Evaluator"
SCREENING_EVALUATOR_ID = "ScreeningEvaluator"
GATE_ID = "ModelGate"
PUSHER_ID = "Pusher"
MODEL_CARD_ID = "ModelCardWriter"


def _thresholds_config(thresholds: Tuple[float, ...]) -> str:
    # TFMA metric configs are the keyword arguments of the metric class as a JSON object body.
    return '"thresholds": [' + ", ".join(repr(float(t)) for t in thresholds) + "]"


def metric_configs(cfg: EvaluationConfig) -> List[tfma.MetricConfig]:
    """Metrics computed for every output and slice; none carries a threshold (the ModelGate decides)."""
    # The gate counts each slice's positives and negatives from the confusion matrices, so the matrix is always
    # computed, at 0.5 too (the conventional operating point) next to the fairness thresholds.
    matrix_thresholds = tuple(sorted({0.5, *cfg.fairness_thresholds}))
    return [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="AUC"),
        tfma.MetricConfig(class_name="AUCPrecisionRecall"),
        tfma.MetricConfig(class_name="SensitivityAtSpecificity", config=f'"specificity": {OPERATING_POINT}'),
        tfma.MetricConfig(class_name="SpecificityAtSensitivity", config=f'"sensitivity": {OPERATING_POINT}'),
        tfma.MetricConfig(class_name="Calibration"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
        tfma.MetricConfig(class_name="FallOut", config=_thresholds_config(cfg.fairness_thresholds)),
        tfma.MetricConfig(class_name="MissRate", config=_thresholds_config(cfg.fairness_thresholds)),
        tfma.MetricConfig(class_name="ConfusionMatrixAtThresholds", config=_thresholds_config(matrix_thresholds)),
    ]


def slicing_specs() -> List[tfma.SlicingSpec]:
    return ([tfma.SlicingSpec()]
            + [tfma.SlicingSpec(feature_keys=[feature]) for feature in names.SLICE_FEATURES]
            + [tfma.SlicingSpec(feature_keys=list(cross)) for cross in names.CROSSED_SLICES])


def build_eval_config(cfg: EvaluationConfig, with_baseline: bool) -> tfma.EvalConfig:
    """TFMA config of the whole-image model on its tf.Example signature, both outputs, all slices.

    With a baseline the candidate and baseline specs are named; TFX's Evaluator drops the baseline spec itself
    when it gets no baseline model (first run: nothing pushed yet), so the pipeline always passes
    `with_baseline=True`.
    """
    def model_spec(**extra: Any) -> tfma.ModelSpec:
        # model_type tf_generic: TFMA would otherwise load the SavedModel once more as Keras just to find its type.
        return tfma.ModelSpec(signature_name=names.EXAMPLES_SIGNATURE, label_key=names.LABEL,
                              model_type=tfma.TF_GENERIC, **extra)

    if with_baseline:
        model_specs = [model_spec(name=CANDIDATE_MODEL_NAME),
                       model_spec(name=BASELINE_MODEL_NAME, is_baseline=True)]
    else:
        model_specs = [model_spec()]
    options = tfma.Options()
    # Default metrics would be the model's compiled Keras metrics, which a tf_generic signature does not have.
    options.include_default_metrics.value = False
    options.compute_confidence_intervals.value = cfg.compute_confidence_intervals
    return tfma.EvalConfig(
        model_specs=model_specs,
        slicing_specs=slicing_specs(),
        metrics_specs=[tfma.MetricsSpec(output_names=list(names.MODEL_OUTPUTS), metrics=metric_configs(cfg))],
        options=options,
    )


def create_evaluation_components(
    config: EvaluationConfig,
    examples_channel: tfx.types.BaseChannel,
    model_channel: tfx.types.BaseChannel,
    pipeline_root: str,
    profile: Mapping[str, Any],
    schema_channel: Optional[tfx.types.BaseChannel] = None,
    statistics_channel: Optional[tfx.types.BaseChannel] = None,
    baseline_directory: Optional[str] = None,
    push_base_directory: Optional[str] = None,
) -> List[tfx.types.BaseNode]:
    """PushedBaseline -> Evaluator and ScreeningEvaluator -> ModelGate -> Pusher -> ModelCardWriter for the
    whole-image model. The Evaluator (TFMA) gives the per-image figures, the ScreeningEvaluator the per-breast and
    per-exam ones (TFMA cannot group examples); the gate and the card read both.

    `examples_channel`: ExampleGen's examples (the `config.split` split is evaluated; its `split_counts` and
    ingestion counts go into the card). `model_channel`: the whole-image Trainer's model. `profile`: the whole
    pipeline configuration as a dict (PipelineConfig.to_dict()), recorded in the model card. `statistics_channel`:
    StatisticsGen's statistics of the examples, pushed beside the model (the baseline of drift checks).
    `baseline_directory` / `push_base_directory`: where the baseline is read (a base folder, a version folder or an
    export) and where the Pusher writes; both default to `config.push_base_directory(pipeline_root)` (a fine-tune
    run reads its base model instead).
    """
    push_base_directory = push_base_directory or config.push_base_directory(pipeline_root)
    baseline = PushedBaseline(model=model_channel, push_base_directory=baseline_directory or push_base_directory
                              ).with_id(BASELINE_ID)
    evaluator = Evaluator(
        examples=examples_channel,
        model=model_channel,
        baseline_model=baseline.outputs["baseline_model"],
        schema=schema_channel,
        eval_config=build_eval_config(config, with_baseline=True),
        example_splits=[config.split],
    ).with_id(EVALUATOR_ID)
    screening_evaluator = ScreeningEvaluator(
        examples=examples_channel,
        model=model_channel,
        baseline_model=baseline.outputs["baseline_model"],
        config=config,
    ).with_id(SCREENING_EVALUATOR_ID)
    gate = ModelGate(
        evaluation=evaluator.outputs["evaluation"],
        model=model_channel,
        baseline_model=baseline.outputs["baseline_model"],
        unit_evaluation=screening_evaluator.outputs["unit_evaluation"],
        config=config,
    ).with_id(GATE_ID)
    pusher = tfx.components.Pusher(
        model=model_channel,
        model_blessing=gate.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=push_base_directory)),
    ).with_id(PUSHER_ID)
    model_card = ModelCardWriter(
        model=model_channel,
        evaluation=evaluator.outputs["evaluation"],
        blessing=gate.outputs["blessing"],
        examples=examples_channel,
        pushed_model=pusher.outputs["pushed_model"],
        profile=dict(profile),
        model_name=config.model_name,
        split=config.split,
        unit_evaluation=screening_evaluator.outputs["unit_evaluation"],
        statistics=statistics_channel,
        baseline_model=baseline.outputs["baseline_model"],
    ).with_id(MODEL_CARD_ID)
    return [baseline, evaluator, screening_evaluator, gate, pusher, model_card]
