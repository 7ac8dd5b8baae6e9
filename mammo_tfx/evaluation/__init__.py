"""Evaluation results of the whole-image model, as a plain library (no TFX component code):

  config        EvaluationConfig, what the model must achieve to be blessed and pushed
  tfma_results  reading the Evaluator's TFMA output (metrics, ROC data, validation)
  sufficiency   the one rule for when a slice is large enough to judge
  gates         the gate decision and `gate_results.json`, written and read by the same code
  model_card    the model card's rows, Markdown and files
  documents     strict JSON for the documents above

The ModelGate and ModelCardWriter components and the report (mammo_tfx.report) are built on it.
"""
