"""ModelCardWriter: a TFX component that documents every gated model (pushed or not) in a model card."""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.model_card import ModelCard
from components.model_card import executor
from components.screening_evaluator.artifacts import UnitEvaluation


class ModelCardWriterSpec(ComponentSpec):
    """`profile`: the pipeline configuration as JSON; `model_name`, `split`: as served and as evaluated."""

    PARAMETERS = {
        executor.PROFILE_KEY: ExecutionParameter(type=str),
        executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
        executor.SPLIT_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
        # The ScreeningEvaluator's figures per unit (breast and exam figures in the card).
        executor.UNIT_EVALUATION_KEY: ChannelParameter(type=UnitEvaluation, optional=True),
        # StatisticsGen's statistics of the model's examples, copied beside a pushed version (drift baseline).
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
        # The PushedBaseline's model (the previous version, or a fine-tune run's base model), named in the card.
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {executor.MODEL_CARD_KEY: ChannelParameter(type=ModelCard)}


class ModelCardWriter(base_component.BaseComponent):
    """Writes `model_card.{md,json}` (decision, gate results, per-slice metrics of both outputs, data counts per
    dataset and split, configuration profile, MLMD lineage) into its ModelCard artifact, and a copy into
    `<pushed version>/assets.extra/` when the Pusher pushed the model, with the `statistics` of its examples
(`assets.extra/training_statistics/Split-<name>/FeatureStats.pb`, the baseline of drift checks). `blessing` must come from a ModelGate."""

    SPEC_CLASS = ModelCardWriterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, evaluation: types.BaseChannel, blessing: types.BaseChannel,
                 examples: types.BaseChannel, pushed_model: types.BaseChannel, profile: Mapping[str, Any],
                 model_name: str, split: str, unit_evaluation: Optional[types.BaseChannel] = None,
                 statistics: Optional[types.BaseChannel] = None,
                 baseline_model: Optional[types.BaseChannel] = None) -> None:
        spec = ModelCardWriterSpec(
            model=model, evaluation=evaluation, blessing=blessing, examples=examples, pushed_model=pushed_model,
            unit_evaluation=unit_evaluation, statistics=statistics, baseline_model=baseline_model,
            profile=json.dumps(profile, sort_keys=True, default=str),
            model_name=model_name, split=split,
            model_card=types.Channel(type=ModelCard),
        )
        super().__init__(spec=spec)
