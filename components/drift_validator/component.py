"""DriftValidator: TFX's ExampleValidator (schema anomalies) that also checks drift from the served model's training
data; the pipeline gives it the id ExampleValidator."""
from __future__ import annotations

import json
from typing import Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.drift_validator import executor
from mammo_tfx.monitoring.options import DriftOptions


class DriftValidatorSpec(ComponentSpec):
    """ExampleValidator's spec plus `drift_options` (DriftOptions as JSON), `baseline_dir` (the push directory whose
    newest version is the model in service) and `reports_dir` (where a stopping drift's results are kept)."""

    PARAMETERS = {
        standard_component_specs.EXCLUDE_SPLITS_KEY: ExecutionParameter(type=str),
        executor.DRIFT_OPTIONS_KEY: ExecutionParameter(type=str),
        executor.BASELINE_DIR_KEY: ExecutionParameter(type=str),
        executor.REPORTS_DIR_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        standard_component_specs.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        standard_component_specs.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {standard_component_specs.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies)}


class DriftValidator(base_component.BaseComponent):
    """Schema anomalies per split (TFX's ExampleValidator: SchemaDiff.pb, `blessed`) and the drift of the
    acquisition features per split and slice from the training statistics of the newest version in `baseline_dir`
    (`drift.json`, `drifted` = the number of drifted comparisons); with `options.stop_run_on_drift` a drift fails it."""

    SPEC_CLASS = DriftValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel, options: DriftOptions,
                 baseline_dir: str, reports_dir: Optional[str] = None, exclude_splits: Sequence[str] = ()) -> None:
        super().__init__(spec=DriftValidatorSpec(
            statistics=statistics, schema=schema, exclude_splits=json.dumps(list(exclude_splits)),
            drift_options=json.dumps(options.to_dict(), sort_keys=True), baseline_dir=baseline_dir,
            reports_dir=reports_dir, anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))
