"""Evaluation results of the whole-image model: its configuration, reading TFMA output, the slice-sufficiency rule,
the gate decision and the gate-results document. Plain library: the ModelGate and ModelCardWriter components and
the report (mammo_tfx.report) are built on it; it imports no TFX component code."""
