"""Custom TFX components of mammo-tfx."""
from components.mammo_example_gen.artifacts import QuarantineReport

__all__ = ["QuarantineReport"]
