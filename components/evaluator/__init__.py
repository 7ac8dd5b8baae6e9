"""TFX's Evaluator, taking the PushedBaseline's artifact as its baseline (an artifact without a model on a first
run)."""
