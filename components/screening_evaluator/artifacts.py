"""Typed artifacts produced by the ScreeningEvaluator (type names: see `components/__init__.py`)."""
from tfx.types.artifact import Artifact


class ScreeningPredictions(Artifact):
    """Per-image predictions on the evaluated split: `candidate/predictions.csv` and, when a blessed baseline was
    evaluated, `baseline/predictions.csv` (columns: docs/contracts.md)."""

    TYPE_NAME = "components.ScreeningPredictions"


class UnitEvaluation(Artifact):
    """`unit_evaluation.json`: figures per model, unit (image, breast, exam) and slice
    (mammo_tfx/evaluation/unit_results.py writes and reads it)."""

    TYPE_NAME = "components.UnitEvaluation"
