"""Custom TFX components of mammo-tfx.

Custom artifact classes are exported here because Kubeflow V2 step containers import them back from their
TYPE_NAME (`components.<Class>`).
"""
from components.mammo_example_gen.artifacts import QuarantineReport
from components.model_card import ModelCard
from components.screening_evaluator.artifacts import ScreeningPredictions, UnitEvaluation

__all__ = ["ModelCard", "QuarantineReport", "ScreeningPredictions", "UnitEvaluation"]
