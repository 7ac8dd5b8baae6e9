"""ModelGate executor: reads a TFMA evaluation, applies the AUC gates, writes a TFX-conventional ModelBlessing.

Gates (on the gated output, normally the flip-augmented `probability`):
  * `overall_auc`            AUC on the whole evaluated split >= min_overall_auc
  * `dataset_auc[<name>]`    AUC on the `dataset=<name>` slice >= its own bound, for each configured dataset
  * `auc_drop_vs_baseline`   candidate AUC - baseline AUC (overall) >= -max_auc_drop, when a baseline was evaluated
Each gate ends with one status:
  * `passed` / `failed`      the value was checked against the bound
  * `insufficient`           the slice has fewer than min_slice_size examples or fewer than min_examples_per_class
                             of a class, so its AUC means nothing (TFMA reports 0.0 for a one-class slice); the
                             bound is not applied. It blocks blessing if insufficient_blocks_blessing, and always
                             for the overall gate (no evidence at all).
  * `skipped`                nothing to check: a gated dataset has no examples in the evaluated split, or there is
                             no blessed baseline yet (first model). Never blocks.
Blessed = no gate failed and no gate is blocking-insufficient.

The blessing follows TFX's Evaluator: `BLESSED`/`NOT_BLESSED` file, int custom property `blessed` 1/0 (what the
Pusher checks), `current_model`/`current_model_id` (what LatestBlessedModelStrategy matches a blessing to its model
by), `baseline_model`/`baseline_model_id` when there was one, plus `blessing_message` and `gate_results.json`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import tensorflow as tf
import tensorflow_model_analysis as tfma
from absl import logging
from tensorflow_model_analysis.writers import eval_config_writer
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from mammo_tfx.tfma_keys import is_plain_metric_key, slice_pairs_from_proto

EVALUATION_KEY = "evaluation"
MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
BLESSING_KEY = "blessing"
SETTINGS_KEY = "settings"
GATE_RESULTS_FILE = "gate_results.json"

PASSED = "passed"
FAILED = "failed"
INSUFFICIENT = "insufficient"
SKIPPED = "skipped"

OVERALL_GATE = "overall_auc"
BASELINE_GATE = "auc_drop_vs_baseline"
DATASET_FEATURE = "dataset"
OVERALL_SLICE_NAME = "Overall"

SliceValue = Union[str, int, float]
SliceKey = Tuple[Tuple[str, SliceValue], ...]
OVERALL_SLICE: SliceKey = ()


def dataset_gate_name(dataset: str) -> str:
    return f"dataset_auc[{dataset}]"


@dataclass(frozen=True)
class GateSettings:
    """The ModelGate's parameters (pipeline.evaluation.EvaluationConfig.gate_settings() builds them)."""

    gated_output: str = "probability"
    min_overall_auc: float = 0.80
    min_dataset_auc: Dict[str, float] = field(default_factory=dict)
    max_auc_drop: float = 0.01
    min_slice_size: int = 30
    min_examples_per_class: int = 5
    insufficient_blocks_blessing: bool = True

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GateSettings":
        values = json.loads(text)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"ModelGate settings: unknown keys {sorted(unknown)}")
        return cls(**values)


@dataclass
class SliceMetrics:
    """Metrics of one model output on one slice: scalars, arrays (per threshold) and 95% confidence intervals."""

    values: Dict[str, Any] = field(default_factory=dict)
    confidence_intervals: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    @property
    def example_count(self) -> int:
        return int(round(self.values.get("example_count", 0.0)))

    def class_counts(self) -> Tuple[int, int]:
        """(positives, negatives): every confusion matrix of the slice holds them, whatever its threshold."""
        matrices = self.values.get("confusion_matrix_at_thresholds") or []
        if not matrices:
            return 0, 0
        first = matrices[0]
        return (int(round(first["true_positives"] + first["false_negatives"])),
                int(round(first["true_negatives"] + first["false_positives"])))


@dataclass
class EvaluationMetrics:
    """All metrics of one TFMA evaluation, by (model name, output name) then slice."""

    uri: str
    candidate_model_name: str
    baseline_model_name: Optional[str]
    by_model_output: Dict[Tuple[str, str], Dict[SliceKey, SliceMetrics]]
    eval_config: tfma.EvalConfig = field(default_factory=tfma.EvalConfig)

    def metric_thresholds(self, class_name: str) -> List[float]:
        """The `thresholds` a thresholded metric (e.g. FallOut) was configured with: its array values follow them."""
        for metrics_spec in self.eval_config.metrics_specs:
            for metric in metrics_spec.metrics:
                if metric.class_name == class_name and metric.config:
                    return [float(t) for t in json.loads("{" + metric.config + "}").get("thresholds", [])]
        return []

    def slices(self, output_name: str, baseline: bool = False) -> Dict[SliceKey, SliceMetrics]:
        model_name = self.baseline_model_name if baseline else self.candidate_model_name
        if model_name is None:
            raise ValueError(f"evaluation {self.uri} has no baseline model")
        return self.by_model_output.get((model_name, output_name), {})

    def output_names(self) -> List[str]:
        return sorted({output for model, output in self.by_model_output if model == self.candidate_model_name})


def slice_name(slice_key: SliceKey) -> str:
    """`Overall`, `dataset=inbreast`, `density=2, dataset=inbreast`."""
    if not slice_key:
        return OVERALL_SLICE_NAME
    return ", ".join(f"{column}={value}" for column, value in slice_key)


def _metric_value(value: Any) -> Any:
    kind = value.WhichOneof("type")
    if kind == "double_value":
        return value.double_value.value
    if kind == "array_value":
        return [float(v) for v in value.array_value.float64_values]
    if kind == "confusion_matrix_at_thresholds":
        return [{"threshold": m.threshold, "true_positives": m.true_positives,
                 "false_positives": m.false_positives, "true_negatives": m.true_negatives,
                 "false_negatives": m.false_negatives}
                for m in value.confusion_matrix_at_thresholds.matrices]
    if kind == "debug_message":
        # TFMA writes a debug message instead of a value when a metric failed to compute; keep it visible.
        return {"error": value.debug_message}
    return None


def read_evaluation(evaluation_uri: str) -> EvaluationMetrics:
    """Reads the metrics TFMA wrote to `evaluation_uri` and the model names of the EvalConfig it used."""
    eval_config, _, _, _ = eval_config_writer.load_eval_run(evaluation_uri)
    candidates = [spec.name for spec in eval_config.model_specs if not spec.is_baseline]
    baselines = [spec.name for spec in eval_config.model_specs if spec.is_baseline]
    if len(candidates) != 1 or len(baselines) > 1:
        raise ValueError(f"evaluation {evaluation_uri}: expected one candidate and at most one baseline model spec, "
                         f"got {[spec.name for spec in eval_config.model_specs]}")
    by_model_output: Dict[Tuple[str, str], Dict[SliceKey, SliceMetrics]] = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        if metrics_for_slice.HasField("cross_slice_key"):
            continue
        slice_key = slice_pairs_from_proto(metrics_for_slice.slice_key)
        for key_and_value in metrics_for_slice.metric_keys_and_values:
            key = key_and_value.key
            if not is_plain_metric_key(key):
                continue
            slice_metrics = by_model_output.setdefault((key.model_name, key.output_name), {}).setdefault(
                slice_key, SliceMetrics())
            slice_metrics.values[key.name] = _metric_value(key_and_value.value)
            if (key_and_value.HasField("confidence_interval")
                    and key_and_value.confidence_interval.lower_bound.WhichOneof("type") == "double_value"):
                interval = key_and_value.confidence_interval
                slice_metrics.confidence_intervals[key.name] = (interval.lower_bound.double_value.value,
                                                                interval.upper_bound.double_value.value)
    return EvaluationMetrics(uri=evaluation_uri, candidate_model_name=candidates[0],
                             baseline_model_name=baselines[0] if baselines else None,
                             by_model_output=by_model_output, eval_config=eval_config)


@dataclass
class GateResult:
    name: str
    output: str
    slice: str
    metric: str
    bound: float
    status: str
    blocks_blessing: bool
    detail: str
    value: Optional[float] = None
    confidence_interval: Optional[Tuple[float, float]] = None
    margin: Optional[float] = None  # value - bound: negative means failed by that much
    example_count: Optional[int] = None
    positives: Optional[int] = None
    negatives: Optional[int] = None

    def log_line(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4f}"
        if self.confidence_interval is not None:
            value += f" (95% CI {self.confidence_interval[0]:.4f}-{self.confidence_interval[1]:.4f})"
        if self.status == FAILED:
            outcome = f"FAILED by {-self.margin:.4f}"
        elif self.status == PASSED:
            outcome = f"passed by {self.margin:.4f}"
        else:
            outcome = self.status + (" (blocks blessing)" if self.blocks_blessing else " (does not block)")
        return (f"gate {self.name} [{self.output}, {self.slice}]: {self.metric} {value}, bound >= {self.bound:.4f}: "
                f"{outcome}; {self.detail}")


@dataclass
class GateReport:
    blessed: bool
    gates: List[GateResult]
    settings: GateSettings
    evaluation_uri: str
    baseline_evaluated: bool

    @property
    def reasons(self) -> List[str]:
        """Why the model is not blessed (empty when blessed)."""
        return [f"{gate.name}: {gate.status} - {gate.detail}" for gate in self.gates if gate.blocks_blessing]

    def to_dict(self) -> Dict[str, Any]:
        return {"blessed": self.blessed, "reasons": self.reasons, "settings": dataclasses.asdict(self.settings),
                "evaluation_uri": self.evaluation_uri, "baseline_evaluated": self.baseline_evaluated,
                "gates": [dataclasses.asdict(gate) for gate in self.gates]}


def slice_sufficiency(metrics: Optional[SliceMetrics], settings: GateSettings) -> Tuple[bool, str]:
    """Whether a slice has enough examples of both classes for its AUC to mean something, and the counts."""
    if metrics is None:
        return False, "no metrics for this slice"
    count = metrics.example_count
    positives, negatives = metrics.class_counts()
    counts = f"{count} examples, {positives} positive, {negatives} negative"
    needs = f"needs >= {settings.min_slice_size} examples and >= {settings.min_examples_per_class} per class"
    sufficient = (count >= settings.min_slice_size and positives >= settings.min_examples_per_class
                  and negatives >= settings.min_examples_per_class)
    return sufficient, counts if sufficient else f"{counts}; {needs}"


def _auc_gate(name: str, slice_key: SliceKey, metrics: Optional[SliceMetrics], bound: float,
              settings: GateSettings, always_blocks_when_insufficient: bool) -> GateResult:
    sufficient, counts_text = slice_sufficiency(metrics, settings)
    result = GateResult(name=name, output=settings.gated_output, slice=slice_name(slice_key), metric="auc",
                        bound=bound, status=INSUFFICIENT, blocks_blessing=False, detail=counts_text)
    if metrics is not None:
        result.example_count = metrics.example_count
        result.positives, result.negatives = metrics.class_counts()
        auc = metrics.values.get("auc")
        result.value = auc if isinstance(auc, float) else None
        result.confidence_interval = metrics.confidence_intervals.get("auc")
    if not sufficient:
        result.blocks_blessing = always_blocks_when_insufficient or settings.insufficient_blocks_blessing
        result.detail = f"AUC not judged ({counts_text})"
        return result
    if result.value is None or math.isnan(result.value):
        result.status, result.blocks_blessing = FAILED, True
        result.margin = -math.inf
        result.detail = f"AUC missing or undefined ({counts_text})"
        return result
    result.margin = result.value - bound
    result.status = PASSED if result.margin >= 0 else FAILED
    result.blocks_blessing = result.status == FAILED
    return result


def evaluate_gates(evaluation: EvaluationMetrics, settings: GateSettings) -> GateReport:
    """Applies every configured gate to an evaluation; pure (no I/O), so each rule is testable on its own."""
    candidate = evaluation.slices(settings.gated_output)
    gates = [_auc_gate(OVERALL_GATE, OVERALL_SLICE, candidate.get(OVERALL_SLICE), settings.min_overall_auc,
                       settings, always_blocks_when_insufficient=True)]

    for dataset, bound in sorted(settings.min_dataset_auc.items()):
        slice_key: SliceKey = ((DATASET_FEATURE, dataset),)
        if slice_key not in candidate:
            gates.append(GateResult(
                name=dataset_gate_name(dataset), output=settings.gated_output, slice=slice_name(slice_key),
                metric="auc", bound=bound, status=SKIPPED, blocks_blessing=False,
                detail=f"no examples of dataset '{dataset}' in the evaluated split", example_count=0))
            continue
        gates.append(_auc_gate(dataset_gate_name(dataset), slice_key, candidate[slice_key], bound, settings,
                               always_blocks_when_insufficient=False))

    baseline_evaluated = evaluation.baseline_model_name is not None
    drop_bound = -settings.max_auc_drop
    if not baseline_evaluated:
        gates.append(GateResult(
            name=BASELINE_GATE, output=settings.gated_output, slice=OVERALL_SLICE_NAME, metric="auc_change",
            bound=drop_bound, status=SKIPPED, blocks_blessing=False,
            detail="no blessed baseline model was evaluated (first blessing)"))
    else:
        overall_gate = gates[0]
        baseline = evaluation.slices(settings.gated_output, baseline=True).get(OVERALL_SLICE)
        baseline_auc = baseline.values.get("auc") if baseline is not None else None
        result = GateResult(name=BASELINE_GATE, output=settings.gated_output, slice=OVERALL_SLICE_NAME,
                            metric="auc_change", bound=drop_bound, status=INSUFFICIENT, blocks_blessing=False,
                            detail="", example_count=overall_gate.example_count, positives=overall_gate.positives,
                            negatives=overall_gate.negatives)
        if overall_gate.status == INSUFFICIENT:
            # Same examples as the overall gate: the comparison means no more than the candidate's own AUC.
            result.blocks_blessing = True
            result.detail = f"AUC change not judged ({overall_gate.detail})"
        elif not isinstance(baseline_auc, float) or math.isnan(baseline_auc) or overall_gate.value is None:
            result.status, result.blocks_blessing, result.margin = FAILED, True, -math.inf
            result.detail = f"baseline AUC missing from the evaluation (baseline: {baseline_auc!r})"
        else:
            result.value = overall_gate.value - baseline_auc
            result.margin = result.value - drop_bound
            result.status = PASSED if result.margin >= 0 else FAILED
            result.blocks_blessing = result.status == FAILED
            result.detail = (f"candidate AUC {overall_gate.value:.4f} vs baseline AUC {baseline_auc:.4f} "
                             f"(max allowed drop {settings.max_auc_drop:.4f})")
        gates.append(result)

    blessed = not any(gate.blocks_blessing for gate in gates)
    return GateReport(blessed=blessed, gates=gates, settings=settings, evaluation_uri=evaluation.uri,
                      baseline_evaluated=baseline_evaluated)


def read_gate_report(blessing_uri: str) -> Dict[str, Any]:
    """The gate results a ModelGate wrote into its blessing artifact."""
    with tf.io.gfile.GFile(os.path.join(blessing_uri, GATE_RESULTS_FILE)) as handle:
        return json.load(handle)


def _json_safe(value: Any) -> Any:
    # JSON has no infinity; a margin of -inf (value missing) is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_blessing(blessing: types.Artifact, report: GateReport, model: types.Artifact,
                   baseline_model: Optional[types.Artifact]) -> None:
    """Writes the blessing the way TFX's Evaluator does, so Pusher and LatestBlessedModelStrategy obey it."""
    with tf.io.gfile.GFile(os.path.join(blessing.uri, GATE_RESULTS_FILE), "w") as handle:
        handle.write(json.dumps(_json_safe(report.to_dict()), indent=2, sort_keys=True))
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
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        if len(baselines) > 1:
            raise ValueError(f"ModelGate: at most one baseline model, got {len(baselines)}")
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        settings = GateSettings.from_json(exec_properties[SETTINGS_KEY])

        metrics = read_evaluation(evaluation.uri)
        if settings.gated_output not in metrics.output_names():
            raise ValueError(f"ModelGate: evaluation {evaluation.uri} has no metrics for output "
                             f"'{settings.gated_output}' (has {metrics.output_names()})")
        if (metrics.baseline_model_name is not None) != bool(baselines):
            raise ValueError(f"ModelGate: the evaluation {'has' if metrics.baseline_model_name else 'has no'} "
                             f"baseline results but {len(baselines)} baseline model(s) were given")
        report = evaluate_gates(metrics, settings)
        for gate in report.gates:
            logging.info("ModelGate %s", gate.log_line())
        write_blessing(blessing, report, model, baselines[0] if baselines else None)
        logging.info("ModelGate: model %s (id %d) %s; results in %s", model.uri, model.id,
                     "BLESSED" if report.blessed else "NOT BLESSED: " + "; ".join(report.reasons),
                     os.path.join(blessing.uri, GATE_RESULTS_FILE))
