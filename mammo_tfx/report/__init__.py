"""Static evaluation report (HTML + PNG, no Jupyter) from the Evaluator's TFMA output and the gate results."""
from mammo_tfx.report.console import format_console_summary
from mammo_tfx.report.evaluation import EvaluationTables, SufficiencyRule, load_evaluation
from mammo_tfx.report.gates import GATE_RESULTS_FILE, GateReport, GateResult, load_gate_results
from mammo_tfx.report.report import REPORT_HTML, ReportFiles, write_report, write_report_from_artifacts

__all__ = [
    "EvaluationTables",
    "GATE_RESULTS_FILE",
    "GateReport",
    "GateResult",
    "REPORT_HTML",
    "ReportFiles",
    "SufficiencyRule",
    "format_console_summary",
    "load_evaluation",
    "load_gate_results",
    "write_report",
    "write_report_from_artifacts",
]
