"""A short plain-text summary for the terminal: slice, n, AUC of both outputs, gate status; and, from the screening
evaluation, AUC per dataset at image, breast and exam level and the operating point with its test-split figures."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from mammo_tfx import names
from mammo_tfx.evaluation.gates import GateResult
from mammo_tfx.evaluation.screening import UNITS
from mammo_tfx.evaluation.unit_results import UnitEvaluation
from mammo_tfx.report.evaluation import EvaluationTables
from mammo_tfx.report.gates import gate_status_for_slice
from mammo_tfx.report.naming import INSUFFICIENT, format_count, format_number, output_label
from mammo_tfx.report.slices import slice_label
from mammo_tfx.report.units import auc_text, operating_point_text, overall_and_dataset_slices, rate_text


def _render_table(header: list[str], lines: list[list[str]], text_last: bool = True) -> list[str]:
    """Text (the first column, and the last with `text_last`) left-aligned, numbers right-aligned, so the numbers
    line up on the decimal point."""
    widths = [max(len(row[column]) for row in [header] + lines) for column in range(len(header))]

    def render(cells: list[str]) -> str:
        parts = [cell.ljust(width) if index == 0 or (text_last and index == len(cells) - 1) else cell.rjust(width)
                 for index, (cell, width) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return [render(header), "  ".join("-" * width for width in widths)] + [render(cells) for cells in lines]


def format_units_summary(units: UnitEvaluation, screening_record: Optional[Mapping[str, Any]] = None) -> str:
    """AUC [bootstrap interval] per dataset at image, breast and exam level, then the operating point: how the
    thresholds were chosen and the sensitivity and specificity they give per unit on the evaluated split."""
    header = ["slice"] + [f"{unit}s" for unit in UNITS] + [f"AUC {unit}" for unit in UNITS]
    rows = []
    for key, per_unit in overall_and_dataset_slices(units):
        counts = [format_count(per_unit[unit].count) if unit in per_unit else "-" for unit in UNITS]
        rows.append([slice_label(key, units.external_datasets)] + counts + [auc_text(per_unit.get(unit)) for unit in UNITS])
    lines = [f"screening units ({units.split} split; breast = {units.breast_rule} of its views, exam = max of its "
             f"breasts):"] + _render_table(header, rows, text_last=False)
    lines += [""] + operating_point_text(units, screening_record)
    overall = dict(overall_and_dataset_slices(units)).get((), {})
    for unit in UNITS:
        if unit in overall and overall[unit].operating:
            lines.append(f"  {units.split} {unit}: sensitivity {rate_text(overall[unit], 'sensitivity')}, "
                         f"specificity {rate_text(overall[unit], 'specificity')}")
    return "\n".join(lines)


def _auc_cell(auc_by_key: dict, key: tuple, output: str, insufficient: bool) -> str:
    if insufficient:
        return INSUFFICIENT
    value = auc_by_key.get((key, output))
    return format_number(value) if value is not None else "-"


def format_console_summary(tables: EvaluationTables, gates: Sequence[GateResult] = (),
                           include_crosses: bool = False, blessed: Optional[bool] = None,
                           units: Optional[UnitEvaluation] = None,
                           screening_record: Optional[Mapping[str, Any]] = None) -> str:
    """Plain-text table of the slices; feature crosses only with include_crosses or when a gate names them.

    With `blessed` (ReportFiles.blessed) a line states the gate's verdict and the unit it judged; with `units`
    (ReportFiles.units) the screening units follow (format_units_summary).
    """
    outputs = [output for output in names.MODEL_OUTPUTS if output in tables.outputs] or list(tables.outputs[:2])
    auc_by_key = {(row.slice_key, row.output): row.value
                  for row in tables.metrics.itertuples(index=False) if row.metric == "auc"}
    header = ["slice", "n"] + [f"AUC {output_label(output)}" for output in outputs] + ["gate"]
    lines = []
    for info in tables.slices.itertuples(index=False):
        gate = gate_status_for_slice(gates, info.slice_key)
        if len(info.columns) > 1 and not include_crosses and gate is None:
            continue
        insufficient = info.insufficient_reason is not None
        lines.append([info.slice, format_count(info.examples)]
                     + [_auc_cell(auc_by_key, info.slice_key, output, insufficient) for output in outputs]
                     + [gate or "-"])
    gate_units = sorted({gate.unit for gate in gates})
    judged = f" (every bound per {', '.join(gate_units)})" if gate_units else ""
    verdict = [] if blessed is None else [f"gate verdict: {'blessed' if blessed else 'NOT blessed'}{judged}"]
    text = "\n".join(_render_table(header, lines) + verdict)
    if units is not None:
        text += "\n\n" + format_units_summary(units, screening_record)
    return text
