"""A short plain-text table for the terminal: slice, n, AUC of both outputs, gate status."""
from __future__ import annotations

from typing import Optional, Sequence

from mammo_tfx import names
from mammo_tfx.evaluation.gates import GateResult
from mammo_tfx.report.evaluation import EvaluationTables
from mammo_tfx.report.gates import gate_status_for_slice
from mammo_tfx.report.naming import INSUFFICIENT, format_count, format_number, output_label


def _auc_cell(auc_by_key: dict, key: tuple, output: str, insufficient: bool) -> str:
    if insufficient:
        return INSUFFICIENT
    value = auc_by_key.get((key, output))
    return format_number(value) if value is not None else "-"


def format_console_summary(tables: EvaluationTables, gates: Sequence[GateResult] = (),
                           include_crosses: bool = False, blessed: Optional[bool] = None) -> str:
    """Plain-text table of the slices; feature crosses only with include_crosses or when a gate names them.

    With `blessed` (ReportFiles.blessed) a last line states the gate's verdict.
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
    widths = [max(len(row[column]) for row in [header] + lines) for column in range(len(header))]

    def render(cells: list[str]) -> str:
        # Text left-aligned, numbers right-aligned, so the AUC columns line up on the decimal point.
        parts = [cell.ljust(width) if index == 0 or index == len(cells) - 1 else cell.rjust(width)
                 for index, (cell, width) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    verdict = [] if blessed is None else [f"gate verdict: {'blessed' if blessed else 'NOT blessed'}"]
    return "\n".join([render(header), rule] + [render(cells) for cells in lines] + verdict)
