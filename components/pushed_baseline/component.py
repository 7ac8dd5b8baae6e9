"""PushedBaseline: a TFX component whose output Model is the newest version the Pusher has pushed."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.pushed_baseline import executor


class PushedBaselineSpec(ComponentSpec):
    """`push_base_directory`: the Pusher's base directory (`<serving dir>/<model name>`)."""

    PARAMETERS = {executor.PUSH_BASE_DIRECTORY_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        # The candidate: the baseline is looked up once per candidate (a cached candidate keeps its baseline, so
        # an unchanged re-run is served from the cache), and only after the Trainer produced it.
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class PushedBaseline(base_component.BaseComponent):
    """Hands the newest model version under `push_base_directory` on as a Model artifact, the baseline of the
    evaluation and the gate's no-regression check; an artifact without a model on the first run.

    Used on every runner (LocalDagRunner, BeamDagRunner, Kubeflow Pipelines, Vertex AI) in place of TFX's
    latest-blessed-model Resolver, which open-source KFP cannot run (kfp/README.md)."""

    SPEC_CLASS = PushedBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, push_base_directory: str) -> None:
        super().__init__(spec=PushedBaselineSpec(
            model=model,
            push_base_directory=push_base_directory,
            baseline_model=types.Channel(type=standard_artifacts.Model),
        ))
