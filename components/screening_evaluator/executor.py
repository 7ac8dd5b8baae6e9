"""ScreeningEvaluator executor: wires the artifacts to the Beam evaluation of mammo_tfx/evaluation/unit_pipeline.py."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.pushed_baseline.executor import baseline_models
from mammo_tfx.evaluation.calibration import read_screening_record
from mammo_tfx.evaluation.screening import BreastRule
from mammo_tfx.evaluation.unit_pipeline import ModelUnderTest, add_unit_evaluation, evaluated_breast_rule
from mammo_tfx.evaluation.unit_results import BASELINE, CANDIDATE

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
# Parameters: only what the evaluation reads, so that editing another evaluation setting (a gate bound) leaves
# this component's cached execution valid.
SPLIT_KEY = "split"
BREAST_RULE_KEY = "breast_rule"
BOOTSTRAP_SAMPLES_KEY = "bootstrap_samples"
# Exec property: the datasets held out of training (JSON list), whose slices the figures mark external.
EXTERNAL_DATASETS_KEY = "external_datasets"
PREDICTIONS_KEY = "predictions"
UNIT_EVALUATION_KEY = "unit_evaluation"


def _model(name: str, artifact: types.Artifact) -> ModelUnderTest:
    export_dir = path_utils.serving_model_path(artifact.uri)
    return ModelUnderTest(name=name, export_dir=export_dir, record=read_screening_record(export_dir))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs candidate (and baseline, when the PushedBaseline holds one) on the configured split of the examples."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        split = exec_properties[SPLIT_KEY]
        configured_rule = BreastRule(exec_properties[BREAST_RULE_KEY])
        bootstrap_samples = int(exec_properties[BOOTSTRAP_SAMPLES_KEY])
        external_datasets = tuple(json.loads(exec_properties.get(EXTERNAL_DATASETS_KEY) or "[]"))
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        available = artifact_utils.decode_split_names(examples.split_names)
        if split not in available:
            raise ValueError(f"ScreeningEvaluator: split '{split}' is not in the examples at {examples.uri} "
                             f"(it has {available})")
        files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
        models = [_model(CANDIDATE, artifact_utils.get_single_instance(input_dict[MODEL_KEY]))]
        baselines = baseline_models(input_dict.get(BASELINE_MODEL_KEY))
        if baselines:
            models.append(_model(BASELINE, artifact_utils.get_single_instance(baselines)))
        rule = evaluated_breast_rule(models[0].record, configured_rule)
        predictions = artifact_utils.get_single_instance(output_dict[PREDICTIONS_KEY])
        unit_evaluation = artifact_utils.get_single_instance(output_dict[UNIT_EVALUATION_KEY])
        with self._make_beam_pipeline() as pipeline:
            add_unit_evaluation(pipeline, files, models, split=split, breast_rule=rule,
                                bootstrap_samples=bootstrap_samples, predictions_dir=predictions.uri,
                                evaluation_dir=unit_evaluation.uri,
                                external_datasets=external_datasets)
        for artifact in (predictions, unit_evaluation):
            artifact.set_string_custom_property("split", split)
            artifact.set_int_custom_property("with_baseline", int(len(models) > 1))
