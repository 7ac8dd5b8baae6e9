"""Static evaluation report (HTML + PNG, no Jupyter) from the Evaluator's TFMA output, the gate results and the
screening evaluation's unit figures."""
from mammo_tfx.report.console import format_console_summary, format_units_summary
from mammo_tfx.report.evaluation import EvaluationTables, load_evaluation
from mammo_tfx.report.report import REPORT_HTML, ReportFiles, write_report, write_report_from_artifacts

__all__ = [
    "EvaluationTables",
    "REPORT_HTML",
    "ReportFiles",
    "format_console_summary",
    "format_units_summary",
    "load_evaluation",
    "write_report",
    "write_report_from_artifacts",
]
