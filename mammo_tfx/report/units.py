"""The screening units (image, breast, exam) side by side, from the screening evaluation's unit_evaluation.json
(mammo_tfx.evaluation.unit_results): the report's table and the console's lines read the same rows."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import pandas as pd

from mammo_tfx import names
from mammo_tfx.evaluation.screening import UNITS
from mammo_tfx.evaluation.unit_results import UnitEvaluation, UnitFigures
from mammo_tfx.report.naming import format_count, format_number, format_with_interval
from mammo_tfx.report.slices import SliceKey, make_slice_key, slice_label, slice_sort_key


def overall_and_dataset_slices(units: UnitEvaluation) -> list[tuple[SliceKey, dict[str, UnitFigures]]]:
    """(slice, unit -> the candidate's figures) for the overall slice and each dataset slice, in display order."""
    by_slice: dict[SliceKey, dict[str, UnitFigures]] = {}
    for unit in UNITS:
        for key, figures in units.candidate.figures.get(unit, {}).items():
            if key == () or (len(key) == 1 and key[0][0] == names.DATASET):
                by_slice.setdefault(make_slice_key(key), {})[unit] = figures
    return sorted(by_slice.items(), key=lambda item: slice_sort_key(item[0]))


def _interval(interval: Optional[Any]) -> tuple[float, float]:
    return (float(interval[0]), float(interval[1])) if interval else (float("nan"), float("nan"))


def auc_text(figures: Optional[UnitFigures]) -> str:
    if figures is None:
        return "-"
    return format_with_interval(figures.auc, *_interval(figures.auc_interval))


def rate_text(figures: Optional[UnitFigures], rate: str) -> str:
    """`sensitivity` or `specificity` at the unit's threshold with its interval; '-' without an operating point."""
    operating = figures.operating if figures is not None else None
    if not operating:
        return "-"
    return format_with_interval(float("nan") if operating.get(rate) is None else float(operating[rate]),
                                *_interval(operating.get(f"{rate}_interval")))


def units_table(units: UnitEvaluation) -> pd.DataFrame:
    """One row per slice (overall, each dataset), for each unit: units counted, positives, AUC [bootstrap
    interval], and sensitivity and specificity [Wilson interval] at the unit's threshold."""
    rows = []
    for key, per_unit in overall_and_dataset_slices(units):
        row: dict[str, str] = {"Slice": slice_label(key, units.external_datasets)}
        for unit in UNITS:
            figures = per_unit.get(unit)
            row[f"{unit} n"] = format_count(figures.count) if figures else "-"
            row[f"{unit} positives"] = format_count(figures.positives) if figures else "-"
            row[f"{unit} AUC"] = auc_text(figures)
            row[f"{unit} sensitivity"] = rate_text(figures, "sensitivity")
            row[f"{unit} specificity"] = rate_text(figures, "specificity")
        rows.append(row)
    return pd.DataFrame(rows)


def operating_point_text(units: Optional[UnitEvaluation], record: Optional[Mapping[str, Any]]) -> list[str]:
    """What the thresholds are and how they were chosen: from the export's screening record
    (ScreeningRecord.to_dict()) when there is one, else the thresholds the unit evaluation used."""
    lines = []
    options = (record or {}).get("options") or {}
    thresholds = dict((record or {}).get("thresholds") or (units.candidate.thresholds if units else {}))
    if options:
        calibration = (record or {}).get("calibration") or {}
        fitted = "fitted on the eval split" if record.get("fitted") else f"not fitted: {record.get('reason', '')}"
        lines.append(f"operating point: {options.get('target')} {float(options.get('target_value')):g} on the eval "
                     f"split; calibration {calibration.get('method')} ({fitted}); breast score = "
                     f"{options.get('breast_rule')} of its views")
    elif thresholds:
        lines.append("operating point: thresholds of the unit evaluation (the export records no target)")
    else:
        lines.append("operating point: none (the export records no thresholds)")
    if thresholds:
        lines.append("thresholds: " + ", ".join(f"{unit} {format_number(thresholds[unit], 4)}"
                                                for unit in UNITS if unit in thresholds))
    return lines
