"""ModelGate executor: reads the Evaluator's TFMA output (and the ScreeningEvaluator's unit evaluation, which a
breast-level gate needs), applies the gates of mammo_tfx.evaluation.gates at `evaluation.gate_unit`, writes a
TFX-conventional ModelBlessing.

The blessing follows TFX's Evaluator: `BLESSED`/`NOT_BLESSED` file, int custom property `blessed` 1/0 (what the
Pusher checks), `current_model`/`current_model_id` (what LatestBlessedModelStrategy matches a blessing to its model
by), `baseline_model`/`baseline_model_id` when there was one (and `baseline_pushed_version`, the served version it
is a copy of), plus `blessing_message` and `gate_results.json`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.pushed_baseline import executor as pushed_baseline
from components.pushed_baseline.executor import baseline_models
from mammo_tfx import names
from mammo_tfx.evaluation.config import GATED_OUTPUT, EvaluationConfig
from mammo_tfx.evaluation.gates import GateReport, evaluate_gates, write_gate_report
from mammo_tfx.evaluation.screening import IMAGE_UNIT
from mammo_tfx.evaluation.tfma_results import read_evaluation
from mammo_tfx.evaluation.unit_results import UnitEvaluation, read_unit_evaluation

EVALUATION_KEY = "evaluation"
MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
BLESSING_KEY = "blessing"
EVALUATION_CONFIG_KEY = "evaluation_config"
# Optional: the ScreeningEvaluator's artifact holding names.UNIT_EVALUATION_FILE.
UNIT_EVALUATION_KEY = "unit_evaluation"
BASELINE_VERSION_PROPERTY = "baseline_pushed_version"


def read_unit_evaluation_input(input_dict: Dict[str, List[types.Artifact]]) -> Optional[UnitEvaluation]:
    """The unit evaluation of the optional `unit_evaluation` channel; None when it is not wired or empty."""
    artifacts = input_dict.get(UNIT_EVALUATION_KEY) or []
    if not artifacts:
        return None
    return read_unit_evaluation(artifact_utils.get_single_instance(artifacts).uri)


def write_blessing(blessing: types.Artifact, report: GateReport, model: types.Artifact,
                   baseline_model: Optional[types.Artifact]) -> None:
    """Writes the blessing the way TFX's Evaluator does, so Pusher and LatestBlessedModelStrategy obey it."""
    write_gate_report(report, blessing.uri)
    marker = evaluator_constants.BLESSED_FILE_NAME if report.blessed else evaluator_constants.NOT_BLESSED_FILE_NAME
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as handle:
        handle.write("")
    blessing.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        evaluator_constants.BLESSED_VALUE if report.blessed else evaluator_constants.NOT_BLESSED_VALUE)
    blessing.set_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if baseline_model is not None:
        blessing.set_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                            baseline_model.uri)
        blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                         baseline_model.id)
        if baseline_model.has_custom_property(pushed_baseline.VERSION_PROPERTY):
            # Which served version the candidate was compared with (the PushedBaseline's copy of it).
            blessing.set_string_custom_property(
                BASELINE_VERSION_PROPERTY, baseline_model.get_string_custom_property(pushed_baseline.VERSION_PROPERTY))
    message = "blessed: all gates passed or skipped" if report.blessed else "not blessed: " + "; ".join(
        report.reasons)
    blessing.set_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, message)


class Executor(base_executor.BaseExecutor):
    """Gates the candidate model on its TFMA evaluation and writes the ModelBlessing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        evaluation = artifact_utils.get_single_instance(input_dict[EVALUATION_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        baselines = baseline_models(input_dict.get(BASELINE_MODEL_KEY))
        if len(baselines) > 1:
            raise ValueError(f"ModelGate: at most one baseline model, got {len(baselines)}")
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        config = EvaluationConfig.from_dict(json.loads(exec_properties[EVALUATION_CONFIG_KEY]))

        metrics = read_evaluation(evaluation.uri)
        if GATED_OUTPUT not in metrics.output_names():
            raise ValueError(f"ModelGate: evaluation {evaluation.uri} has no metrics for output "
                             f"'{GATED_OUTPUT}' (has {metrics.output_names()})")
        if (metrics.baseline_model_name is not None) != bool(baselines):
            raise ValueError(f"ModelGate: the evaluation {'has' if metrics.baseline_model_name else 'has no'} "
                             f"baseline results but {len(baselines)} baseline model(s) were given")
        units = read_unit_evaluation_input(input_dict)
        if config.gate_unit != IMAGE_UNIT and units is not None and (units.baseline is not None) != bool(baselines):
            raise ValueError(f"ModelGate: the unit evaluation {units.uri} "
                             f"{'has' if units.baseline is not None else 'has no'} baseline results but "
                             f"{len(baselines)} baseline model(s) were given")
        report = evaluate_gates(metrics, config, units)
        for gate in report.gates:
            logging.info("ModelGate %s", gate.log_line())
        write_blessing(blessing, report, model, baselines[0] if baselines else None)
        logging.info("ModelGate: model %s (id %d) gated per %s: %s; results in %s", model.uri, model.id,
                     config.gate_unit,
                     "BLESSED" if report.blessed else "NOT BLESSED: " + "; ".join(report.reasons),
                     os.path.join(blessing.uri, names.GATE_RESULTS_FILE))
