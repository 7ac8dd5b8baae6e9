"""Reading a TFMA output directory (the Evaluator's ModelEvaluation artifact): metrics per model, output and slice,
the ROC data of its plots and TFMA's own validation result. The gate, the model card and the report all read
through here."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tensorflow_model_analysis.writers import eval_config_writer

SliceValue = Union[str, int, float]
# ((column, value), ...) in TFMA's order (columns by name); () is the overall slice.
SliceKey = Tuple[Tuple[str, SliceValue], ...]
OVERALL_SLICE: SliceKey = ()
OVERALL_SLICE_NAME = "Overall"
_SLICE_PAIR_SEPARATOR = ", "
CONFUSION_MATRIX_METRIC = "confusion_matrix_at_thresholds"
EXAMPLE_COUNT_METRIC = "example_count"


def slice_name(slice_key: SliceKey) -> str:
    """How gate results and the model card name a slice: `Overall`, `dataset=inbreast`,
    `dataset=inbreast, density=2`."""
    if not slice_key:
        return OVERALL_SLICE_NAME
    return _SLICE_PAIR_SEPARATOR.join(f"{column}={value}" for column, value in slice_key)


def is_slice_named(name: str, slice_key: SliceKey) -> bool:
    """Whether `name` (as slice_name writes it) is this slice, whatever the order of the key's columns."""
    return sorted(name.split(_SLICE_PAIR_SEPARATOR)) == sorted(slice_name(slice_key).split(_SLICE_PAIR_SEPARATOR))


def slice_key_from_proto(proto: metrics_for_slice_pb2.SliceKey) -> SliceKey:
    """The (column, value) pairs of a TFMA slice key in TFMA's order, bytes decoded."""
    pairs = []
    for single in proto.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind) if kind else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        pairs.append((single.column, value))
    return tuple(pairs)


def _is_plain_metric_key(key: metrics_for_slice_pb2.MetricKey) -> bool:
    """Keys of the model itself: no baseline diff, class/top-k sub key or aggregation."""
    return not key.is_diff and not key.HasField("sub_key") and not key.HasField("aggregation_type")


def _is_weighted(key: Any) -> bool:
    return key.HasField("example_weighted") and key.example_weighted.value


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def confusion_rows(matrices: Iterable[Dict[str, float]]) -> List[Dict[str, float]]:
    """Counts and rates per threshold (tp, fp, tn, fn, fpr, fnr, tpr) of confusion matrices as read here."""
    rows = []
    for matrix in matrices:
        tp, fp = matrix["true_positives"], matrix["false_positives"]
        tn, fn = matrix["true_negatives"], matrix["false_negatives"]
        rows.append({"threshold": matrix["threshold"], "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                     "fpr": _ratio(fp, fp + tn), "fnr": _ratio(fn, fn + tp), "tpr": _ratio(tp, tp + fn)})
    return rows


def _confusion_matrices(proto: Any) -> List[Dict[str, float]]:
    return [{"threshold": m.threshold, "true_positives": m.true_positives, "false_positives": m.false_positives,
             "true_negatives": m.true_negatives, "false_negatives": m.false_negatives} for m in proto.matrices]


def _metric_value(value: metrics_for_slice_pb2.MetricValue) -> Any:
    kind = value.WhichOneof("type")
    if kind == "double_value":
        return value.double_value.value
    if kind == "array_value":
        return [float(v) for v in value.array_value.float64_values]
    if kind == "confusion_matrix_at_thresholds":
        return _confusion_matrices(value.confusion_matrix_at_thresholds)
    if kind == "debug_message":
        # TFMA writes a debug message instead of a value when a metric failed to compute; keep it visible.
        return {"error": value.debug_message}
    return None


@dataclass
class SliceMetrics:
    """Metrics of one model output on one slice: scalars, arrays (per threshold), confusion matrices (dicts) and
    95% confidence intervals."""

    values: Dict[str, Any] = field(default_factory=dict)
    confidence_intervals: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    @property
    def example_count(self) -> int:
        return int(round(self.values.get(EXAMPLE_COUNT_METRIC, 0.0)))

    def confusion_matrices(self) -> List[Dict[str, float]]:
        matrices = self.values.get(CONFUSION_MATRIX_METRIC)
        return matrices if isinstance(matrices, list) else []

    def class_counts(self) -> Tuple[int, int]:
        """(positives, negatives): every confusion matrix of the slice holds them, whatever its threshold; (0, 0)
        without one."""
        matrices = self.confusion_matrices()
        if not matrices:
            return 0, 0
        first = matrices[0]
        return (int(round(first["true_positives"] + first["false_negatives"])),
                int(round(first["true_negatives"] + first["false_positives"])))


@dataclass
class EvaluationMetrics:
    """All metrics of one TFMA evaluation, by (model name, output name) then slice, and the EvalConfig TFMA saved
    (None when the directory holds none)."""

    uri: str
    by_model_output: Dict[Tuple[str, str], Dict[SliceKey, SliceMetrics]]
    eval_config: Optional[tfma.EvalConfig] = None

    def _spec_names(self, baseline: bool) -> List[str]:
        specs = self.eval_config.model_specs if self.eval_config is not None else []
        return [spec.name for spec in specs if spec.is_baseline == baseline]

    def _check_model_specs(self) -> None:
        candidates, baselines = self._spec_names(baseline=False), self._spec_names(baseline=True)
        if len(candidates) != 1 or len(baselines) > 1:
            raise ValueError(f"evaluation {self.uri}: expected one candidate and at most one baseline model spec, "
                             f"got {candidates + baselines}")

    @property
    def candidate_model_name(self) -> str:
        self._check_model_specs()
        return self._spec_names(baseline=False)[0]

    @property
    def baseline_model_name(self) -> Optional[str]:
        self._check_model_specs()
        baselines = self._spec_names(baseline=True)
        return baselines[0] if baselines else None

    def model_names(self) -> List[str]:
        return sorted({model for model, _ in self.by_model_output})

    def choose_model(self, requested: Optional[str] = None) -> str:
        """`requested`, else the one candidate model of the EvalConfig, else the one model that is not a baseline."""
        seen = set(self.model_names())
        if not seen:
            raise ValueError(f"{self.uri}: no TFMA metrics found")
        if requested is not None:
            if requested not in seen:
                raise ValueError(f"model {requested!r} not in this evaluation (has {sorted(seen)})")
            return requested
        eligible = seen & set(self._spec_names(baseline=False))
        if not eligible:
            # No config, or its spec names do not appear in the keys (a single-model run may write them unnamed).
            eligible = seen - {tfma.BASELINE_KEY}
        if len(eligible) != 1:
            raise ValueError(f"cannot tell which model to report among {sorted(seen)}; pass model_name")
        return next(iter(eligible))

    def metric_thresholds(self, class_name: str) -> List[float]:
        """The `thresholds` a thresholded metric (e.g. FallOut) was configured with: its array values follow them."""
        for metrics_spec in (self.eval_config.metrics_specs if self.eval_config is not None else []):
            for metric in metrics_spec.metrics:
                if metric.class_name == class_name and metric.config:
                    return [float(t) for t in json.loads("{" + metric.config + "}").get("thresholds", [])]
        return []

    def slices(self, output_name: str, baseline: bool = False) -> Dict[SliceKey, SliceMetrics]:
        """Slices of one output of the candidate (or the baseline) model."""
        model_name = self.baseline_model_name if baseline else self.candidate_model_name
        if model_name is None:
            raise ValueError(f"evaluation {self.uri} has no baseline model")
        return self.by_model_output.get((model_name, output_name), {})

    def output_names(self) -> List[str]:
        """Outputs of the candidate model."""
        return sorted({output for model, output in self.by_model_output if model == self.candidate_model_name})


def _load_eval_config(evaluation_uri: str) -> Optional[tfma.EvalConfig]:
    if not tf.io.gfile.glob(os.path.join(evaluation_uri, "eval_config*")):
        return None
    eval_config, _, _, _ = eval_config_writer.load_eval_run(evaluation_uri)
    return eval_config


def read_evaluation(evaluation_uri: str) -> EvaluationMetrics:
    """Reads the metrics TFMA wrote to `evaluation_uri` (local or gs://) and the EvalConfig it used.

    Of a metric computed both weighted and unweighted the unweighted value is kept (raw counts); cross-slice
    comparisons are left out.
    """
    # (model, output, slice, metric) -> (weighted, value, confidence interval)
    entries: Dict[Tuple[str, str, SliceKey, str], Tuple[bool, Any, Optional[Tuple[float, float]]]] = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        if metrics_for_slice.HasField("cross_slice_key"):
            continue
        slice_key = slice_key_from_proto(metrics_for_slice.slice_key)
        for key_and_value in metrics_for_slice.metric_keys_and_values:
            key = key_and_value.key
            if not _is_plain_metric_key(key):
                continue
            interval = None
            if (key_and_value.HasField("confidence_interval")
                    and key_and_value.confidence_interval.lower_bound.WhichOneof("type") == "double_value"):
                bounds = key_and_value.confidence_interval
                interval = (bounds.lower_bound.double_value.value, bounds.upper_bound.double_value.value)
            group = (key.model_name, key.output_name, slice_key, key.name)
            weighted = _is_weighted(key)
            if group not in entries or (entries[group][0] and not weighted):
                entries[group] = (weighted, _metric_value(key_and_value.value), interval)
    by_model_output: Dict[Tuple[str, str], Dict[SliceKey, SliceMetrics]] = {}
    for (model, output, slice_key, metric), (_, value, interval) in entries.items():
        slice_metrics = by_model_output.setdefault((model, output), {}).setdefault(slice_key, SliceMetrics())
        slice_metrics.values[metric] = value
        if interval is not None:
            slice_metrics.confidence_intervals[metric] = interval
    return EvaluationMetrics(uri=evaluation_uri, by_model_output=by_model_output,
                             eval_config=_load_eval_config(evaluation_uri))


def roc_from_calibration_histogram(buckets: Iterable) -> List[Dict[str, float]]:
    """Confusion counts at every bucket's lower bound ("prediction >= bound" is positive) of a CalibrationPlot.

    The histogram holds, per prediction bucket, the example count and the label sum, so the counts above each
    bound are suffix sums; with unweighted 0/1 labels they are exact at the bucket bounds.
    """
    ordered = sorted(buckets, key=lambda bucket: bucket.lower_threshold_inclusive)
    positives = [bucket.total_weighted_label.value for bucket in ordered]
    examples = [bucket.num_weighted_examples.value for bucket in ordered]
    total_positives, total_negatives = sum(positives), sum(examples) - sum(positives)
    rows, tp, fp = [], 0.0, 0.0
    for bucket, bucket_positives, bucket_examples in zip(reversed(ordered), reversed(positives), reversed(examples)):
        tp += bucket_positives
        fp += bucket_examples - bucket_positives
        tn, fn = total_negatives - fp, total_positives - tp
        rows.append({"threshold": bucket.lower_threshold_inclusive, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                     "fpr": _ratio(fp, fp + tn), "fnr": _ratio(fn, fn + tp), "tpr": _ratio(tp, tp + fn)})
    return rows[::-1]


def read_roc_curves(evaluation_uri: str, model_name: str) -> Dict[Tuple[SliceKey, str], List[Dict[str, float]]]:
    """ROC counts and rates per (slice, output) from ConfusionMatrixPlot, else from CalibrationPlot's histogram."""
    curves: Dict[Tuple[SliceKey, str], Tuple[Tuple[int, bool, int], List[Dict[str, float]]]] = {}
    for record in tfma.load_plots(evaluation_uri):
        if record.HasField("cross_slice_key"):
            continue
        slice_key = slice_key_from_proto(record.slice_key)
        for key_and_value in record.plot_keys_and_values:
            key, value = key_and_value.key, key_and_value.value
            if key.model_name != model_name or key.HasField("sub_key"):
                continue
            if value.HasField("confusion_matrix_at_thresholds"):
                source, rows = 0, confusion_rows(_confusion_matrices(value.confusion_matrix_at_thresholds))
            elif value.HasField("calibration_histogram_buckets"):
                source, rows = 1, roc_from_calibration_histogram(value.calibration_histogram_buckets.buckets)
            else:
                continue
            group = (slice_key, key.output_name)
            # Several plots of one output: a confusion-matrix plot first, unweighted first, then the finest.
            rank = (source, _is_weighted(key), -len(rows))
            if group not in curves or rank < curves[group][0]:
                curves[group] = (rank, rows)
    return {group: rows for group, (_, rows) in curves.items()}


@dataclass(frozen=True)
class ValidationFailure:
    slice_key: SliceKey
    metric: str
    output: str
    message: str


@dataclass(frozen=True)
class ValidationResult:
    """TFMA's own threshold validation (validations.tfrecord), as written by the Evaluator."""

    ok: bool
    missing_thresholds: bool
    failures: Tuple[ValidationFailure, ...]
    missing_slices: Tuple[str, ...]


def read_validation(evaluation_uri: str) -> Optional[ValidationResult]:
    """TFMA's validation result; None when the directory holds none."""
    if not tf.io.gfile.glob(os.path.join(evaluation_uri, "validations*")):
        return None
    result = tfma.load_validation_result(evaluation_uri)
    failures = tuple(
        ValidationFailure(slice_key=slice_key_from_proto(per_slice.slice_key), metric=failure.metric_key.name,
                          output=failure.metric_key.output_name, message=failure.message)
        for per_slice in result.metric_validations_per_slice for failure in per_slice.failures)
    return ValidationResult(ok=result.validation_ok, missing_thresholds=result.missing_thresholds,
                            failures=failures, missing_slices=tuple(str(missing) for missing in result.missing_slices))
