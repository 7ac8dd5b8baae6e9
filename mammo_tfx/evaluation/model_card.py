"""The model card of a gated model: its per-slice rows, its Markdown and the files it is written to.

The card itself (a JSON-able dict) is assembled by the ModelCardWriter from its input artifacts; this module holds
what needs no TFX: the evaluation rows, rendering and writing.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf

from mammo_tfx import names
from mammo_tfx.evaluation.documents import json_safe
from mammo_tfx.evaluation.screening import UNITS
from mammo_tfx.evaluation.sufficiency import SufficiencyRule
from mammo_tfx.evaluation.tfma_results import OVERALL_SLICE, EvaluationMetrics, SliceKey, SliceMetrics, slice_name
from mammo_tfx.evaluation.unit_results import UnitEvaluation
from mammo_tfx.serving.limits import IMAGE_SECTION
from mammo_tfx.serving.model_info import ModelInfo

# Ingestion totals MammoExampleGen records on its Examples, in the order the card lists them.
INGEST_COUNTS = ("ingested", "quarantined", "excluded")
# Scalar metrics shown per slice, in table order; thresholded ones follow their thresholds.
_SCALAR_METRICS = ("auc", "auc_precision_recall", "sensitivity_at_specificity", "specificity_at_sensitivity",
                   "calibration")
_THRESHOLDED_METRICS = {"fall_out": "FallOut", "miss_rate": "MissRate"}

MODEL_DESCRIPTION = (
    "Whole-image breast-cancer classifier after Shen et al.: a patch classifier trained on lesion and background "
    "patches, converted into a whole-image classifier and fine-tuned on whole mammograms. The served `probability` "
    "is the mean malignancy probability over 4 flips of the image (test-time augmentation), calibrated on the eval "
    "split when the export records a calibration (see Operating point); `probability_single` is the unflipped "
    "prediction. Gates apply to `probability`, per image or per breast as `evaluation.gate_unit` says.")



# Which figure comes from where (the card, the report and the README say the same).
FIGURE_SOURCES = {
    "image AUC and the other metrics per slice": "TFMA (the Evaluator), per image, on the evaluated split",
    "breast and exam figures, AUC per unit with its bootstrap interval, sensitivity and specificity at the "
    "thresholds on the evaluated split": "the screening evaluation (ScreeningEvaluator, unit_evaluation.json)",
    "calibration, thresholds and their eval-split figures": "the whole-image Trainer, recorded in the export "
    "(keras/model_info.json, \"screening\")",
}


def _breast_rule_text(rule: str) -> str:
    return (f"a breast's score is the {rule} of its views' calibrated `probability`, its label the maximum of "
            "theirs; an exam's score is the maximum over its breasts, and an exam is recalled when any of its "
            "breasts is (the exam threshold is the breast threshold)")


def operating_point(record: Optional[Mapping[str, Any]], units: Optional[UnitEvaluation]) -> Optional[Dict[str, Any]]:
    """The card's operating point: the target and calibration the export records (`record`: the export's screening
    record as ScreeningRecord.to_dict() gives it), the thresholds per unit and what they gave on the eval split,
    and what they give on the evaluated (test) split per the unit evaluation; None when there is neither."""
    if record is None and units is None:
        return None
    options = (record or {}).get("options") or {}
    candidate = units.candidate if units is not None else None
    test: Dict[str, Any] = {}
    for unit in UNITS:
        figures = candidate.figures.get(unit, {}).get(OVERALL_SLICE) if candidate is not None else None
        if figures is not None:
            test[unit] = {"count": figures.count, "positives": figures.positives, "negatives": figures.negatives,
                          "auc": figures.auc, "auc_interval": figures.auc_interval, "operating": figures.operating}
    thresholds = dict((record or {}).get("thresholds") or (candidate.thresholds if candidate is not None else {}))
    return {
        "target": ({"metric": options.get("target"), "value": options.get("target_value"), "split": "eval"}
                   if options else None),
        "breast_rule": options.get("breast_rule") or (units.breast_rule if units is not None else None),
        "calibration": None if record is None else {
            "method": (record.get("calibration") or {}).get("method"), "configured": options.get("calibration"),
            "fitted": record.get("fitted"), "reason": record.get("reason") or ""},
        "thresholds": thresholds,
        "eval": dict((record or {}).get("eval") or {}),
        "eval_ece": dict((record or {}).get("eval_ece") or {}),
        "test_split": units.split if units is not None else None,
        "bootstrap_samples": units.bootstrap_samples if units is not None else None,
        "test": test,
        "test_ece": dict(candidate.ece) if candidate is not None else {},
        "sources": dict(FIGURE_SOURCES),
    }


def _rate_text(value: Any, interval: Any) -> str:
    text = _number(value)
    return text if not interval else f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]"


def operating_point_lines(point: Optional[Mapping[str, Any]]) -> List[str]:
    """The card's "Operating point" section."""
    lines = ["## Operating point", ""]
    if point is None:
        return lines + ["The export records no operating point and no screening evaluation was given: every figure "
                        "above is per image.", ""]
    target = point["target"]
    if target is None:
        lines += ["The export records no operating point (an export made before calibration and thresholds were "
                  "recorded): its `probability` is uncalibrated and the screening evaluation judged no threshold.",
                  ""]
    else:
        lines += [f"Target: {target['metric']} {target['value']:g} on the {target['split']} split, one threshold "
                  "per unit, chosen on calibrated probabilities (the eval split only; the test split never).", ""]
        calibration = point["calibration"]
        fitted = ("fitted on the eval split" if calibration["fitted"]
                  else f"not fitted: {calibration['reason'] or 'no reason recorded'}")
        lines += [f"Calibration: {calibration['method']} (configured {calibration['configured']}), {fitted}."]
        if calibration["fitted"] and calibration["reason"]:
            lines += ["", f"Note: {calibration['reason']}."]
        lines += [""]
    if point["breast_rule"]:
        lines += [f"Units: {_breast_rule_text(point['breast_rule'])}.", ""]
    test_split = point["test_split"] or "test"
    header = ["unit", "threshold", "eval sensitivity", "eval specificity", "eval recall rate",
              f"{test_split} units", f"{test_split} positives", f"{test_split} AUC [95% CI]",
              f"{test_split} sensitivity [95% CI]", f"{test_split} specificity [95% CI]"]
    rows = []
    for unit in UNITS:
        threshold = point["thresholds"].get(unit)
        at_eval = point["eval"].get(unit) or {}
        test = point["test"].get(unit) or {}
        operating = test.get("operating") or {}
        if threshold is None and not test:
            continue
        rows.append([unit, _number(threshold, 4), _number(at_eval.get("sensitivity")),
                     _number(at_eval.get("specificity")), _number(at_eval.get("recall_rate")),
                     _number(test.get("count")), _number(test.get("positives")),
                     _rate_text(test.get("auc"), test.get("auc_interval")),
                     _rate_text(operating.get("sensitivity"), operating.get("sensitivity_interval")),
                     _rate_text(operating.get("specificity"), operating.get("specificity_interval"))])
    lines += _table(header, rows) + [""]
    ece = [f"{split} split {_number(values.get('before'))} before, {_number(values.get('after'))} after calibration"
           for split, values in ((("eval"), point["eval_ece"]), (test_split, point["test_ece"])) if values]
    if ece:
        lines += ["Expected calibration error of the image probability (10 equal-width bins): " + "; ".join(ece)
                  + ".", ""]
    if point["bootstrap_samples"] is not None:
        lines += [f"AUC intervals: percentile bootstrap over {point['bootstrap_samples']} resamples of the units; "
                  "sensitivity and specificity intervals: Wilson score intervals.", ""]
    lines += ["Where each figure comes from:", ""]
    lines += [f"- {figure}: {source}" for figure, source in point["sources"].items()]
    return lines + [""]


def input_limits_lines(limits: Optional[Mapping[str, int]]) -> List[str]:
    """The model card's section on what the served model refuses."""
    lines = ["## Input limits", ""]
    if limits is None:
        return lines + ["The export records no input limits.", ""]
    lines += ["Every signature checks each image (and the image of each serialized example) before decoding its "
              "pixels, from the PNG/JPEG header, and refuses it with INVALID_ARGUMENT (HTTP 400) beyond these "
              f"limits (configuration `{IMAGE_SECTION}`):", ""]
    lines += _table(["limit", "value"], [[f"`{IMAGE_SECTION}.{name}`", str(value)] for name, value in limits.items()])
    return lines + [""]


def training_record(info: ModelInfo) -> Dict[str, Dict[str, Any]]:
    """Per training stage of an export's model info: the seed it trained with and whether op determinism was on."""
    stages = {"patch classifier": info.patch_hparams, "whole-image classifier": info.image_hparams}
    return {stage: {"seed": hparams.get("seed"), "deterministic_ops": hparams.get("deterministic_ops")}
            for stage, hparams in stages.items() if hparams}


def training_lines(record: Optional[Mapping[str, Mapping[str, Any]]]) -> List[str]:
    """The model card's section on how to train this model again."""
    lines = ["## Reproducibility", ""]
    if not record:
        return lines + ["The export records no training seed.", ""]
    lines += ["Training again on the same examples with the same configuration and seed gives the same weights "
              "when op determinism was on (`reproducibility.seed`, `reproducibility.deterministic_ops`; the patch "
              "sampler uses the same seed).", ""]
    lines += _table(["stage", "seed", "op determinism"],
                    [[stage, str(values["seed"]), {True: "on", False: "off"}.get(values["deterministic_ops"], "n/a")]
                     for stage, values in record.items()])
    return lines + [""]


def slice_rows(metrics: EvaluationMetrics, output: str, rule: SufficiencyRule) -> List[Dict[str, Any]]:
    """One row per slice of `output`: counts, whether the slice is large enough to judge, and its metrics."""
    thresholds = {name: metrics.metric_thresholds(class_name) for name, class_name in _THRESHOLDED_METRICS.items()}
    rows = []
    slices: Dict[SliceKey, SliceMetrics] = metrics.slices(output)
    # Overall first, then single features, then crosses; values in sorted order inside each.
    for slice_key in sorted(slices, key=lambda key: (len(key), [(c, str(v)) for c, v in key])):
        slice_metrics = slices[slice_key]
        positives, negatives = slice_metrics.class_counts()
        sufficient = rule.insufficient_reason(slice_metrics.example_count, positives, negatives) is None
        row: Dict[str, Any] = {"slice": slice_name(slice_key), "output": output,
                               "example_count": slice_metrics.example_count, "positives": positives,
                               "negatives": negatives, "sufficient": sufficient}
        for name in _SCALAR_METRICS:
            row[name] = slice_metrics.values.get(name)
        row["auc_confidence_interval"] = slice_metrics.confidence_intervals.get("auc")
        for name, metric_thresholds in thresholds.items():
            values = slice_metrics.values.get(name) or []
            row[name] = {f"{t:g}": v for t, v in zip(metric_thresholds, values)}
        rows.append(row)
    return rows


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def render_markdown(card: Mapping[str, Any]) -> str:
    decision = card["decision"]
    status = "BLESSED" if decision["blessed"] else "NOT BLESSED"
    pushed = (f"pushed as version {decision['version']} to `{decision['serving_path']}`" if decision["pushed"]
              else "not pushed")
    lines = [f"# Model card: {card['model_name']}", "", card["description"], "",
             f"Generated {card['generated_at']}.", "", "## Decision", "", f"**{status}**, {pushed}.", ""]
    lines += [f"- {reason}" for reason in decision["reasons"]] + ([""] if decision["reasons"] else [])
    baseline = card.get("baseline")
    if baseline:
        version = f"version {baseline['version']}" if baseline["version"] else "a bare export"
        lines += [f"Compared with `{baseline['path']}` ({version}): {baseline['unit']} AUC "
                  f"{_number(baseline['candidate_auc'], 4)} against its {_number(baseline['baseline_auc'], 4)}.", ""]

    lines += ["## Gates", ""]
    gate_unit = card["gate_settings"].get("gate_unit")
    if gate_unit:
        lines += [f"Every bound is checked per {gate_unit} (`evaluation.gate_unit`).", ""]
    lines += _table(
        ["gate", "unit", "output", "slice", "metric", "value", "95% CI", "bound", "status", "detail"],
        [[gate["name"], gate.get("unit", "image"), gate["output"], gate["slice"], gate["metric"], _number(gate["value"], 4),
          "n/a" if not gate["confidence_interval"] else
          f"{gate['confidence_interval'][0]:.4f}-{gate['confidence_interval'][1]:.4f}",
          f">= {gate['bound']:.4f}",
          gate["status"] + (" (blocks)" if gate["blocks_blessing"] and gate["status"] != "failed" else ""),
          gate["detail"]] for gate in card["gates"]])

    data = card["data"]
    lines += ["", "## Data", "",
              "Ingestion: " + ", ".join(f"{key} {_number(data[key])}" for key in INGEST_COUNTS) + ".", ""]
    datasets = sorted({name for per_split in data["split_counts"].values() for name in per_split})
    splits = sorted(data["split_counts"])
    external = set(card["gate_settings"].get("external_datasets", ()))
    lines += _table(["dataset"] + splits,
                    [[name + (" (external)" if name in external else "")]
                     + [str(data["split_counts"][split].get(name, 0)) for split in splits]
                     for name in datasets])
    if external:
        lines += ["", "Datasets marked external were held out of training (`--external`): all their patients are "
                  "in the test split, none trained, validated, calibrated or entered the Transform mean; their AUC "
                  "is gated at `evaluation.min_external_auc`."]

    evaluation = card["evaluation"]
    settings = card["gate_settings"]
    lines += ["", f"## Evaluation on split `{evaluation['split']}`", "",
              f"Slices with fewer than {settings['min_slice_size']} examples or fewer than "
              f"{settings['min_examples_per_class']} of a class are marked insufficient: their metrics are shown but "
              "mean little (TFMA reports AUC 0.0 for a one-class slice); their AUC is in parentheses.", ""]
    lines += _table(
        ["output", "slice", "n", "pos", "neg", "AUC", "AUC 95% CI", "AUC-PR", "sens@spec0.9", "spec@sens0.9",
         "calibration", "judged"],
        [[row["output"], row["slice"], str(row["example_count"]), str(row["positives"]), str(row["negatives"]),
          # Parentheses: the AUC of a slice too small or one-class is shown but not to be read as a result.
          _number(row["auc"]) if row["sufficient"] else f"({_number(row['auc'])})",
          "n/a" if not row["auc_confidence_interval"] else
          f"{row['auc_confidence_interval'][0]:.3f}-{row['auc_confidence_interval'][1]:.3f}",
          _number(row["auc_precision_recall"]), _number(row["sensitivity_at_specificity"]),
          _number(row["specificity_at_sensitivity"]), _number(row["calibration"]),
          "yes" if row["sufficient"] else "insufficient"] for row in evaluation["slices"]])

    lines += ["", "### Error rates at fixed thresholds (fairness)", "",
              "FPR = false positive rate (fall-out), FNR = false negative rate (miss rate).", ""]
    thresholds = sorted({t for row in evaluation["slices"] for t in row["fall_out"]}, key=float)
    lines += _table(
        ["output", "slice"] + [f"FPR@{t}" for t in thresholds] + [f"FNR@{t}" for t in thresholds],
        [[row["output"], row["slice"]] + [_number(row["fall_out"].get(t)) for t in thresholds]
         + [_number(row["miss_rate"].get(t)) for t in thresholds] for row in evaluation["slices"]])

    lines += [""] + operating_point_lines(card.get("operating_point"))
    lines += input_limits_lines(card["input_limits"])
    lines += training_lines(card.get("training"))
    lines += ["## Lineage (ML Metadata artifact ids)", ""]
    lines += _table(["artifact", "id", "uri"],
                    [[name, str(ref["id"]), f"`{ref['uri']}`"] for name, ref in card["lineage"].items()
                     if ref is not None])
    lines += ["", "## Configuration profile", "", "```json", json.dumps(card["profile"], indent=2, sort_keys=True,
                                                                        default=str), "```", ""]
    return "\n".join(lines)


def write_card(card: Mapping[str, Any], directory: str) -> None:
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, names.MODEL_CARD_JSON), "w") as handle:
        handle.write(json.dumps(json_safe(card), indent=2, sort_keys=True, default=str, allow_nan=False))
    with tf.io.gfile.GFile(os.path.join(directory, names.MODEL_CARD_MARKDOWN), "w") as handle:
        handle.write(render_markdown(card))
