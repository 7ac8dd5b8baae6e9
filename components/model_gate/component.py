"""ModelGate: a TFX component that blesses (or refuses) a model from its TFMA evaluation."""
from __future__ import annotations

import json
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.model_gate import executor
from components.screening_evaluator.artifacts import UnitEvaluation
from mammo_tfx.evaluation.config import EvaluationConfig


class ModelGateSpec(ComponentSpec):
    """`evaluation_config`: the EvaluationConfig as JSON (EvaluationConfig.to_dict())."""

    PARAMETERS = {executor.EVALUATION_CONFIG_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        # The baseline the Evaluator compared against (PushedBaseline); it holds no model on the first run.
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        # The ScreeningEvaluator's figures per unit; the breast gates (evaluation.gate_unit = breast) read them.
        executor.UNIT_EVALUATION_KEY: ChannelParameter(type=UnitEvaluation, optional=True),
    }
    OUTPUTS = {executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing)}


class ModelGate(base_component.BaseComponent):
    """Applies the AUC gates of `config` to an Evaluator's output and writes a standard ModelBlessing.

    The blessing carries TFX's markers (BLESSED/NOT_BLESSED file, `blessed` custom property, `current_model_id`),
    so the standard Pusher (and TFX's LatestBlessedModelStrategy) obey it, and `gate_results.json` with every gate's value,
    bound and status (passed / failed / insufficient / skipped). Give the Evaluator no thresholds: this gate is the
    only blessing authority.
    """

    SPEC_CLASS = ModelGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, evaluation: types.BaseChannel, model: types.BaseChannel, config: EvaluationConfig,
                 baseline_model: Optional[types.BaseChannel] = None,
                 unit_evaluation: Optional[types.BaseChannel] = None) -> None:
        spec = ModelGateSpec(
            evaluation=evaluation,
            model=model,
            baseline_model=baseline_model,
            unit_evaluation=unit_evaluation,
            evaluation_config=json.dumps(config.to_dict(), sort_keys=True),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
