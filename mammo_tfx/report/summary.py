"""Display tables (text cells) built from EvaluationTables: per-slice metrics, fairness rates, gates."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from mammo_tfx import names
from mammo_tfx.evaluation.gates import GateResult
from mammo_tfx.evaluation.tfma_results import EXAMPLE_COUNT_METRIC
from mammo_tfx.report.evaluation import EvaluationTables, rows_of_slice
from mammo_tfx.report.gates import gate_status_for_slice
from mammo_tfx.report.naming import (INSUFFICIENT, format_count, format_number, format_with_interval, metric_label,
                                     metric_order, output_label)

SLICE_COLUMN = "Slice"
EXAMPLES_COLUMN = "n"
GATE_COLUMN = "Gate"


def metric_column(metric: str, output: str) -> str:
    """Column title of one metric of one output, e.g. 'AUC flip (TTA)'."""
    return f"{metric_label(metric)} {output_label(output)}"


def _reported_metrics(tables: EvaluationTables) -> list[str]:
    names = set(tables.metrics["metric"]) - {EXAMPLE_COUNT_METRIC}
    return sorted(names, key=metric_order)


def slice_metric_table(tables: EvaluationTables, gates: Sequence[GateResult] = ()) -> pd.DataFrame:
    """One row per slice: counts, gate status and every scalar metric of every output as text.

    Metrics of an insufficient slice read 'insufficient' (TFMA's value there, e.g. AUC 0.0, means nothing).
    """
    # A dict, not a pandas index: slice keys are tuples (the overall one empty), which pandas would unpack.
    metrics = {(row.slice_key, row.output, row.metric): (row.value, row.lower, row.upper)
               for row in tables.metrics.itertuples(index=False)}
    names = _reported_metrics(tables)
    rows = []
    for info in tables.slices.itertuples(index=False):
        row = {
            SLICE_COLUMN: info.slice,
            EXAMPLES_COLUMN: format_count(info.examples),
            "Positives": format_count(info.positives),
            "Negatives": format_count(info.negatives),
            GATE_COLUMN: gate_status_for_slice(gates, info.slice_key) or "",
        }
        for name in names:
            for output in tables.outputs:
                index = (info.slice_key, output, name)
                if info.insufficient_reason is not None:
                    cell = INSUFFICIENT
                elif index in metrics:
                    cell = format_with_interval(*metrics[index])
                else:
                    cell = ""
                row[metric_column(name, output)] = cell
        row["Note"] = info.insufficient_reason or ""
        rows.append(row)
    return pd.DataFrame(rows)


def _rate_cell(rate: float, numerator: float, denominator: float) -> str:
    if math.isnan(rate):
        return "n/a (0 in group)"
    return f"{format_number(rate)} ({numerator:g}/{denominator:g})"


def fairness_table(tables: EvaluationTables, features: Sequence[str] = names.FAIRNESS_FEATURES) -> pd.DataFrame:
    """One row per group (a single-feature slice of `features`) and output: class counts, AUC, and FPR and FNR with
    their counts at each ConfusionMatrixAtThresholds threshold. A group the sufficiency rule rejects reads
    'insufficient' throughout (rates of a handful of scans would look like findings)."""
    aucs = {(row.slice_key, row.output): (row.value, row.lower, row.upper)
            for row in tables.metrics.itertuples(index=False) if row.metric == "auc"}
    thresholds = sorted(tables.rates["threshold"].unique())
    rows = []
    for info in tables.slices.itertuples(index=False):
        if len(info.columns) != 1 or info.columns[0] not in features:
            continue
        insufficient = info.insufficient_reason is not None
        selected = rows_of_slice(tables.rates, info.slice_key)
        for output in tables.outputs:
            auc = aucs.get((info.slice_key, output))
            row = {SLICE_COLUMN: info.slice, "Output": output_label(output),
                   EXAMPLES_COLUMN: format_count(info.examples), "Positives": format_count(info.positives),
                   "Negatives": format_count(info.negatives),
                   "AUC": INSUFFICIENT if insufficient else (format_with_interval(*auc) if auc else "")}
            for threshold in thresholds:
                found = selected[(selected["threshold"] == threshold) & (selected["output"] == output)]
                if insufficient or found.empty:
                    fpr = fnr = INSUFFICIENT if insufficient else ""
                else:
                    counts = found.iloc[0]
                    fpr = _rate_cell(counts["fpr"], counts["fp"], counts["fp"] + counts["tn"])
                    fnr = _rate_cell(counts["fnr"], counts["fn"], counts["fn"] + counts["tp"])
                row[f"FPR@{threshold:g}"], row[f"FNR@{threshold:g}"] = fpr, fnr
            row["Note"] = info.insufficient_reason or ""
            rows.append(row)
    return pd.DataFrame(rows)


def gate_table(gates: Sequence[GateResult]) -> pd.DataFrame:
    return pd.DataFrame([
        {"Gate": gate.name, "Unit": gate.unit, "Output": gate.output, SLICE_COLUMN: gate.slice, "Metric": gate.metric,
         "Value": format_number(gate.value), "Bound": format_number(gate.bound), "Status": gate.status,
         "Blocks blessing": "yes" if gate.blocks_blessing else "no", "Reason": gate.detail}
        for gate in gates
    ], columns=["Gate", "Unit", "Output", SLICE_COLUMN, "Metric", "Value", "Bound", "Status", "Blocks blessing", "Reason"])
