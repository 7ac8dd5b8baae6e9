"""Writes the evaluation report (report.html + PNG figures) from a TFMA output directory and, when the run has one,
the screening evaluation's unit_evaluation.json (image, breast and exam side by side)."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import tensorflow as tf

from mammo_tfx.monitoring.drift import DriftResults, read_results
from mammo_tfx.report import plots
from mammo_tfx import names
from mammo_tfx.evaluation.calibration import read_screening_record
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.gates import GateReport, GateResult, read_gate_report
from mammo_tfx.evaluation.sufficiency import SufficiencyRule
from mammo_tfx.evaluation.unit_results import UnitEvaluation, read_unit_evaluation
from mammo_tfx.report.evaluation import EvaluationTables, load_evaluation
from mammo_tfx.report.html import render_report_html
from mammo_tfx.report.monitoring import drift_section_html
from mammo_tfx.report.naming import feature_label
from mammo_tfx.report.summary import fairness_table, gate_table, slice_metric_table
from mammo_tfx.report.units import operating_point_text, units_table

REPORT_HTML = "report.html"
# file name -> (section title, figure builder, why it can be missing)
FIGURES: dict[str, tuple[str, Callable[[EvaluationTables], Optional[bytes]], str]] = {
    "roc_by_dataset.png": ("ROC curves per dataset", plots.roc_by_dataset_png,
                           "No ROC data: add MetricConfig(class_name='ConfusionMatrixPlot') to the EvalConfig."),
    "auc_by_slice.png": ("AUC per slice with confidence interval", plots.auc_by_slice_png,
                         "No AUC in this evaluation: add MetricConfig(class_name='AUC')."),
    **{f"fairness_by_{feature}.png": (
        f"FPR and FNR per {feature_label(feature)}", functools.partial(plots.fairness_png, column=feature),
        f"Fewer than two {feature} groups with ConfusionMatrixAtThresholds in this evaluation.")
       for feature in names.FAIRNESS_FEATURES},
}
ROC_BY_UNIT_PNG = "roc_by_unit.png"


@dataclass(frozen=True)
class ReportFiles:
    """What write_report wrote, and the tables it was built from (for format_console_summary)."""

    html: str
    plots: dict[str, str]  # PNG file name -> full path, only the figures that had data
    tables: EvaluationTables
    gates: tuple[GateResult, ...] = field(default_factory=tuple)
    blessed: Optional[bool] = None  # the gate's verdict, when gate results were given
    units: Optional[UnitEvaluation] = None  # the screening evaluation, when the run has one
    screening_record: Optional[Mapping[str, Any]] = None  # the export's ScreeningRecord.to_dict(), when recorded


def _write_bytes(path: str, data: bytes) -> None:
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(data)


def _sufficiency_rule(gate_report: Optional[GateReport], min_examples: Optional[int],
                      min_per_class: Optional[int]) -> SufficiencyRule:
    """Explicit values first, then the gate's own rule, then EvaluationConfig's defaults (the gate's defaults)."""
    rule = gate_report.sufficiency_rule() if gate_report else EvaluationConfig().sufficiency_rule()
    return SufficiencyRule(
        min_slice_size=rule.min_slice_size if min_examples is None else min_examples,
        min_examples_per_class=rule.min_examples_per_class if min_per_class is None else min_per_class,
    )


def write_report(evaluation_uri: str, out_dir: str, gate_results_path: Optional[str] = None, *,
                 min_examples: Optional[int] = None, min_per_class: Optional[int] = None,
                 model_name: Optional[str] = None, unit_evaluation_path: Optional[str] = None,
                 screening_record: Optional[Mapping[str, Any]] = None,
                 drift: Optional[DriftResults] = None) -> ReportFiles:
    """Writes out_dir/report.html and the PNGs it shows (by relative path); out_dir may be local or gs://.

    evaluation_uri: the Evaluator's ModelEvaluation artifact URI (a TFMA output directory).
    gate_results_path: the gate component's gate_results.json, or the blessing directory holding it.
    min_examples / min_per_class: when a slice reads "insufficient"; by default the gate's settings.
    model_name: only needed when the evaluation holds several non-baseline models.
    unit_evaluation_path: the screening evaluation's unit_evaluation.json (or its directory): adds the section
    "Screening units" and roc_by_unit.png; without it (runs before the screening evaluation) the page is as before.
    screening_record: the export's screening record (ScreeningRecord.to_dict()): the target the thresholds meet.
    drift: the ExampleValidator's drift check of the run's data: adds the section "Data drift".
    """
    gate_report = read_gate_report(gate_results_path) if gate_results_path else None
    rule = _sufficiency_rule(gate_report, min_examples, min_per_class)
    external = tuple(gate_report.settings.get("external_datasets", ())) if gate_report else ()
    tables = load_evaluation(evaluation_uri, model_name=model_name, rule=rule, external_datasets=external)
    gates = tuple(gate_report.gates) if gate_report else ()
    tf.io.gfile.makedirs(out_dir)
    written: dict[str, str] = {}
    figures = []
    for file_name, (title, build, missing) in FIGURES.items():
        png = build(tables)
        if png is not None:
            written[file_name] = os.path.join(out_dir, file_name)
            _write_bytes(written[file_name], png)
        figures.append({"title": title, "src": file_name if png is not None else None, "missing": missing})
    units = read_unit_evaluation(unit_evaluation_path) if unit_evaluation_path else None
    screening = None
    if units is not None:
        png = plots.roc_by_unit_png(units)
        if png is not None:
            written[ROC_BY_UNIT_PNG] = os.path.join(out_dir, ROC_BY_UNIT_PNG)
            _write_bytes(written[ROC_BY_UNIT_PNG], png)
        screening = {"table": units_table(units), "split": units.split, "breast_rule": units.breast_rule,
                     "bootstrap_samples": units.bootstrap_samples, "uri": units.uri,
                     "operating_point": operating_point_text(units, screening_record),
                     "roc_src": ROC_BY_UNIT_PNG if png is not None else None}
    page = render_report_html(
        evaluation_uri=evaluation_uri,
        model_name=tables.model_name,
        outputs=tables.outputs,
        validation=tables.validation,
        gate_table=gate_table(gates) if gate_results_path else None,
        metric_table=slice_metric_table(tables, gates),
        fairness_table=fairness_table(tables),
        figures=figures,
        min_examples=rule.min_slice_size,
        min_per_class=rule.min_examples_per_class,
        blessed=gate_report.blessed if gate_report else None,
        screening=screening,
        drift_html=drift_section_html(
            drift, "Data drift", "The acquisition statistics of this run's data (each split, all examples and each "
            "dataset, site and device) against the data the model in service was trained on.")
        if drift is not None else None,
    )
    html_path = os.path.join(out_dir, REPORT_HTML)
    _write_bytes(html_path, page.encode("utf-8"))
    return ReportFiles(html=html_path, plots=written, tables=tables, gates=gates,
                       blessed=gate_report.blessed if gate_report else None, units=units,
                       screening_record=screening_record)


def write_report_from_artifacts(evaluation_uri: str, out_dir: str, blessing_uri: Optional[str] = None,
                                unit_evaluation_uri: Optional[str] = None,
                                model_export_dir: Optional[str] = None,
                                anomalies_uri: Optional[str] = None) -> ReportFiles:
    """For the pipeline, after the Evaluator and the model gate: takes the artifacts' URIs.

    The gate results are read from blessing_uri/gate_results.json when the blessing has one (the TFMA
    Evaluator's own blessing does not); the unit evaluation from the ScreeningEvaluator's artifact when the run has
    one; the screening record from the evaluated model's export (`model_export_dir`) when it records one; the drift
    check from the ExampleValidator's anomalies (`anomalies_uri`) when it holds one.
    """
    gate_path = None
    if blessing_uri:
        candidate = os.path.join(blessing_uri, names.GATE_RESULTS_FILE)
        gate_path = candidate if tf.io.gfile.exists(candidate) else None
    record = read_screening_record(model_export_dir) if model_export_dir else None
    return write_report(evaluation_uri, out_dir, gate_path, unit_evaluation_path=unit_evaluation_uri,
                        screening_record=record.to_dict() if record is not None else None,
                        drift=read_results(anomalies_uri) if anomalies_uri else None)
