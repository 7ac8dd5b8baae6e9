"""JSON documents the evaluation writes (gate results, model card) are strict JSON."""
from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats as None (JSON has no NaN/Infinity: a one-class slice has NaN rates, a gate
    whose value is missing a margin of -inf) and mapping keys as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
