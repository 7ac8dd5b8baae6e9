"""Reads a TFMA output directory (the Evaluator's ModelEvaluation artifact) into plain pandas tables.

What the report needs from the EvalConfig (per output, i.e. with `output_names: [probability, probability_single]`):
  * `ExampleCount`, `AUC` and the other scalar metrics -> the per-slice table (confidence intervals when
    `options.compute_confidence_intervals` is on);
  * `ConfusionMatrixAtThresholds` with `"thresholds": [...]` -> FPR/FNR per threshold and each slice's class
    counts (which decide "insufficient");
  * `ConfusionMatrixPlot` or, failing that, `CalibrationPlot` (its prediction histogram) -> the ROC curves.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Optional

import pandas as pd
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tensorflow_model_analysis.writers import eval_config_writer

from mammo_tfx.report.slices import SliceKey, slice_columns, slice_key_from_proto, slice_label, slice_sort_key
from mammo_tfx.tfma_keys import is_plain_metric_key

PRIMARY_OUTPUT = "probability"  # the flip-augmented (TTA) output; `probability_single` is the unflipped one
CONFUSION_MATRIX_METRIC = "confusion_matrix_at_thresholds"
EXAMPLE_COUNT_METRIC = "example_count"
BASELINE_MODEL_NAME = "baseline"

METRIC_TABLE_COLUMNS = ["slice_key", "slice", "output", "metric", "value", "lower", "upper"]
COUNT_COLUMNS = ["threshold", "tp", "fp", "tn", "fn"]
RATE_TABLE_COLUMNS = ["slice_key", "slice", "output", *COUNT_COLUMNS, "fpr", "fnr", "tpr"]
SLICE_TABLE_COLUMNS = ["slice_key", "slice", "columns", "examples", "positives", "negatives", "insufficient_reason"]


@dataclass(frozen=True)
class SufficiencyRule:
    """When a slice is too small to report AUC-type metrics (TFMA writes AUC 0.0 for a one-class slice).

    The defaults are the ModelGate's (min_slice_size, min_examples_per_class); write_report takes the values
    from the gate results when it has them, so the report and the gate call the same slices insufficient.
    """

    min_examples: int = 30
    min_per_class: int = 5

    def insufficient_reason(self, examples: Optional[float], positives: Optional[float],
                            negatives: Optional[float]) -> Optional[str]:
        if examples is not None and examples < self.min_examples:
            return f"{examples:g} examples < {self.min_examples}"
        if positives is not None and negatives is not None:
            if positives == 0 or negatives == 0:
                return "one class only"
            if min(positives, negatives) < self.min_per_class:
                return f"fewer than {self.min_per_class} positives or negatives"
        return None


@dataclass(frozen=True)
class ValidationSummary:
    """TFMA's own threshold validation (validations.tfrecord), as written by the Evaluator."""

    ok: bool
    missing_thresholds: bool
    failures: tuple[str, ...]


@dataclass(frozen=True)
class EvaluationTables:
    """One model's TFMA results as long tables; every table carries `slice_key` (tuple) and `slice` (label).

    metrics: scalar metrics, one row per slice x output x metric, CI bounds NaN when not computed.
    rates:   ConfusionMatrixAtThresholds counts and FPR/FNR/TPR, one row per slice x output x threshold.
    roc:     ConfusionMatrixPlot counts and rates, one row per slice x output x plot threshold.
    slices:  one row per slice in display order with example and class counts and why it is insufficient.
    """

    evaluation_uri: str
    model_name: str
    outputs: tuple[str, ...]
    metrics: pd.DataFrame
    rates: pd.DataFrame
    roc: pd.DataFrame
    slices: pd.DataFrame
    validation: Optional[ValidationSummary]

    @property
    def primary_output(self) -> str:
        return PRIMARY_OUTPUT if PRIMARY_OUTPUT in self.outputs else self.outputs[0]

    def is_insufficient(self, key: SliceKey) -> bool:
        rows = rows_of_slice(self.slices, key)
        return bool(len(rows)) and rows["insufficient_reason"].iloc[0] is not None


def rows_of_slice(table: pd.DataFrame, key: SliceKey) -> pd.DataFrame:
    """Rows of one slice; compares whole tuples (pandas may read a tuple operand of == as a sequence)."""
    return table[table["slice_key"].map(lambda candidate: candidate == key).astype(bool)] if len(table) else table


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _count_rows(matrices: Iterable) -> list[dict]:
    rows = []
    for matrix in matrices:
        tp, fp = matrix.true_positives, matrix.false_positives
        tn, fn = matrix.true_negatives, matrix.false_negatives
        rows.append({"threshold": matrix.threshold, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                     "fpr": _ratio(fp, fp + tn), "fnr": _ratio(fn, fn + tp), "tpr": _ratio(tp, tp + fn)})
    return rows


def roc_from_calibration_histogram(buckets: Iterable) -> list[dict]:
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


def _candidate_model_names(evaluation_uri: str) -> Optional[set[str]]:
    """Names of the non-baseline model specs in the saved EvalConfig; None when there is no config file."""
    if not tf.io.gfile.glob(os.path.join(evaluation_uri, "eval_config*")):
        return None
    eval_config, _, _, _ = eval_config_writer.load_eval_run(evaluation_uri)
    if eval_config is None:
        return None
    return {spec.name for spec in eval_config.model_specs if not spec.is_baseline}


def _choose_model(seen: set[str], candidates: Optional[set[str]], requested: Optional[str]) -> str:
    if requested is not None:
        if requested not in seen:
            raise ValueError(f"model {requested!r} not in this evaluation (has {sorted(seen)})")
        return requested
    eligible = seen & candidates if candidates is not None else set()
    if not eligible:
        # No config, or its spec names do not appear in the keys (a single-model run may write them unnamed).
        eligible = seen - {BASELINE_MODEL_NAME}
    if len(eligible) != 1:
        raise ValueError(f"cannot tell which model to report among {sorted(seen)}; pass model_name")
    return next(iter(eligible))


def _is_weighted(key) -> bool:
    return key.HasField("example_weighted") and key.example_weighted.value


def _prefer_unweighted(entries: dict, group: tuple, weighted: bool, payload) -> None:
    """Keeps one payload per group, an unweighted one over a weighted one (the report shows raw counts)."""
    current = entries.get(group)
    if current is None or (current[0] and not weighted):
        entries[group] = (weighted, payload)


def _double(value: metrics_for_slice_pb2.MetricValue) -> float:
    return value.double_value.value if value.HasField("double_value") else math.nan


def _read_metrics(evaluation_uri: str, requested_model: Optional[str]):
    records = list(tfma.load_metrics(evaluation_uri))
    model_names = {kv.key.model_name for record in records for kv in record.metric_keys_and_values}
    if not model_names:
        raise ValueError(f"{evaluation_uri}: no TFMA metrics found")
    model_name = _choose_model(model_names, _candidate_model_names(evaluation_uri), requested_model)
    scalars: dict = {}
    matrices: dict = {}
    for record in records:
        if record.HasField("cross_slice_key"):
            continue  # cross-slice comparisons are not part of this report
        key_tuple = slice_key_from_proto(record.slice_key)
        for kv in record.metric_keys_and_values:
            key = kv.key
            if key.model_name != model_name or not is_plain_metric_key(key):
                continue
            group = (key_tuple, key.output_name, key.name)
            if kv.value.HasField("confusion_matrix_at_thresholds"):
                _prefer_unweighted(matrices, group, _is_weighted(key), kv.value.confusion_matrix_at_thresholds)
            elif kv.value.HasField("double_value"):
                interval = kv.confidence_interval
                bounds = (_double(interval.lower_bound), _double(interval.upper_bound)) \
                    if kv.HasField("confidence_interval") else (math.nan, math.nan)
                _prefer_unweighted(scalars, group, _is_weighted(key), (kv.value.double_value.value, *bounds))
            # array values (FallOut/MissRate at several thresholds) carry no thresholds: the rates table
            # takes FPR/FNR from ConfusionMatrixAtThresholds, which does.
    metric_rows = [
        {"slice_key": s, "slice": slice_label(s), "output": o, "metric": m, "value": v, "lower": lo, "upper": hi}
        for (s, o, m), (_, (v, lo, hi)) in scalars.items()
    ]
    rate_rows = [
        {"slice_key": s, "slice": slice_label(s), "output": o, **row}
        for (s, o, m), (_, confusion) in matrices.items() if m == CONFUSION_MATRIX_METRIC
        for row in _count_rows(confusion.matrices)
    ]
    return model_name, metric_rows, rate_rows


def _read_roc(evaluation_uri: str, model_name: str) -> list[dict]:
    """ROC counts per slice and output from ConfusionMatrixPlot, else from CalibrationPlot's histogram."""
    curves: dict = {}
    for record in tfma.load_plots(evaluation_uri):
        if record.HasField("cross_slice_key"):
            continue
        key_tuple = slice_key_from_proto(record.slice_key)
        for kv in record.plot_keys_and_values:
            key = kv.key
            if key.model_name != model_name or key.HasField("sub_key"):
                continue
            if kv.value.HasField("confusion_matrix_at_thresholds"):
                matrices = kv.value.confusion_matrix_at_thresholds.matrices
                source, rows = 0, _count_rows(matrices)
            elif kv.value.HasField("calibration_histogram_buckets"):
                source, rows = 1, roc_from_calibration_histogram(kv.value.calibration_histogram_buckets.buckets)
            else:
                continue
            group = (key_tuple, key.output_name)
            # Several plots of one output: a confusion-matrix plot first, unweighted first, then the finest.
            rank = (source, _is_weighted(key), -len(rows))
            if group not in curves or rank < curves[group][0]:
                curves[group] = (rank, rows)
    return [
        {"slice_key": s, "slice": slice_label(s), "output": o, **row}
        for (s, o), (_, rows) in curves.items() for row in rows
    ]


def _read_validation(evaluation_uri: str) -> Optional[ValidationSummary]:
    if not tf.io.gfile.glob(os.path.join(evaluation_uri, "validations*")):
        return None
    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        label = slice_label(slice_key_from_proto(per_slice.slice_key))
        for failure in per_slice.failures:
            output = f" ({failure.metric_key.output_name})" if failure.metric_key.output_name else ""
            failures.append(f"{label}: {failure.metric_key.name}{output}: {failure.message}")
    failures.extend(f"missing slice: {missing}".replace("\n", " ") for missing in result.missing_slices)
    return ValidationSummary(ok=result.validation_ok, missing_thresholds=result.missing_thresholds,
                             failures=tuple(failures))


def _class_counts(rates: pd.DataFrame, roc: pd.DataFrame, key: SliceKey, output: str) -> tuple[Optional[float], ...]:
    """(positives, negatives) of a slice: constant over the thresholds of any confusion matrix."""
    for table in (rates, roc):
        rows = rows_of_slice(table, key)
        rows = rows[rows["output"] == output]
        if len(rows):
            first = rows.iloc[0]
            return float(first["tp"] + first["fn"]), float(first["fp"] + first["tn"])
    return None, None


def _slice_table(metrics: pd.DataFrame, rates: pd.DataFrame, roc: pd.DataFrame, primary: str,
                 rule: SufficiencyRule) -> pd.DataFrame:
    keys = set(metrics["slice_key"]) | set(rates["slice_key"]) | set(roc["slice_key"])
    rows = []
    for key in sorted(keys, key=slice_sort_key):
        positives, negatives = _class_counts(rates, roc, key, primary)
        counted = rows_of_slice(metrics, key)
        counted = counted[(counted["output"] == primary) & (counted["metric"] == EXAMPLE_COUNT_METRIC)]
        if len(counted):
            examples: Optional[float] = float(counted["value"].iloc[0])
        elif positives is not None:
            examples = positives + negatives
        else:
            examples = None
        rows.append({"slice_key": key, "slice": slice_label(key), "columns": slice_columns(key),
                     "examples": examples, "positives": positives, "negatives": negatives,
                     "insufficient_reason": rule.insufficient_reason(examples, positives, negatives)})
    return pd.DataFrame(rows, columns=SLICE_TABLE_COLUMNS)


def load_evaluation(evaluation_uri: str, model_name: Optional[str] = None,
                    rule: SufficiencyRule = SufficiencyRule()) -> EvaluationTables:
    """Reads metrics, plots and validation of one model from a TFMA output directory (local or gs://)."""
    chosen_model, metric_rows, rate_rows = _read_metrics(evaluation_uri, model_name)
    metrics = pd.DataFrame(metric_rows, columns=METRIC_TABLE_COLUMNS)
    rates = pd.DataFrame(rate_rows, columns=RATE_TABLE_COLUMNS)
    roc = pd.DataFrame(_read_roc(evaluation_uri, chosen_model), columns=RATE_TABLE_COLUMNS)
    outputs = tuple(sorted(set(metrics["output"]) | set(rates["output"]) | set(roc["output"]),
                    key=lambda name: (name != PRIMARY_OUTPUT, name)))
    primary = PRIMARY_OUTPUT if PRIMARY_OUTPUT in outputs else outputs[0]
    return EvaluationTables(
        evaluation_uri=evaluation_uri,
        model_name=chosen_model,
        outputs=outputs,
        metrics=metrics,
        rates=rates.sort_values(["output", "threshold"], kind="stable").reset_index(drop=True),
        roc=roc,
        slices=_slice_table(metrics, rates, roc, primary, rule),
        validation=_read_validation(evaluation_uri),
    )
