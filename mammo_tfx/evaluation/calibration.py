"""The served answer's calibration and operating point, fitted on the eval split and recorded with the export.

The whole-image Trainer scores the eval split with the graph it exports (the uncalibrated flip-mean `score`), fits
an image-level calibration of that score (Platt or isotonic), and chooses one threshold per unit (image, breast,
exam) on the calibrated probabilities for the configured operating target (mammo_tfx/evaluation/screening.py has
the rules). The result, a ScreeningRecord, goes into the export's graph (trainer_module/screening_graph.py applies
the same parameters with TF ops) and into its `keras/model_info.json` under "screening", read here by every
consumer (the screening evaluation, predict, the model card).

Plain numpy/sklearn: no model code, so readers of the record need no TF model.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from mammo_tfx.evaluation.documents import json_safe
from mammo_tfx.evaluation.screening import (BREAST_UNIT, EXAM_UNIT, IMAGE_UNIT, UNITS, CalibrationMethod,
                                            OperatingFigures, ScoredUnit, ScreeningOptions, breasts,
                                            choose_threshold, exams, expected_calibration_error,
                                            operating_figures, unit_arrays)
from mammo_tfx.serving.model_info import SCREENING_INFO_KEY, model_info_path, read_model_info

PLATT = CalibrationMethod.PLATT.value
ISOTONIC = CalibrationMethod.ISOTONIC.value
# The calibration of a record that could not fit one: probability = score.
IDENTITY = "identity"
METHODS = (PLATT, ISOTONIC, IDENTITY)
# Scores are clipped this far from 0 and 1 before the logit of Platt scaling (float32 keeps 1 - 1e-6 apart from 1).
LOGIT_EPSILON = 1e-6
# Fewer images of a class on the eval split than this: no calibration is fitted (a fit on one or two images of a
# class says nothing about the population and can map every score to 0 or 1).
MIN_IMAGES_PER_CLASS = 2
# Inverse regularisation of Platt's logistic regression: large, so that the fit is plain maximum likelihood.
PLATT_C = 1e6


def logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(scores, dtype=np.float64), LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


@dataclass(frozen=True)
class Calibration:
    """probability = f(score). Platt: sigmoid(slope * logit(score) + intercept); isotonic: linear interpolation
    over the breakpoints (x_thresholds, y_thresholds), clipped to the end values outside them (sklearn's
    IsotonicRegression(out_of_bounds="clip").predict); identity: the score itself."""

    method: str = IDENTITY
    slope: float = 1.0
    intercept: float = 0.0
    x_thresholds: Tuple[float, ...] = ()
    y_thresholds: Tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        if self.method == ISOTONIC:
            if not self.x_thresholds or len(self.x_thresholds) != len(self.y_thresholds):
                raise ValueError(f"isotonic calibration needs equally many (>= 1) x and y breakpoints, got "
                                 f"{len(self.x_thresholds)} and {len(self.y_thresholds)}")
            if np.any(np.diff(self.x_thresholds) < 0):
                raise ValueError("isotonic calibration breakpoints must be in increasing order")

    def apply(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == PLATT:
            return 1.0 / (1.0 + np.exp(-(self.slope * logit(scores) + self.intercept)))
        if self.method == ISOTONIC:
            # np.interp holds the end values outside the breakpoints, as sklearn's clip does.
            return np.interp(scores, np.array(self.x_thresholds), np.array(self.y_thresholds))
        return scores.copy()

    def to_dict(self) -> Dict[str, Any]:
        if self.method == PLATT:
            return {"method": PLATT, "slope": self.slope, "intercept": self.intercept}
        if self.method == ISOTONIC:
            return {"method": ISOTONIC, "x_thresholds": list(self.x_thresholds),
                    "y_thresholds": list(self.y_thresholds)}
        return {"method": IDENTITY}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "Calibration":
        method = document.get("method")
        if method == PLATT:
            return cls(PLATT, slope=float(document["slope"]), intercept=float(document["intercept"]))
        if method == ISOTONIC:
            return cls(ISOTONIC, x_thresholds=tuple(float(x) for x in document["x_thresholds"]),
                       y_thresholds=tuple(float(y) for y in document["y_thresholds"]))
        return cls(method)


def fit_calibration(scores: np.ndarray, labels: np.ndarray, method: CalibrationMethod) -> Calibration:
    """Fits `method` on image scores and labels (both classes needed)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"a calibration needs both classes, got labels {sorted(set(labels.tolist()))}")
    method = CalibrationMethod(method)
    if method == CalibrationMethod.PLATT:
        regression = LogisticRegression(C=PLATT_C, max_iter=10_000)
        regression.fit(logit(scores)[:, None], labels)
        return Calibration(PLATT, slope=float(regression.coef_[0, 0]), intercept=float(regression.intercept_[0]))
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    isotonic.fit(scores, labels)
    return Calibration(ISOTONIC, x_thresholds=tuple(float(x) for x in isotonic.X_thresholds_),
                       y_thresholds=tuple(float(y) for y in isotonic.y_thresholds_))


def _figures_from_dict(document: Mapping[str, Any]) -> OperatingFigures:
    return OperatingFigures(threshold=float(document["threshold"]), tp=int(document["tp"]), fp=int(document["fp"]),
                            tn=int(document["tn"]), fn=int(document["fn"]))


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class ScreeningRecord:
    """What an export's served answer was fitted to on the eval split: the options, the calibration, the threshold
    of each unit (on calibrated probabilities; the exam's is the breast's), the figures of each unit there, the
    image calibration error before and after calibration, the unit counts (and positives per unit), and whether a
    calibration was fitted (else why not)."""

    options: ScreeningOptions
    calibration: Calibration
    thresholds: Dict[str, float]
    eval: Dict[str, OperatingFigures]
    eval_ece: Dict[str, float]
    eval_counts: Dict[str, Any]
    fitted: bool
    reason: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return json_safe({"options": self.options.to_dict(), "calibration": self.calibration.to_dict(),
                          "thresholds": dict(self.thresholds),
                          "eval": {unit: figures.to_dict() for unit, figures in self.eval.items()},
                          "eval_ece": dict(self.eval_ece), "eval_counts": dict(self.eval_counts),
                          "fitted": self.fitted, "reason": self.reason})

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "ScreeningRecord":
        return cls(options=ScreeningOptions.from_dict(document["options"]),
                   calibration=Calibration.from_dict(document["calibration"]),
                   thresholds={unit: float(value) for unit, value in document["thresholds"].items()},
                   eval={unit: _figures_from_dict(figures) for unit, figures in document["eval"].items()},
                   eval_ece={key: _float(value) for key, value in document["eval_ece"].items()},
                   eval_counts=dict(document["eval_counts"]), fitted=bool(document["fitted"]),
                   reason=str(document.get("reason", "")))


def read_screening_record(export_dir: str) -> Optional[ScreeningRecord]:
    """The screening record of an export; None for a SavedModel without model info or an export whose model info
    records none (no calibration and thresholds were fitted: consumers then take score = probability and have no
    thresholds). A model info without the screening key, or a malformed record, is a ValueError naming the file."""
    try:
        info = read_model_info(export_dir)
    except FileNotFoundError:
        return None
    if info.screening is None:
        return None
    try:
        return ScreeningRecord.from_dict(info.screening)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{model_info_path(export_dir)}: malformed {SCREENING_INFO_KEY!r} record "
                         f"({type(error).__name__}: {error})") from error


def _not_fitted_reason(labels: np.ndarray) -> str:
    positives, negatives = int(np.sum(labels > 0)), int(np.sum(labels <= 0))
    if min(positives, negatives) >= MIN_IMAGES_PER_CLASS:
        return ""
    return (f"the eval split has {positives} malignant and {negatives} other images; a calibration needs at least "
            f"{MIN_IMAGES_PER_CLASS} of each, so probability = score")


def _threshold(labels: np.ndarray, scores: np.ndarray, options: ScreeningOptions, unit: str) -> Tuple[float, str]:
    """The unit's threshold for the options' target; 0.0 (recall every unit) with the reason when none can be
    chosen (no positives to reach a sensitivity on): a screening model that cannot show its operating point must
    err towards recall, not towards missing cancers."""
    try:
        return choose_threshold(labels, scores, options.target, options.target_value), ""
    except ValueError as error:
        return 0.0, f"{unit} threshold 0 (recall all): {error}"


def served(values: np.ndarray) -> np.ndarray:
    """Values as the exported graph serves them (float32), so that a threshold chosen among them decides the unit
    that defines it exactly as the graph does."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _rescored(units: Sequence[ScoredUnit], scores: np.ndarray) -> List[ScoredUnit]:
    return [dataclasses.replace(unit, score=float(score)) for unit, score in zip(units, scores)]


def fit_screening_record(images: Sequence[ScoredUnit], options: ScreeningOptions) -> ScreeningRecord:
    """The record of the eval split's images, whose `score` is the UNCALIBRATED flip-mean score: the calibration
    (identity when the split cannot fit one), then units and thresholds on the calibrated probabilities."""
    if not images:
        raise ValueError("no eval images to fit the screening calibration and thresholds on")
    labels, scores = unit_arrays(images)
    reason = _not_fitted_reason(labels)
    calibration = Calibration() if reason else fit_calibration(scores, labels, options.calibration)
    probabilities = served(calibration.apply(scores))
    calibrated = _rescored(images, probabilities)
    breast_units = breasts(calibrated, options.breast_rule)
    breast_units = _rescored(breast_units, served(unit_arrays(breast_units)[1]))
    units = {IMAGE_UNIT: calibrated, BREAST_UNIT: breast_units, EXAM_UNIT: exams(breast_units)}
    arrays = {unit: unit_arrays(units[unit]) for unit in UNITS}
    notes = [reason] if reason else []
    thresholds: Dict[str, float] = {}
    for unit in (IMAGE_UNIT, BREAST_UNIT):
        thresholds[unit], note = _threshold(*arrays[unit], options, unit)
        notes += [note] if note else []
    # An exam is recalled when any of its breasts is: the breast threshold on the exam's maximum breast score.
    thresholds[EXAM_UNIT] = thresholds[BREAST_UNIT]
    figures = {unit: operating_figures(*arrays[unit], thresholds[unit]) for unit in UNITS}
    counts: Dict[str, Any] = {unit: len(units[unit]) for unit in UNITS}
    counts["positives"] = {unit: int(np.sum(arrays[unit][0] > 0)) for unit in UNITS}
    return ScreeningRecord(options=options, calibration=calibration, thresholds=thresholds, eval=figures,
                           eval_ece={"before": expected_calibration_error(labels, scores),
                                     "after": expected_calibration_error(labels, probabilities)},
                           eval_counts=counts, fitted=not reason, reason="; ".join(notes))
