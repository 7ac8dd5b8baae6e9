"""A TFMA output directory (the Evaluator's ModelEvaluation artifact), read by mammo_tfx.evaluation, as plain pandas
tables.

What the report needs from the EvalConfig (per output, i.e. with `output_names: [probability, probability_single]`):
  * `ExampleCount`, `AUC` and the other scalar metrics -> the per-slice table (confidence intervals when
    `options.compute_confidence_intervals` is on);
  * `ConfusionMatrixAtThresholds` with `"thresholds": [...]` -> FPR/FNR per threshold and each slice's class
    counts (which decide "insufficient");
  * `ConfusionMatrixPlot` or, failing that, `CalibrationPlot` (its prediction histogram) -> the ROC curves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import pandas as pd

from mammo_tfx import names
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.sufficiency import SufficiencyRule
from mammo_tfx.evaluation.tfma_results import (EXAMPLE_COUNT_METRIC, EvaluationMetrics, ValidationResult,
                                               confusion_rows, read_evaluation, read_roc_curves, read_validation)
from mammo_tfx.report.slices import SliceKey, make_slice_key, slice_columns, slice_label, slice_sort_key

PRIMARY_OUTPUT = names.PROBABILITY  # the flip-augmented (TTA) output; `probability_single` is the unflipped one

METRIC_TABLE_COLUMNS = ["slice_key", "slice", "output", "metric", "value", "lower", "upper"]
COUNT_COLUMNS = ["threshold", "tp", "fp", "tn", "fn"]
RATE_TABLE_COLUMNS = ["slice_key", "slice", "output", *COUNT_COLUMNS, "fpr", "fnr", "tpr"]
SLICE_TABLE_COLUMNS = ["slice_key", "slice", "columns", "examples", "positives", "negatives", "insufficient_reason"]


@dataclass(frozen=True)
class ValidationSummary:
    """TFMA's own threshold validation (validations.tfrecord) as the report shows it: one line per failure."""

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


def _table_rows(metrics: EvaluationMetrics, model_name: str) -> tuple[list[dict], list[dict]]:
    """Rows of the metric table (scalar metrics) and of the rate table (ConfusionMatrixAtThresholds) of one model."""
    metric_rows, rate_rows = [], []
    for (model, output), slices in metrics.by_model_output.items():
        if model != model_name:
            continue
        for pairs, slice_metrics in slices.items():
            key = make_slice_key(pairs)
            for name, value in slice_metrics.values.items():
                # Array values (FallOut/MissRate at several thresholds) carry no thresholds: the rate table takes
                # FPR/FNR from ConfusionMatrixAtThresholds, which does.
                if isinstance(value, float):
                    lower, upper = slice_metrics.confidence_intervals.get(name, (math.nan, math.nan))
                    metric_rows.append({"slice_key": key, "slice": slice_label(key), "output": output, "metric": name,
                                        "value": value, "lower": lower, "upper": upper})
            rate_rows += [{"slice_key": key, "slice": slice_label(key), "output": output, **row}
                          for row in confusion_rows(slice_metrics.confusion_matrices())]
    return metric_rows, rate_rows


def _roc_rows(evaluation_uri: str, model_name: str) -> list[dict]:
    rows = []
    for (pairs, output), curve in read_roc_curves(evaluation_uri, model_name).items():
        key = make_slice_key(pairs)
        rows += [{"slice_key": key, "slice": slice_label(key), "output": output, **row} for row in curve]
    return rows


def _validation_summary(result: Optional[ValidationResult]) -> Optional[ValidationSummary]:
    if result is None:
        return None
    failures = [f"{slice_label(make_slice_key(failure.slice_key))}: {failure.metric}"
                f"{f' ({failure.output})' if failure.output else ''}: {failure.message}"
                for failure in result.failures]
    failures.extend(f"missing slice: {missing}".replace("\n", " ") for missing in result.missing_slices)
    return ValidationSummary(ok=result.ok, missing_thresholds=result.missing_thresholds, failures=tuple(failures))


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
                 rule: SufficiencyRule, external_datasets: Tuple[str, ...]) -> pd.DataFrame:
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
        rows.append({"slice_key": key, "slice": slice_label(key, external_datasets), "columns": slice_columns(key),
                     "examples": examples, "positives": positives, "negatives": negatives,
                     "insufficient_reason": rule.insufficient_reason(examples, positives, negatives)})
    return pd.DataFrame(rows, columns=SLICE_TABLE_COLUMNS)


def load_evaluation(evaluation_uri: str, model_name: Optional[str] = None,
                    rule: Optional[SufficiencyRule] = None, external_datasets: Tuple[str, ...] = ()) -> EvaluationTables:
    """Reads metrics, plots and validation of one model from a TFMA output directory (local or gs://).

    `rule` decides which slices are insufficient; by default EvaluationConfig's (the gate's defaults).
    `external_datasets`: datasets held out of training, whose slices the table marks `external`.
    """
    evaluation = read_evaluation(evaluation_uri)
    chosen_model = evaluation.choose_model(model_name)
    metric_rows, rate_rows = _table_rows(evaluation, chosen_model)
    metrics = pd.DataFrame(metric_rows, columns=METRIC_TABLE_COLUMNS)
    rates = pd.DataFrame(rate_rows, columns=RATE_TABLE_COLUMNS)
    roc = pd.DataFrame(_roc_rows(evaluation_uri, chosen_model), columns=RATE_TABLE_COLUMNS)
    outputs = tuple(sorted(set(metrics["output"]) | set(rates["output"]) | set(roc["output"]),
                    key=lambda name: (name != PRIMARY_OUTPUT, name)))
    primary = PRIMARY_OUTPUT if PRIMARY_OUTPUT in outputs else outputs[0]
    rule = rule or EvaluationConfig().sufficiency_rule()
    return EvaluationTables(
        evaluation_uri=evaluation_uri,
        model_name=chosen_model,
        outputs=outputs,
        metrics=metrics,
        rates=rates.sort_values(["output", "threshold"], kind="stable").reset_index(drop=True),
        roc=roc,
        slices=_slice_table(metrics, rates, roc, primary, rule, external_datasets),
        validation=_validation_summary(read_validation(evaluation_uri)),
    )
