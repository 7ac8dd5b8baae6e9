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
from mammo_tfx.evaluation.sufficiency import SufficiencyRule
from mammo_tfx.evaluation.tfma_results import EvaluationMetrics, SliceKey, SliceMetrics, slice_name
from mammo_tfx.serving.limits import IMAGE_SECTION

# Ingestion totals MammoExampleGen records on its Examples, in the order the card lists them.
INGEST_COUNTS = ("ingested", "quarantined", "excluded")
# Scalar metrics shown per slice, in table order; thresholded ones follow their thresholds.
_SCALAR_METRICS = ("auc", "auc_precision_recall", "sensitivity_at_specificity", "specificity_at_sensitivity",
                   "calibration")
_THRESHOLDED_METRICS = {"fall_out": "FallOut", "miss_rate": "MissRate"}

MODEL_DESCRIPTION = (
    "Whole-image breast-cancer classifier after Shen et al.: a patch classifier trained on lesion and background "
    "patches, converted into a whole-image classifier and fine-tuned on whole mammograms. The served `probability` "
    "is the mean malignancy probability over 4 flips of the image (test-time augmentation); "
    "`probability_single` is the unflipped prediction. Gates apply to `probability`.")



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

    lines += ["## Gates", ""]
    lines += _table(
        ["gate", "output", "slice", "metric", "value", "95% CI", "bound", "status", "detail"],
        [[gate["name"], gate["output"], gate["slice"], gate["metric"], _number(gate["value"], 4),
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
    lines += _table(["dataset"] + splits,
                    [[name] + [str(data["split_counts"][split].get(name, 0)) for split in splits]
                     for name in datasets])

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

    lines += [""] + input_limits_lines(card["input_limits"])
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
