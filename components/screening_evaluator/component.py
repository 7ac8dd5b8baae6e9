"""ScreeningEvaluator: a TFX component that evaluates the whole-image model per screening unit and slice."""
from __future__ import annotations

import json
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.screening_evaluator import executor
from components.screening_evaluator.artifacts import ScreeningPredictions, UnitEvaluation
from mammo_tfx.evaluation.config import EvaluationConfig


class ScreeningEvaluatorSpec(ComponentSpec):
    """Parameters: the evaluated `split`, the configured `breast_rule` (the candidate's recorded rule wins), the
    `bootstrap_samples` of the confidence intervals and the `external_datasets` whose slices are marked external;
    nothing else of the EvaluationConfig, so that the cache key changes only when the evaluation can."""

    PARAMETERS = {
        executor.SPLIT_KEY: ExecutionParameter(type=str),
        executor.BREAST_RULE_KEY: ExecutionParameter(type=str),
        executor.BOOTSTRAP_SAMPLES_KEY: ExecutionParameter(type=int),
        executor.EXTERNAL_DATASETS_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        # The PushedBaseline's copy of the newest pushed version; it holds no model on the first run.
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        executor.PREDICTIONS_KEY: ChannelParameter(type=ScreeningPredictions),
        executor.UNIT_EVALUATION_KEY: ChannelParameter(type=UnitEvaluation),
    }


class ScreeningEvaluator(base_beam_component.BaseBeamComponent):
    """Runs the model's (and the baseline's) `serving_examples` on `config.split` of the examples in Beam, and
    writes the per-image predictions (ScreeningPredictions: `<candidate|baseline>/predictions.csv`) and the figures
    per model, unit (image, breast, exam) and slice (UnitEvaluation: `unit_evaluation.json`)."""

    SPEC_CLASS = ScreeningEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, config: EvaluationConfig,
                 baseline_model: Optional[types.BaseChannel] = None) -> None:
        spec = ScreeningEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            split=config.split,
            breast_rule=config.screening.breast_rule.value,
            bootstrap_samples=config.bootstrap_samples,
            external_datasets=json.dumps(list(config.external_datasets)),
            predictions=types.Channel(type=ScreeningPredictions),
            unit_evaluation=types.Channel(type=UnitEvaluation),
        )
        super().__init__(spec=spec)
