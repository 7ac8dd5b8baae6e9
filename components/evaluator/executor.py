"""Evaluator executor: TFX's, with a baseline input that holds no model (no version pushed yet) left out, so
TFMA evaluates the candidate alone, as TFX's Evaluator does when no baseline was resolved."""
from __future__ import annotations

from typing import Any, Dict, List

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_component_specs

from components.pushed_baseline.executor import baseline_models


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor (a subclass, so TFX's Kubeflow entrypoint treats its blessing as an Evaluator's)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        inputs = dict(input_dict)
        key = standard_component_specs.BASELINE_MODEL_KEY
        inputs[key] = baseline_models(input_dict.get(key))
        super().Do(inputs, output_dict, exec_properties)
