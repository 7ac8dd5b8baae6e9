"""TFX component that blesses the whole-image model from its TFMA evaluation (AUC gates, baseline comparison)."""
from components.model_gate.component import ModelGate, ModelGateSpec

__all__ = ["ModelGate", "ModelGateSpec"]
