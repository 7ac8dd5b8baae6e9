"""TFX component that blesses the whole-image model from its TFMA evaluation (AUC gates, baseline comparison)."""
from components.model_gate.component import ModelGate, ModelGateSpec
from components.model_gate.executor import GateSettings

__all__ = ["GateSettings", "ModelGate", "ModelGateSpec"]
