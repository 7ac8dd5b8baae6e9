"""Display names of model outputs and TFMA metrics, and number formatting shared by the HTML and console."""
from __future__ import annotations

import math
from typing import Optional

from mammo_tfx import names

OUTPUT_LABELS = {names.PROBABILITY: "flip (TTA)", names.PROBABILITY_SINGLE: "single", "": "prediction"}
# TFMA metric key names (the default names of the configured MetricConfigs) in the order the table shows them.
METRIC_LABELS = {
    "auc": "AUC",
    "auc_precision_recall": "AUC-PR",
    "sensitivity_at_specificity": "Sens@Spec",
    "specificity_at_sensitivity": "Spec@Sens",
    "calibration": "Calibration",
    "fall_out": "FPR",
    "miss_rate": "FNR",
    "mean_label": "Mean label",
    "mean_prediction": "Mean prediction",
}
INSUFFICIENT = "insufficient"
# Axis and section names of the slicing features the fairness section compares.
FEATURE_LABELS = {names.DENSITY: "breast density (0 = unknown)", names.AGE_GROUP: "age group", names.SITE: "site",
                  names.DEVICE: "device", names.IMPLANT: "breast implant"}


def output_label(output: str) -> str:
    return OUTPUT_LABELS.get(output, output)


def feature_label(feature: str) -> str:
    return FEATURE_LABELS.get(feature, feature)


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def metric_order(metric: str) -> tuple[int, str]:
    names = list(METRIC_LABELS)
    return (names.index(metric), metric) if metric in names else (len(names), metric)


def format_number(value: Optional[float], digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def format_count(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return f"{value:g}"


def format_with_interval(value: float, lower: float, upper: float, digits: int = 3) -> str:
    """'0.875 [0.803, 0.948]', or just the value when TFMA computed no confidence interval."""
    text = format_number(value, digits)
    if math.isnan(lower) or math.isnan(upper):
        return text
    return f"{text} [{format_number(lower, digits)}, {format_number(upper, digits)}]"
