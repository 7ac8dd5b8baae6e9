"""Evaluator: TFX's Evaluator component with the executor of components/evaluator/executor.py."""
from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.evaluator import executor


class Evaluator(tfx.components.Evaluator):
    """TFX's Evaluator (same spec, inputs and outputs) whose `baseline_model` may hold no model: then the candidate
    is evaluated alone."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
