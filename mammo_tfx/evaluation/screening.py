"""Screening units (image, breast, exam): how image answers combine into breast and exam answers, and the figures
each unit is judged by (AUC with a bootstrap interval, sensitivity and specificity at a threshold, calibration
error, the threshold that meets an operating target).

One implementation for every consumer: the whole-image Trainer (operating thresholds on the eval split), the
screening evaluation (the test split, per unit and slice), `mammo-tfx predict`, and the tests of the exported
`serving_exam` signature, which computes the same aggregation in the graph.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

from mammo_tfx import names
from mammo_tfx.options import Options

IMAGE_UNIT = "image"
BREAST_UNIT = "breast"
EXAM_UNIT = "exam"
UNITS = (IMAGE_UNIT, BREAST_UNIT, EXAM_UNIT)
# A breast or exam whose images disagree on a slice feature (e.g. two densities) is in this slice value.
MIXED = "mixed"
# Slice features that describe one image and mean nothing for a group of images.
PER_IMAGE_FEATURES = {BREAST_UNIT: (names.VIEW,), EXAM_UNIT: (names.VIEW, names.LATERALITY)}


class BreastRule(str, enum.Enum):
    """How a breast's score follows from its views' scores (an exam's is always the maximum over its breasts)."""

    MEAN = "mean"
    MAX = "max"


class CalibrationMethod(str, enum.Enum):
    PLATT = "platt"
    ISOTONIC = "isotonic"


class OperatingTarget(str, enum.Enum):
    """What the operating threshold is chosen for on the eval split: a sensitivity, or the fraction of units
    recalled."""

    SENSITIVITY = "sensitivity"
    RECALL_RATE = "recall_rate"


@dataclass(frozen=True)
class ScreeningOptions(Options):
    """How the served answer is made: the breast rule, the calibration fitted on the eval split, and the operating
    target the thresholds (one per unit) are chosen for on the eval split."""

    breast_rule: BreastRule = BreastRule.MEAN
    calibration: CalibrationMethod = CalibrationMethod.PLATT
    target: OperatingTarget = OperatingTarget.SENSITIVITY
    target_value: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 < self.target_value <= 1.0:
            raise ValueError(f"evaluation.screening.target_value must be in (0, 1], got {self.target_value}")


@dataclass(frozen=True)
class ScoredUnit:
    """One image, breast or exam: its key, label (a group's is the maximum of its images'), score, the keys of
    the groups it belongs to, how many images it holds, and its slice values."""

    key: str
    label: int
    score: float
    breast_key: str = ""
    exam_key: str = ""
    images: int = 1
    slices: Mapping[str, str] = field(default_factory=dict)


def _merged_slices(members: Sequence[ScoredUnit], dropped: Sequence[str]) -> Dict[str, str]:
    merged: Dict[str, str] = {}
    for feature in sorted({feature for member in members for feature in member.slices} - set(dropped)):
        values = {member.slices.get(feature, "") for member in members}
        merged[feature] = values.pop() if len(values) == 1 else MIXED
    return merged


def _group(units: Sequence[ScoredUnit], key_of: Callable[[ScoredUnit], str], combine: Callable[[np.ndarray], float],
           unit: str) -> List[ScoredUnit]:
    groups: Dict[str, List[ScoredUnit]] = {}
    for member in units:
        key = key_of(member)
        if not key:
            raise ValueError(f"{member.key}: no {unit} key")
        groups.setdefault(key, []).append(member)
    return [ScoredUnit(key=key, label=max(m.label for m in members),
                       score=float(combine(np.array([m.score for m in members], dtype=np.float64))),
                       breast_key=members[0].breast_key if unit == BREAST_UNIT else "",
                       exam_key=members[0].exam_key, images=sum(m.images for m in members),
                       slices=_merged_slices(members, PER_IMAGE_FEATURES[unit]))
            for key, members in groups.items()]


def breasts(images: Sequence[ScoredUnit], rule: BreastRule) -> List[ScoredUnit]:
    """One unit per breast key, in order of first appearance; a breast with one view has that view's score."""
    combine = np.mean if BreastRule(rule) == BreastRule.MEAN else np.max
    return _group(images, lambda image: image.breast_key, combine, BREAST_UNIT)


def exams(breast_units: Sequence[ScoredUnit]) -> List[ScoredUnit]:
    """One unit per exam key: the maximum breast score (the exam is recalled when any breast is)."""
    return _group(breast_units, lambda breast: breast.exam_key, np.max, EXAM_UNIT)


def all_units(images: Sequence[ScoredUnit], rule: BreastRule) -> Dict[str, List[ScoredUnit]]:
    breast_units = breasts(images, rule)
    return {IMAGE_UNIT: list(images), BREAST_UNIT: breast_units, EXAM_UNIT: exams(breast_units)}


def unit_arrays(units: Sequence[ScoredUnit]) -> Tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of units, for the functions below."""
    return (np.array([u.label for u in units], dtype=np.int64), np.array([u.score for u in units], dtype=np.float64))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; NaN when a class is missing."""
    if len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, scores))


def _rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The AUC as the Mann-Whitney statistic (ties count half), equal to roc_auc_score on two classes and some
    twenty times faster: the bootstrap computes it thousands of times per slice."""
    ranks = stats.rankdata(scores)
    positive = labels > 0
    positives = int(positive.sum())
    negatives = len(labels) - positives
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def bootstrap_auc_interval(labels: np.ndarray, scores: np.ndarray, samples: int, seed: int,
                           level: float = 0.95) -> Optional[Tuple[float, float]]:
    """Percentile interval of the AUC over `samples` resamples of the units with replacement (resamples with one
    class are skipped); None when fewer than half of the resamples hold both classes."""
    if len(np.unique(labels)) < 2 or samples < 1:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        index = rng.integers(0, len(labels), len(labels))
        if labels[index].min() != labels[index].max():
            values.append(_rank_auc(labels[index], scores[index]))
    if len(values) < samples / 2:
        return None
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def proportion_interval(successes: int, total: int, level: float = 0.95) -> Optional[Tuple[float, float]]:
    """Wilson score interval of a proportion; None for an empty denominator."""
    if total == 0:
        return None
    interval = stats.binomtest(successes, total).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class OperatingFigures:
    """Counts and rates of one unit at one threshold (`recalled` = score >= threshold)."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else math.nan

    @property
    def recall_rate(self) -> float:
        total = self.tp + self.fp + self.tn + self.fn
        return (self.tp + self.fp) / total if total else math.nan

    def to_dict(self) -> Dict[str, object]:
        return {"threshold": self.threshold, "tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn,
                "sensitivity": self.sensitivity, "specificity": self.specificity, "recall_rate": self.recall_rate,
                "sensitivity_interval": proportion_interval(self.tp, self.tp + self.fn),
                "specificity_interval": proportion_interval(self.tn, self.tn + self.fp)}


def operating_figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> OperatingFigures:
    recalled = scores >= threshold
    positive = labels > 0
    return OperatingFigures(threshold=float(threshold), tp=int(np.sum(recalled & positive)),
                            fp=int(np.sum(recalled & ~positive)), tn=int(np.sum(~recalled & ~positive)),
                            fn=int(np.sum(~recalled & positive)))


def choose_threshold(labels: np.ndarray, scores: np.ndarray, target: OperatingTarget, value: float) -> float:
    """The highest threshold whose decisions (score >= threshold) reach the target on these units: at least
    `value` of the positives recalled (sensitivity), or at least `value` of all units recalled (recall rate)."""
    pool = scores[labels > 0] if OperatingTarget(target) == OperatingTarget.SENSITIVITY else scores
    if len(pool) == 0:
        raise ValueError(f"no units to choose a threshold for {OperatingTarget(target).value} {value} from "
                         f"({len(scores)} units, {int(np.sum(labels > 0))} positive)")
    ranked = np.sort(pool)[::-1]
    needed = max(1, math.ceil(value * len(pool) - 1e-9))
    return float(ranked[needed - 1])


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Mean |observed malignant fraction - mean probability| over equal-width probability bins, weighted by the
    bins' unit counts; NaN without units."""
    if len(labels) == 0:
        return math.nan
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.sum() * abs(labels[members].mean() - probabilities[members].mean())
    return float(error / len(labels))


def roc_points(labels: np.ndarray, scores: np.ndarray) -> List[Dict[str, float]]:
    """The ROC curve as (fpr, tpr, threshold) points; empty when a class is missing."""
    if len(np.unique(labels)) < 2:
        return []
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return [{"fpr": float(f), "tpr": float(t), "threshold": float(min(h, 1e9))}
            for f, t, h in zip(fpr, tpr, thresholds)]
