"""The gate results (mammo_tfx.evaluation.gates) per report slice."""
from __future__ import annotations

from typing import Iterable, Optional

from mammo_tfx.evaluation.gates import FAILED, INSUFFICIENT, PASSED, SKIPPED, GateResult
from mammo_tfx.evaluation.tfma_results import is_slice_named
from mammo_tfx.report.slices import SliceKey

# A slice's overall gate status is its most serious one: a failure outranks missing data, which outranks a pass.
_STATUS_SEVERITY = {FAILED: 3, INSUFFICIENT: 2, PASSED: 1, SKIPPED: 0}


def gate_status_for_slice(gates: Iterable[GateResult], key: SliceKey) -> Optional[str]:
    """The most serious status among the gates on this slice, None when no gate looks at it."""
    statuses = [gate.status for gate in gates if is_slice_named(gate.slice, key)]
    return max(statuses, key=_STATUS_SEVERITY.__getitem__) if statuses else None
