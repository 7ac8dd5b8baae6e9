"""The ModelGate's decision on a TFMA evaluation and its results document, `gate_results.json`.

Gates (on the gated output, the flip-augmented `probability`):
  * `overall_auc`            AUC on the whole evaluated split >= min_overall_auc
  * `dataset_auc[<name>]`    AUC on the `dataset=<name>` slice >= its own bound, for each configured dataset
  * `auc_drop_vs_baseline`   candidate AUC - baseline AUC (overall) >= -max_auc_drop, when a baseline was evaluated
Each gate ends with one status:
  * `passed` / `failed`      the value was checked against the bound
  * `insufficient`           the slice fails the SufficiencyRule, so its AUC means nothing (TFMA reports 0.0 for a
                             one-class slice); the bound is not applied. It blocks blessing if
                             insufficient_blocks_blessing, and always for the overall gate (no evidence at all).
  * `skipped`                nothing to check: a gated dataset has no examples in the evaluated split, or there is
                             no blessed baseline yet (first model). Never blocks.
Blessed = no gate failed and no gate is blocking-insufficient.

The document is written and read here only (GateReport.to_dict / from_dict), so the gate, the model card and the
report agree on it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf

from mammo_tfx import names
from mammo_tfx.evaluation.config import GATED_OUTPUT, EvaluationConfig
from mammo_tfx.evaluation.documents import json_safe
from mammo_tfx.evaluation.sufficiency import SufficiencyRule
from mammo_tfx.evaluation.tfma_results import (OVERALL_SLICE, OVERALL_SLICE_NAME, EvaluationMetrics, SliceKey,
                                               SliceMetrics, slice_name)

PASSED = "passed"
FAILED = "failed"
INSUFFICIENT = "insufficient"
SKIPPED = "skipped"
GATE_STATUSES = (PASSED, FAILED, INSUFFICIENT, SKIPPED)

OVERALL_GATE = "overall_auc"
BASELINE_GATE = "auc_drop_vs_baseline"


def dataset_gate_name(dataset: str) -> str:
    return f"dataset_auc[{dataset}]"


@dataclass
class GateResult:
    """One gate: `slice` as slice_name writes it; `margin` = value - bound (negative: failed by that much)."""

    name: str
    output: str
    slice: str
    metric: str
    bound: float
    status: str  # one of GATE_STATUSES
    blocks_blessing: bool
    detail: str
    value: Optional[float] = None
    confidence_interval: Optional[Tuple[float, float]] = None
    margin: Optional[float] = None
    example_count: Optional[int] = None
    positives: Optional[int] = None
    negatives: Optional[int] = None

    def __post_init__(self) -> None:
        if self.status not in GATE_STATUSES:
            raise ValueError(f"gate {self.name}: status {self.status!r} not one of {GATE_STATUSES}")

    def log_line(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4f}"
        if self.confidence_interval is not None:
            value += f" (95% CI {self.confidence_interval[0]:.4f}-{self.confidence_interval[1]:.4f})"
        if self.status == FAILED:
            outcome = f"FAILED by {-self.margin:.4f}"
        elif self.status == PASSED:
            outcome = f"passed by {self.margin:.4f}"
        else:
            outcome = self.status + (" (blocks blessing)" if self.blocks_blessing else " (does not block)")
        return (f"gate {self.name} [{self.output}, {self.slice}]: {self.metric} {value}, bound >= {self.bound:.4f}: "
                f"{outcome}; {self.detail}")


@dataclass
class GateReport:
    """Every gate, the verdict, and the settings applied (EvaluationConfig.gate_settings())."""

    blessed: bool
    gates: List[GateResult]
    settings: Dict[str, Any]
    evaluation_uri: str
    baseline_evaluated: bool

    @property
    def reasons(self) -> List[str]:
        """Why the model is not blessed (empty when blessed)."""
        return [f"{gate.name}: {gate.status} - {gate.detail}" for gate in self.gates if gate.blocks_blessing]

    def sufficiency_rule(self) -> SufficiencyRule:
        """The rule the gate judged slices by."""
        return SufficiencyRule(min_slice_size=self.settings["min_slice_size"],
                               min_examples_per_class=self.settings["min_examples_per_class"])

    def to_dict(self) -> Dict[str, Any]:
        return {"blessed": self.blessed, "reasons": self.reasons, "settings": self.settings,
                "evaluation_uri": self.evaluation_uri, "baseline_evaluated": self.baseline_evaluated,
                "gates": [dataclasses.asdict(gate) for gate in self.gates]}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "GateReport":
        """The inverse of to_dict (`reasons` follows from the gates)."""
        missing = {f.name for f in dataclasses.fields(cls)} - set(document)
        if missing:
            raise ValueError(f"not a gate results document: no {sorted(missing)}")
        return cls(blessed=document["blessed"], gates=[GateResult(**gate) for gate in document["gates"]],
                   settings=dict(document["settings"]), evaluation_uri=document["evaluation_uri"],
                   baseline_evaluated=document["baseline_evaluated"])


def write_gate_report(report: GateReport, directory: str) -> str:
    """Writes `<directory>/gate_results.json` (strict JSON: a margin of -inf, value missing, is null); its path."""
    path = os.path.join(directory, names.GATE_RESULTS_FILE)
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(json_safe(report.to_dict()), indent=2, sort_keys=True))
    return path


def read_gate_report(path: str) -> GateReport:
    """Reads gate_results.json; `path` may also be the blessing directory that holds it."""
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, names.GATE_RESULTS_FILE)
    with tf.io.gfile.GFile(path) as handle:
        return GateReport.from_dict(json.load(handle))


def _auc_gate(name: str, slice_key: SliceKey, metrics: Optional[SliceMetrics], bound: float,
              config: EvaluationConfig, always_blocks_when_insufficient: bool) -> GateResult:
    result = GateResult(name=name, output=GATED_OUTPUT, slice=slice_name(slice_key),
                        metric="auc", bound=bound, status=INSUFFICIENT, blocks_blessing=False, detail="")
    if metrics is None:
        counts_text, sufficient = "no metrics for this slice", False
    else:
        result.example_count = metrics.example_count
        result.positives, result.negatives = metrics.class_counts()
        auc = metrics.values.get("auc")
        result.value = auc if isinstance(auc, float) else None
        result.confidence_interval = metrics.confidence_intervals.get("auc")
        counts_text = f"{result.example_count} examples, {result.positives} positive, {result.negatives} negative"
        rule = config.sufficiency_rule()
        sufficient = rule.insufficient_reason(result.example_count, result.positives, result.negatives) is None
        if not sufficient:
            counts_text = f"{counts_text}; {rule.requirement()}"
    result.detail = counts_text
    if not sufficient:
        result.blocks_blessing = always_blocks_when_insufficient or config.insufficient_blocks_blessing
        result.detail = f"AUC not judged ({counts_text})"
        return result
    if result.value is None or math.isnan(result.value):
        result.status, result.blocks_blessing = FAILED, True
        result.margin = -math.inf
        result.detail = f"AUC missing or undefined ({counts_text})"
        return result
    result.margin = result.value - bound
    result.status = PASSED if result.margin >= 0 else FAILED
    result.blocks_blessing = result.status == FAILED
    return result


def _baseline_gate(evaluation: EvaluationMetrics, overall_gate: GateResult, config: EvaluationConfig) -> GateResult:
    drop_bound = -config.max_auc_drop
    result = GateResult(name=BASELINE_GATE, output=overall_gate.output, slice=OVERALL_SLICE_NAME,
                        metric="auc_change", bound=drop_bound, status=SKIPPED, blocks_blessing=False,
                        detail="no blessed baseline model was evaluated (first blessing)")
    if evaluation.baseline_model_name is None:
        return result
    baseline = evaluation.slices(overall_gate.output, baseline=True).get(OVERALL_SLICE)
    baseline_auc = baseline.values.get("auc") if baseline is not None else None
    result.status = INSUFFICIENT
    result.example_count, result.positives, result.negatives = (overall_gate.example_count, overall_gate.positives,
                                                                overall_gate.negatives)
    if overall_gate.status == INSUFFICIENT:
        # Same examples as the overall gate: the comparison means no more than the candidate's own AUC.
        result.blocks_blessing = True
        result.detail = f"AUC change not judged ({overall_gate.detail})"
    elif not isinstance(baseline_auc, float) or math.isnan(baseline_auc) or overall_gate.value is None:
        result.status, result.blocks_blessing, result.margin = FAILED, True, -math.inf
        result.detail = f"baseline AUC missing from the evaluation (baseline: {baseline_auc!r})"
    else:
        result.value = overall_gate.value - baseline_auc
        result.margin = result.value - drop_bound
        result.status = PASSED if result.margin >= 0 else FAILED
        result.blocks_blessing = result.status == FAILED
        result.detail = (f"candidate AUC {overall_gate.value:.4f} vs baseline AUC {baseline_auc:.4f} "
                         f"(max allowed drop {config.max_auc_drop:.4f})")
    return result


def evaluate_gates(evaluation: EvaluationMetrics, config: EvaluationConfig) -> GateReport:
    """Applies every configured gate to an evaluation; pure (no I/O), so each rule is testable on its own."""
    candidate = evaluation.slices(GATED_OUTPUT)
    gates = [_auc_gate(OVERALL_GATE, OVERALL_SLICE, candidate.get(OVERALL_SLICE), config.min_overall_auc, config,
                       always_blocks_when_insufficient=True)]
    for dataset, bound in sorted(config.min_dataset_auc.items()):
        slice_key: SliceKey = ((names.DATASET, dataset),)
        if slice_key not in candidate:
            gates.append(GateResult(
                name=dataset_gate_name(dataset), output=GATED_OUTPUT, slice=slice_name(slice_key),
                metric="auc", bound=bound, status=SKIPPED, blocks_blessing=False,
                detail=f"no examples of dataset '{dataset}' in the evaluated split", example_count=0))
            continue
        gates.append(_auc_gate(dataset_gate_name(dataset), slice_key, candidate[slice_key], bound, config,
                               always_blocks_when_insufficient=False))
    gates.append(_baseline_gate(evaluation, gates[0], config))
    return GateReport(blessed=not any(gate.blocks_blessing for gate in gates), gates=gates,
                      settings=config.gate_settings(), evaluation_uri=evaluation.uri,
                      baseline_evaluated=evaluation.baseline_model_name is not None)
