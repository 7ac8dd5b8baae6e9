"""ModelCardWriter executor: a Markdown + JSON model card for every gated model, pushed or not.

The card always goes into the component's own ModelCard artifact (`model_card.md`, `model_card.json`). When the
Pusher pushed the model, a copy goes inside the pushed version, `<serving_dir>/<model_name>/<version>/assets.extra/`:
TF Serving only loads integer-named version folders and reads nothing from `assets.extra` but its warm-up file, so
the base directory stays a clean list of versions and the card travels with the version it describes. So do the
statistics of the data the model was trained on (StatisticsGen's, every split), under
`assets.extra/training_statistics/`: the baseline that drift checks and `mammo-tfx monitor` compare new data with.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.pushed_baseline import executor as pushed_baseline
from mammo_tfx import names
from mammo_tfx.evaluation.calibration import read_screening_record
from mammo_tfx.evaluation.gates import BASELINE_GATE, OVERALL_GATE, GateReport, read_gate_report
from mammo_tfx.evaluation.model_card import (INGEST_COUNTS, MODEL_DESCRIPTION, operating_point, slice_rows,
                                             training_record, write_card)
from mammo_tfx.evaluation.tfma_results import EvaluationMetrics, read_evaluation
from mammo_tfx.evaluation.unit_results import UnitEvaluation, read_unit_evaluation
from mammo_tfx.monitoring.drift import STATISTICS_FILE
from mammo_tfx.serving.model_info import read_model_info

MODEL_KEY = "model"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
EXAMPLES_KEY = "examples"
PUSHED_MODEL_KEY = "pushed_model"
MODEL_CARD_KEY = "model_card"
PROFILE_KEY = "profile"
MODEL_NAME_KEY = "model_name"
SPLIT_KEY = "split"
# Optional: the ScreeningEvaluator's artifact holding names.UNIT_EVALUATION_FILE.
UNIT_EVALUATION_KEY = "unit_evaluation"
# Optional: StatisticsGen's statistics of the examples the model was trained on, copied beside a pushed version.
STATISTICS_KEY = "statistics"
# Optional: the PushedBaseline's artifact (the model compared with; a fine-tune run's base model).
BASELINE_MODEL_KEY = "baseline_model"

# Properties the Pusher sets on its PushedModel (tfx/components/pusher/executor.py).
_PUSHED = "pushed"
_PUSHED_DESTINATION = "pushed_destination"
_PUSHED_VERSION = "pushed_version"
def _artifact_ref(artifact: Optional[types.Artifact]) -> Optional[Dict[str, Any]]:
    return None if artifact is None else {"id": artifact.id, "uri": artifact.uri, "type": artifact.type_name}


def data_counts(examples: types.Artifact) -> Dict[str, Any]:
    """Examples per split and dataset, and the ingestion totals, as MammoExampleGen recorded them."""
    split_counts_text = (examples.get_string_custom_property("split_counts")
                         if examples.has_custom_property("split_counts") else "")
    counts: Dict[str, Any] = {"split_counts": json.loads(split_counts_text) if split_counts_text else {}}
    for key in INGEST_COUNTS:
        counts[key] = examples.get_int_custom_property(key) if examples.has_custom_property(key) else None
    return counts


def export_input_limits(model: types.Artifact) -> Optional[Dict[str, int]]:
    """The image limits the model's serving signatures enforce, as its export records them; None for a model that
    trainer_module did not export."""
    try:
        info = read_model_info(path_utils.serving_model_path(model.uri))
    except FileNotFoundError:
        return None
    return info.image_limits.to_dict()


def export_training_record(model: types.Artifact) -> Optional[Dict[str, Dict[str, Any]]]:
    """The seed and op determinism each stage of the export trained with (model_card.training_record); None for a
    model that trainer_module did not export."""
    try:
        info = read_model_info(path_utils.serving_model_path(model.uri))
    except FileNotFoundError:
        return None
    return training_record(info)


def export_screening_record(model: types.Artifact) -> Optional[Dict[str, Any]]:
    """The calibration and operating point the export records (ScreeningRecord.to_dict()); None for an export
    without one."""
    record = read_screening_record(path_utils.serving_model_path(model.uri))
    return None if record is None else record.to_dict()


def compared_baseline(baseline_model: Optional[types.Artifact], gate_report: GateReport) -> Optional[Dict[str, Any]]:
    """The model the candidate was compared with (its folder and pushed version, "" for a bare export) and both
    overall AUCs at the gate unit; None when there was no baseline."""
    if baseline_model is None or not (baseline_model.has_custom_property(pushed_baseline.FOUND_PROPERTY)
                                      and baseline_model.get_int_custom_property(pushed_baseline.FOUND_PROPERTY)):
        return None
    gates = {gate.name: gate for gate in gate_report.gates}
    candidate_auc = gates[OVERALL_GATE].value if OVERALL_GATE in gates else None
    change = gates[BASELINE_GATE].value if BASELINE_GATE in gates else None
    return {"path": baseline_model.get_string_custom_property(pushed_baseline.SOURCE_PROPERTY),
            "version": baseline_model.get_string_custom_property(pushed_baseline.VERSION_PROPERTY),
            "unit": gates[OVERALL_GATE].unit if OVERALL_GATE in gates else None,
            "candidate_auc": candidate_auc,
            "baseline_auc": None if candidate_auc is None or change is None else candidate_auc - change}


def build_card(model_name: str, split: str, profile: Mapping[str, Any], gate_report: GateReport,
               metrics: EvaluationMetrics, examples: types.Artifact, model: types.Artifact,
               evaluation: types.Artifact, blessing: types.Artifact, pushed_model: types.Artifact,
               units: Optional[UnitEvaluation] = None,
               unit_evaluation: Optional[types.Artifact] = None,
               baseline_model: Optional[types.Artifact] = None) -> Dict[str, Any]:
    """The model card as a JSON-able dict (the Markdown is rendered from it). `units`: the screening evaluation
    (`unit_evaluation` its artifact), for the operating point on the evaluated split and the other units.
    `baseline_model`: the PushedBaseline's artifact, named with both AUCs."""
    pushed = pushed_model.has_custom_property(_PUSHED) and pushed_model.get_int_custom_property(_PUSHED) == 1
    baseline_id = (blessing.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY)
                   if blessing.has_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY)
                   else None)
    baseline_uri = (blessing.get_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY)
                    if baseline_id is not None else None)
    return {
        "model_name": model_name,
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "description": MODEL_DESCRIPTION,
        "decision": {
            "blessed": gate_report.blessed,
            "reasons": gate_report.reasons,
            "pushed": pushed,
            "version": pushed_model.get_string_custom_property(_PUSHED_VERSION) if pushed else None,
            "serving_path": pushed_model.get_string_custom_property(_PUSHED_DESTINATION) if pushed else None,
        },
        "baseline": compared_baseline(baseline_model, gate_report),
        "gates": [dataclasses.asdict(gate) for gate in gate_report.gates],
        "gate_settings": dict(gate_report.settings),
        "evaluation": {
            "split": split,
            "baseline_evaluated": metrics.baseline_model_name is not None,
            "slices": [row for output in metrics.output_names()
                       for row in slice_rows(metrics, output, gate_report.sufficiency_rule())],
        },
        "operating_point": operating_point(export_screening_record(model), units),
        "data": data_counts(examples),
        "input_limits": export_input_limits(model),
        "training": export_training_record(model),
        "profile": dict(profile),
        "lineage": {
            "model": _artifact_ref(model),
            "evaluation": _artifact_ref(evaluation),
            "unit_evaluation": _artifact_ref(unit_evaluation),
            "blessing": _artifact_ref(blessing),
            "examples": _artifact_ref(examples),
            "pushed_model": _artifact_ref(pushed_model),
            "baseline_model": None if baseline_id is None else {"id": baseline_id, "uri": baseline_uri},
        },
    }


def copy_statistics(statistics: types.Artifact, destination: str) -> None:
    """Every split's FeatureStats.pb of a StatisticsGen artifact into `destination/Split-<name>/`."""
    for split in artifact_utils.decode_split_names(statistics.split_names):
        source = os.path.join(artifact_utils.get_split_uri([statistics], split), STATISTICS_FILE)
        target = os.path.join(destination, f"Split-{split}")
        tf.io.gfile.makedirs(target)
        tf.io.gfile.copy(source, os.path.join(target, STATISTICS_FILE), overwrite=True)


class Executor(base_executor.BaseExecutor):
    """Writes the model card into its artifact and, when the model was pushed, beside the pushed version."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        evaluation = artifact_utils.get_single_instance(input_dict[EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        pushed_model = artifact_utils.get_single_instance(input_dict[PUSHED_MODEL_KEY])
        model_card = artifact_utils.get_single_instance(output_dict[MODEL_CARD_KEY])
        unit_artifacts = input_dict.get(UNIT_EVALUATION_KEY) or []
        unit_evaluation = artifact_utils.get_single_instance(unit_artifacts) if unit_artifacts else None
        baseline_artifacts = input_dict.get(BASELINE_MODEL_KEY) or []

        card = build_card(
            model_name=exec_properties[MODEL_NAME_KEY], split=exec_properties[SPLIT_KEY],
            profile=json.loads(exec_properties.get(PROFILE_KEY) or "{}"),
            gate_report=read_gate_report(blessing.uri), metrics=read_evaluation(evaluation.uri), examples=examples,
            model=model, evaluation=evaluation, blessing=blessing, pushed_model=pushed_model,
            units=read_unit_evaluation(unit_evaluation.uri) if unit_evaluation is not None else None,
            unit_evaluation=unit_evaluation,
            baseline_model=artifact_utils.get_single_instance(baseline_artifacts) if baseline_artifacts else None)
        write_card(card, model_card.uri)
        model_card.set_int_custom_property("blessed", int(card["decision"]["blessed"]))
        model_card.set_int_custom_property("pushed", int(card["decision"]["pushed"]))
        if card["decision"]["pushed"]:
            serving_copy = os.path.join(card["decision"]["serving_path"], names.SERVING_EXTRAS_DIR)
            write_card(card, serving_copy)
            statistics = input_dict.get(STATISTICS_KEY) or []
            if statistics:
                copy_statistics(artifact_utils.get_single_instance(statistics),
                                 os.path.join(serving_copy, names.TRAINING_STATISTICS_DIR))
            model_card.set_string_custom_property("serving_copy", serving_copy)
            logging.info("ModelCardWriter: card written to %s and %s", model_card.uri, serving_copy)
        else:
            logging.info("ModelCardWriter: model not pushed; card written to %s", model_card.uri)
