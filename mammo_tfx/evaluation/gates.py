"""The ModelGate's decision and its results document, `gate_results.json`.

Every bound of one gate run is checked at one unit, `evaluation.gate_unit`, never mixing units: `image` reads
TFMA's per-image figures of the gated output, `breast` the screening evaluation's per-breast figures
(unit_evaluation.json: breast scores aggregated from the same output, counts of breasts). Both reach the one gate
logic below as a GateSource.

Gates (on the gated output, the flip-augmented `probability`, at the gate unit):
  * `overall_auc`            AUC on the whole evaluated split >= min_overall_auc
  * `dataset_auc[<name>]`    AUC on the `dataset=<name>` slice >= its own bound, for each configured dataset
  * `external_auc[<name>]`   AUC on the `dataset=<name>` slice >= min_external_auc, for each dataset held out of
                             training (evaluation.external_datasets)
  * `auc_drop_vs_baseline`   candidate AUC - baseline AUC (overall) >= -max_auc_drop, when a baseline was evaluated;
                             > 0 with must_beat_baseline (a fine-tune run: beat the base model)
Each gate ends with one status:
  * `passed` / `failed`      the value was checked against the bound
  * `insufficient`           the slice fails the SufficiencyRule (applied to the unit's counts: images or breasts),
                             so its AUC means nothing (TFMA reports 0.0 for a one-class slice); the bound is not
                             applied. It blocks blessing if insufficient_blocks_blessing, and always for the overall
                             gate (no evidence at all).
  * `skipped`                nothing to check: a gated dataset has no examples in the evaluated split, or there is
                             no blessed baseline yet (first model). Never blocks.
Blessed = no gate failed and no gate is blocking-insufficient.

The document is written and read here only (GateReport.to_dict / from_dict), so the gate, the model card and the
report agree on it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from mammo_tfx import names
from mammo_tfx.evaluation.config import GATED_OUTPUT, EvaluationConfig
from mammo_tfx.evaluation.documents import read_document, write_document
from mammo_tfx.evaluation.screening import IMAGE_UNIT
from mammo_tfx.evaluation.sufficiency import SufficiencyRule
from mammo_tfx.evaluation.tfma_results import (OVERALL_SLICE, OVERALL_SLICE_NAME, EvaluationMetrics, SliceKey,
                                               SliceMetrics, slice_name)
from mammo_tfx.evaluation.unit_results import UnitEvaluation, UnitFigures

PASSED = "passed"
FAILED = "failed"
INSUFFICIENT = "insufficient"
SKIPPED = "skipped"
GATE_STATUSES = (PASSED, FAILED, INSUFFICIENT, SKIPPED)

OVERALL_GATE = "overall_auc"
BASELINE_GATE = "auc_drop_vs_baseline"


def dataset_gate_name(dataset: str) -> str:
    return f"dataset_auc[{dataset}]"


def external_gate_name(dataset: str) -> str:
    return f"external_auc[{dataset}]"


@dataclass
class GateResult:
    """One gate: `slice` as slice_name writes it; `margin` = value - bound (negative: failed by that much)."""

    name: str
    unit: str  # the unit every figure of the gate counts: image, breast (screening.UNITS)
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
        return (f"gate {self.name} [{self.unit} {self.output}, {self.slice}]: {self.metric} {value}, bound >= {self.bound:.4f}: "
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
        # Documents written before gates named their unit were all judged per image.
        return cls(blessed=document["blessed"],
                   gates=[GateResult(**{"unit": IMAGE_UNIT, **gate}) for gate in document["gates"]],
                   settings=dict(document["settings"]), evaluation_uri=document["evaluation_uri"],
                   baseline_evaluated=document["baseline_evaluated"])


def write_gate_report(report: GateReport, directory: str) -> str:
    """Writes `<directory>/gate_results.json` (strict JSON: a margin of -inf, value missing, is null); its path."""
    return write_document(report.to_dict(), directory, names.GATE_RESULTS_FILE)


def read_gate_report(path: str) -> GateReport:
    """Reads gate_results.json; `path` may also be the blessing directory that holds it."""
    return GateReport.from_dict(read_document(path, names.GATE_RESULTS_FILE)[0])


@dataclass(frozen=True)
class SliceFigures:
    """What a gate reads of one slice, whichever evaluation computed it: its unit count, class counts (None where
    unknown), AUC (None where missing) and the AUC's confidence interval."""

    count: int
    positives: Optional[int]
    negatives: Optional[int]
    auc: Optional[float]
    interval: Optional[Tuple[float, float]] = None


@dataclass(frozen=True)
class GateSource:
    """The figures every bound of one gate run is checked on, all at one unit: the candidate's slices, the
    baseline's overall slice (None when it has none) and whether a baseline was evaluated at all."""

    unit: str
    uri: str
    candidate: Dict[SliceKey, SliceFigures]
    baseline_evaluated: bool
    baseline_overall: Optional[SliceFigures] = None


def _tfma_figures(metrics: SliceMetrics) -> SliceFigures:
    auc = metrics.values.get("auc")
    positives, negatives = metrics.class_counts()
    return SliceFigures(count=metrics.example_count, positives=positives, negatives=negatives,
                        auc=auc if isinstance(auc, float) else None,
                        interval=metrics.confidence_intervals.get("auc"))


def _unit_figures(figures: UnitFigures) -> SliceFigures:
    return SliceFigures(count=figures.count, positives=figures.positives, negatives=figures.negatives,
                        auc=figures.auc, interval=figures.auc_interval)


def tfma_source(evaluation: EvaluationMetrics) -> GateSource:
    """TFMA's per-image figures of the gated output."""
    baseline = None
    if evaluation.baseline_model_name is not None:
        found = evaluation.slices(GATED_OUTPUT, baseline=True).get(OVERALL_SLICE)
        baseline = _tfma_figures(found) if found is not None else None
    return GateSource(unit=IMAGE_UNIT, uri=evaluation.uri,
                      candidate={key: _tfma_figures(m) for key, m in evaluation.slices(GATED_OUTPUT).items()},
                      baseline_evaluated=evaluation.baseline_model_name is not None, baseline_overall=baseline)


def unit_source(units: UnitEvaluation, unit: str) -> GateSource:
    """The screening evaluation's figures of one unit (breasts or exams counted, not images)."""
    baseline = units.baseline
    found = baseline.figures.get(unit, {}).get(OVERALL_SLICE) if baseline is not None else None
    return GateSource(unit=unit, uri=units.uri,
                      candidate={key: _unit_figures(f) for key, f in units.candidate.figures.get(unit, {}).items()},
                      baseline_evaluated=baseline is not None,
                      baseline_overall=_unit_figures(found) if found is not None else None)


def gate_source(config: EvaluationConfig, evaluation: EvaluationMetrics,
                units: Optional[UnitEvaluation]) -> GateSource:
    """The figures at `config.gate_unit`: TFMA's for images, the unit evaluation's for breasts."""
    if config.gate_unit == IMAGE_UNIT:
        return tfma_source(evaluation)
    if units is None:
        raise ValueError(f"evaluation.gate_unit is {config.gate_unit!r} but no unit evaluation "
                         f"({names.UNIT_EVALUATION_FILE} of the ScreeningEvaluator) was given: the gate cannot judge "
                         f"{config.gate_unit}s; set evaluation.gate_unit={IMAGE_UNIT} or run the ScreeningEvaluator")
    return unit_source(units, config.gate_unit)


def _counted(unit: str) -> str:
    """How a gate's detail names what a slice counts: `examples` (images, TFMA's word), `breasts`, `exams`."""
    return "examples" if unit == IMAGE_UNIT else f"{unit}s"


def _auc_gate(name: str, slice_key: SliceKey, figures: Optional[SliceFigures], bound: float,
              config: EvaluationConfig, unit: str, always_blocks_when_insufficient: bool) -> GateResult:
    result = GateResult(name=name, unit=unit, output=GATED_OUTPUT, slice=slice_name(slice_key),
                        metric="auc", bound=bound, status=INSUFFICIENT, blocks_blessing=False, detail="")
    if figures is None:
        counts_text, sufficient = "no metrics for this slice", False
    else:
        result.example_count, result.positives, result.negatives = figures.count, figures.positives, figures.negatives
        result.value = figures.auc
        result.confidence_interval = figures.interval
        counts_text = (f"{result.example_count} {_counted(unit)}, {result.positives} positive, "
                       f"{result.negatives} negative")
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


def _baseline_gate(source: GateSource, overall_gate: GateResult, config: EvaluationConfig) -> GateResult:
    drop_bound = 0.0 if config.must_beat_baseline else -config.max_auc_drop
    result = GateResult(name=BASELINE_GATE, unit=source.unit, output=overall_gate.output, slice=OVERALL_SLICE_NAME,
                        metric="auc_change", bound=drop_bound, status=SKIPPED, blocks_blessing=False,
                        detail="no blessed baseline model was evaluated (first blessing)")
    if not source.baseline_evaluated:
        return result
    baseline_auc = source.baseline_overall.auc if source.baseline_overall is not None else None
    result.status = INSUFFICIENT
    result.example_count, result.positives, result.negatives = (overall_gate.example_count, overall_gate.positives,
                                                                overall_gate.negatives)
    if overall_gate.status == INSUFFICIENT:
        # Same units as the overall gate: the comparison means no more than the candidate's own AUC.
        result.blocks_blessing = True
        result.detail = f"AUC change not judged ({overall_gate.detail})"
    elif baseline_auc is None or math.isnan(baseline_auc) or overall_gate.value is None:
        result.status, result.blocks_blessing, result.margin = FAILED, True, -math.inf
        result.detail = f"baseline AUC missing from the evaluation (baseline: {baseline_auc!r})"
    else:
        result.value = overall_gate.value - baseline_auc
        result.margin = result.value - drop_bound
        beats = result.margin > 0 if config.must_beat_baseline else result.margin >= 0
        result.status = PASSED if beats else FAILED
        result.blocks_blessing = result.status == FAILED
        rule = "must beat it" if config.must_beat_baseline else f"max allowed drop {config.max_auc_drop:.4f}"
        result.detail = (f"candidate {source.unit} AUC {overall_gate.value:.4f} vs baseline {source.unit} AUC "
                         f"{baseline_auc:.4f} ({rule})")
    return result


def apply_gates(source: GateSource, config: EvaluationConfig) -> GateReport:
    """Applies every configured gate to one source's figures; pure (no I/O), so each rule is testable on its own."""
    candidate = source.candidate
    gates = [_auc_gate(OVERALL_GATE, OVERALL_SLICE, candidate.get(OVERALL_SLICE), config.min_overall_auc, config,
                       source.unit, always_blocks_when_insufficient=True)]
    dataset_bounds = [(dataset_gate_name(dataset), dataset, bound)
                      for dataset, bound in sorted(config.min_dataset_auc.items())]
    dataset_bounds += [(external_gate_name(dataset), dataset, config.min_external_auc)
                       for dataset in config.external_datasets]
    for name, dataset, bound in dataset_bounds:
        slice_key: SliceKey = ((names.DATASET, dataset),)
        if slice_key not in candidate:
            gates.append(GateResult(
                name=name, unit=source.unit, output=GATED_OUTPUT, slice=slice_name(slice_key),
                metric="auc", bound=bound, status=SKIPPED, blocks_blessing=False,
                detail=f"no {_counted(source.unit)} of dataset '{dataset}' in the evaluated split", example_count=0))
            continue
        gates.append(_auc_gate(name, slice_key, candidate[slice_key], bound, config,
                               source.unit, always_blocks_when_insufficient=False))
    gates.append(_baseline_gate(source, gates[0], config))
    return GateReport(blessed=not any(gate.blocks_blessing for gate in gates), gates=gates,
                      settings=config.gate_settings(), evaluation_uri=source.uri,
                      baseline_evaluated=source.baseline_evaluated)


def evaluate_gates(evaluation: EvaluationMetrics, config: EvaluationConfig,
                   units: Optional[UnitEvaluation] = None) -> GateReport:
    """Every configured gate at `config.gate_unit`: on TFMA's per-image figures, or on the unit evaluation's
    per-breast figures (required then)."""
    return apply_gates(gate_source(config, evaluation, units), config)
