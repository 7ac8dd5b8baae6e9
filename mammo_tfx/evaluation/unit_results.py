"""The screening evaluation's results document, `unit_evaluation.json`: figures per model, unit (image, breast,
exam) and slice, computed from the per-image predictions on the evaluated split (mammo_tfx/evaluation/screening.py
has the rules). Written and read here only, so the screening evaluator, the gate, the model card and the report
agree on it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple


from mammo_tfx import names
from mammo_tfx.evaluation.documents import read_document, write_document
from mammo_tfx.evaluation.screening import UNITS
from mammo_tfx.evaluation.tfma_results import SliceKey

CANDIDATE = "candidate"
BASELINE = "baseline"


@dataclass
class UnitFigures:
    """One unit on one slice: counts, AUC with its bootstrap interval, and the figures at the model's threshold for
    the unit (OperatingFigures.to_dict(); None when the model records no operating point)."""

    slice: SliceKey
    count: int
    positives: int
    negatives: int
    auc: float
    auc_interval: Optional[Tuple[float, float]] = None
    operating: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"slice": [list(pair) for pair in self.slice], "count": self.count, "positives": self.positives,
                "negatives": self.negatives, "auc": self.auc,
                "auc_interval": list(self.auc_interval) if self.auc_interval else None, "operating": self.operating}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "UnitFigures":
        auc = document["auc"]
        interval = document.get("auc_interval")
        return cls(slice=tuple((column, value) for column, value in document["slice"]), count=int(document["count"]),
                   positives=int(document["positives"]), negatives=int(document["negatives"]),
                   auc=math.nan if auc is None else float(auc),
                   auc_interval=tuple(interval) if interval else None, operating=document.get("operating"))


@dataclass
class ModelUnits:
    """One model's figures: `figures[unit][slice]`, the overall ROC per unit, the thresholds per unit it was
    judged at (from its model info; empty for a model without an operating point), the calibration error of its
    image answers before and after calibration on the evaluated split (`ece["before"]`, `ece["after"]`), and its
    predictions file (relative to the document's directory)."""

    predictions_file: str
    thresholds: Dict[str, float] = field(default_factory=dict)
    ece: Dict[str, float] = field(default_factory=dict)
    figures: Dict[str, Dict[SliceKey, UnitFigures]] = field(default_factory=dict)
    roc: Dict[str, List[Dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"predictions_file": self.predictions_file, "thresholds": self.thresholds, "ece": self.ece,
                "figures": {unit: [figures.to_dict() for figures in by_slice.values()]
                            for unit, by_slice in self.figures.items()},
                "roc": self.roc}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "ModelUnits":
        figures = {}
        for unit, rows in document["figures"].items():
            if unit not in UNITS:
                raise ValueError(f"unknown unit {unit!r} in a unit evaluation (known: {UNITS})")
            parsed = [UnitFigures.from_dict(row) for row in rows]
            figures[unit] = {item.slice: item for item in parsed}
        return cls(predictions_file=document["predictions_file"], thresholds=dict(document.get("thresholds") or {}),
                   ece={k: (math.nan if v is None else float(v)) for k, v in (document.get("ece") or {}).items()},
                   figures=figures, roc={unit: list(points) for unit, points in (document.get("roc") or {}).items()})


@dataclass
class UnitEvaluation:
    """The whole document: the split, the breast rule and bootstrap size it was computed with, and the models
    (`candidate`, and `baseline` when a blessed baseline was evaluated)."""

    uri: str
    split: str
    breast_rule: str
    bootstrap_samples: int
    models: Dict[str, ModelUnits]
    external_datasets: Tuple[str, ...] = ()  # datasets held out of training (their slices are `external`)

    @property
    def candidate(self) -> ModelUnits:
        return self.models[CANDIDATE]

    @property
    def baseline(self) -> Optional[ModelUnits]:
        return self.models.get(BASELINE)

    def to_dict(self) -> Dict[str, Any]:
        return {"split": self.split, "breast_rule": self.breast_rule, "bootstrap_samples": self.bootstrap_samples,
                "external_datasets": list(self.external_datasets),
                "models": {name: model.to_dict() for name, model in self.models.items()}}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], uri: str) -> "UnitEvaluation":
        missing = {"split", "breast_rule", "bootstrap_samples", "models"} - set(document)
        if missing or CANDIDATE not in document.get("models", {}):
            raise ValueError(f"{uri}: not a unit evaluation document (missing {sorted(missing) or [CANDIDATE]})")
        return cls(uri=uri, split=document["split"], breast_rule=document["breast_rule"],
                   bootstrap_samples=int(document["bootstrap_samples"]),
                   external_datasets=tuple(document.get("external_datasets", ())),
                   models={name: ModelUnits.from_dict(model) for name, model in document["models"].items()})


def write_unit_evaluation(evaluation: UnitEvaluation, directory: str) -> str:
    """Writes `<directory>/unit_evaluation.json` (strict JSON: NaN is null); its path."""
    return write_document(evaluation.to_dict(), directory, names.UNIT_EVALUATION_FILE)


def read_unit_evaluation(path: str) -> UnitEvaluation:
    """Reads unit_evaluation.json; `path` may also be the artifact directory that holds it."""
    document, directory = read_document(path, names.UNIT_EVALUATION_FILE)
    return UnitEvaluation.from_dict(document, uri=directory)
