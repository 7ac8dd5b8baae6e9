"""The report's figures as PNG bytes (matplotlib Agg canvas; pyplot's global state is never touched)."""
from __future__ import annotations

import io
import math
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mammo_tfx import names
from mammo_tfx.evaluation.screening import UNITS
from mammo_tfx.evaluation.unit_results import UnitEvaluation
from mammo_tfx.report.evaluation import EvaluationTables, rows_of_slice
from mammo_tfx.report.naming import INSUFFICIENT, feature_label, format_count, output_label
from mammo_tfx.report.slices import SliceKey, slice_sort_key

DPI = 100


def png_bytes(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _metric_row(tables: EvaluationTables, key: SliceKey, output: str, metric: str) -> Optional[pd.Series]:
    rows = rows_of_slice(tables.metrics, key)
    rows = rows[(rows["output"] == output) & (rows["metric"] == metric)]
    return rows.iloc[0] if len(rows) else None


def _slice_info(tables: EvaluationTables, key: SliceKey) -> pd.Series:
    return rows_of_slice(tables.slices, key).iloc[0]


def _single_feature_slices(tables: EvaluationTables, column: str) -> list[SliceKey]:
    keys = [key for key, columns in zip(tables.slices["slice_key"], tables.slices["columns"]) if columns == (column,)]
    return sorted(keys, key=slice_sort_key)


def _finish_roc_axes(axes, title: str) -> None:
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("true positive rate (sensitivity)")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)


def roc_by_dataset_png(tables: EvaluationTables) -> Optional[bytes]:
    """ROC curve of the overall slice and of each dataset slice, one panel per output; None without plot data."""
    if tables.roc.empty:
        return None
    keys = [()] + _single_feature_slices(tables, names.DATASET)
    figure = Figure(figsize=(5.2 * len(tables.outputs), 5.0))
    for index, output in enumerate(tables.outputs):
        axes = figure.add_subplot(1, len(tables.outputs), index + 1)
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
        for key in keys:
            info = _slice_info(tables, key)
            name = "overall" if not key else str(key[0][1])
            if info["insufficient_reason"] is not None:
                # A one-class ROC is undefined: list the slice without a curve.
                axes.plot([], [], " ", label=f"{name}: {INSUFFICIENT} ({info['insufficient_reason']})")
                continue
            curve = rows_of_slice(tables.roc, key)
            curve = curve[curve["output"] == output]
            if curve.empty:
                continue
            points = np.vstack([[0.0, 0.0], curve[["fpr", "tpr"]].to_numpy(dtype=float), [1.0, 1.0]])
            points = points[~np.isnan(points).any(axis=1)]
            points = points[np.lexsort((points[:, 1], points[:, 0]))]
            auc = _metric_row(tables, key, output, "auc")
            auc_text = f", AUC {auc['value']:.3f}" if auc is not None else ""
            axes.plot(points[:, 0], points[:, 1], linewidth=2.2 if not key else 1.4,
                      color="black" if not key else None,
                      label=f"{name} (n={format_count(info['examples'])}{auc_text})")
        _finish_roc_axes(axes, f"ROC by dataset: {output_label(output)}")
    return png_bytes(figure)


def auc_by_slice_png(tables: EvaluationTables) -> Optional[bytes]:
    """AUC with its confidence interval for every slice and output; insufficient slices are labelled, not drawn."""
    if not (tables.metrics["metric"] == "auc").any():
        return None
    keys = list(tables.slices["slice_key"])
    labels = list(tables.slices["slice"])
    figure = Figure(figsize=(9.0, 1.2 + 0.32 * len(keys)))
    axes = figure.add_subplot(1, 1, 1)
    rows = np.arange(len(keys))[::-1]  # first slice on top
    offsets = np.linspace(0.18, -0.18, len(tables.outputs)) if len(tables.outputs) > 1 else [0.0]
    for output, offset in zip(tables.outputs, offsets):
        values, errors, positions = [], [[], []], []
        for key, row in zip(keys, rows):
            auc = _metric_row(tables, key, output, "auc")
            if auc is None or tables.is_insufficient(key):
                continue
            value = float(auc["value"])
            lower = value if math.isnan(auc["lower"]) else float(auc["lower"])
            upper = value if math.isnan(auc["upper"]) else float(auc["upper"])
            values.append(value)
            errors[0].append(max(value - lower, 0.0))
            errors[1].append(max(upper - value, 0.0))
            positions.append(row + offset)
        axes.errorbar(values, positions, xerr=errors, fmt="o", capsize=3, markersize=4, label=output_label(output))
    for key, row in zip(keys, rows):
        if tables.is_insufficient(key):
            axes.text(0.5, row, INSUFFICIENT, ha="center", va="center", fontsize=8, color="dimgrey", style="italic")
    axes.axvline(0.5, linestyle=":", color="grey", linewidth=1)
    axes.set_yticks(rows)
    axes.set_yticklabels(labels, fontsize=8)
    axes.set_ylim(-0.7, len(keys) - 0.3)
    axes.set_xlim(0, 1.05)  # jackknife intervals may reach past 1
    axes.set_xlabel("AUC (bars: confidence interval)")
    axes.set_title("AUC per slice")
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    return png_bytes(figure)


def fairness_png(tables: EvaluationTables, column: str) -> Optional[bytes]:
    """FPR and FNR at each ConfusionMatrixAtThresholds threshold per group of one slicing feature (primary output);
    insufficient groups are labelled, not drawn. None without rates or with fewer than two groups to compare."""
    keys = _single_feature_slices(tables, column)
    output = tables.primary_output
    wanted = set(keys)
    rates = tables.rates[(tables.rates["output"] == output)
                         & tables.rates["slice_key"].map(lambda key: key in wanted).astype(bool)]
    if rates.empty or len(keys) < 2:
        return None
    thresholds = sorted(rates["threshold"].unique())
    figure = Figure(figsize=(max(11.0, 1.6 * len(keys)), 4.6))
    width = 0.8 / len(thresholds)
    positions = np.arange(len(keys))
    tick_labels = [f"{key[0][1]}\n(n={format_count(_slice_info(tables, key)['examples'])})" for key in keys]
    for index, (rate, title) in enumerate((("fpr", "False positive rate"), ("fnr", "False negative rate"))):
        axes = figure.add_subplot(1, 2, index + 1)
        for t_index, threshold in enumerate(thresholds):
            at_threshold = rates[rates["threshold"] == threshold]
            heights = []
            for key in keys:
                value = rows_of_slice(at_threshold, key)[rate]
                usable = len(value) and not tables.is_insufficient(key)
                heights.append(float(value.iloc[0]) if usable else math.nan)
            x = positions - 0.4 + width * (t_index + 0.5)
            axes.bar(x, np.nan_to_num(heights), width=width, label=f"threshold {threshold:g}")
            for x_value, height, key in zip(x, heights, keys):
                if math.isnan(height) and not tables.is_insufficient(key):
                    # No positives (FNR) or no negatives (FPR) in the group: the rate is undefined.
                    axes.text(x_value, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        for position, key in zip(positions, keys):
            if tables.is_insufficient(key):
                axes.text(position, 0.5, INSUFFICIENT, ha="center", va="center", fontsize=8, color="dimgrey",
                          style="italic", rotation=90)
        axes.set_xticks(positions)
        axes.set_xticklabels(tick_labels, fontsize=8, rotation=30 if column == names.DEVICE else 0)
        axes.set_xlabel(feature_label(column))
        axes.set_ylim(0, 1)
        axes.set_title(f"{title}: {output_label(output)}")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=8)
    return png_bytes(figure)


def roc_by_unit_png(units: UnitEvaluation) -> Optional[bytes]:
    """The candidate's overall ROC curve per unit (image, breast, exam) from the screening evaluation, each unit's
    operating point (its threshold on the evaluated split) marked; None without curves."""
    candidate = units.candidate
    if not any(candidate.roc.get(unit) for unit in UNITS):
        return None
    figure = Figure(figsize=(5.6, 5.2))
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    for unit in UNITS:
        points = candidate.roc.get(unit) or []
        if not points:
            continue
        overall = candidate.figures.get(unit, {}).get(())
        label = unit if overall is None else f"{unit} (n={overall.count}, AUC {overall.auc:.3f})"
        line, = axes.plot([p["fpr"] for p in points], [p["tpr"] for p in points], linewidth=1.8, label=label)
        operating = overall.operating if overall is not None else None
        if operating and operating.get("sensitivity") is not None and operating.get("specificity") is not None:
            axes.plot([1.0 - operating["specificity"]], [operating["sensitivity"]], marker="o", markersize=7,
                      color=line.get_color(), linestyle="none")
    _finish_roc_axes(axes, f"ROC per screening unit ({units.split} split; dots: operating points)")
    return png_bytes(figure)
