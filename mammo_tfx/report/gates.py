"""Reads the model gate's `gate_results.json` (written into the ModelBlessing artifact) for the report."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import tensorflow as tf

from mammo_tfx.report.slices import SliceKey, normalise_gate_slice, normalise_slice

GATE_RESULTS_FILE = "gate_results.json"
GATE_STATUSES = ("passed", "failed", "insufficient", "skipped")
# A slice's overall gate status is its most serious one: a failure outranks missing data, which outranks a pass.
_STATUS_SEVERITY = {"failed": 3, "insufficient": 2, "passed": 1, "skipped": 0}


@dataclass(frozen=True)
class GateResult:
    gate: str
    slice: str  # as the gate component wrote it
    value: Optional[float]
    bound: Optional[float]
    status: str  # one of GATE_STATUSES
    reason: str
    normalised_slice: Optional[tuple[tuple[str, str], ...]]  # None when the slice text is not column=value pairs


def _number(raw: object) -> Optional[float]:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _slice_text(raw: object) -> str:
    if raw is None:
        return "Overall"
    if isinstance(raw, Mapping):
        return " & ".join(f"{column}={value}" for column, value in raw.items()) or "Overall"
    return str(raw) or "Overall"


def _entries(document: object) -> list:
    """The list of gate entries: the document itself, or under "gates"/"results"."""
    if isinstance(document, list):
        return document
    if isinstance(document, Mapping):
        for container in ("gates", "results", "gate_results"):
            if isinstance(document.get(container), list):
                return document[container]
    raise ValueError("gate results must be a JSON list of gates or an object with a 'gates' list")


def parse_gate_results(document: object) -> list[GateResult]:
    """Gate entries with keys gate (or name), slice, value, bound (or threshold), status, reason."""
    results = []
    for index, entry in enumerate(_entries(document)):
        if not isinstance(entry, Mapping):
            raise ValueError(f"gate entry {index} is not an object: {entry!r}")
        status = str(entry.get("status", "")).strip().lower()
        if status not in GATE_STATUSES:
            raise ValueError(f"gate entry {index}: status {entry.get('status')!r} not one of {GATE_STATUSES}")
        raw_slice = entry.get("slice")
        results.append(GateResult(
            gate=str(entry.get("gate", entry.get("name", f"gate {index + 1}"))),
            slice=_slice_text(raw_slice),
            value=_number(entry.get("value")),
            bound=_number(entry.get("bound", entry.get("threshold"))),
            status=status,
            reason=str(entry.get("reason") or ""),
            normalised_slice=normalise_gate_slice(raw_slice),
        ))
    return results


def load_gate_results(path: str) -> list[GateResult]:
    """Reads gate_results.json; `path` may also be the blessing directory that holds it."""
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, GATE_RESULTS_FILE)
    with tf.io.gfile.GFile(path) as handle:
        return parse_gate_results(json.load(handle))


def gate_status_for_slice(gates: Iterable[GateResult], key: SliceKey) -> Optional[str]:
    """The most serious status among the gates on this slice, None when no gate looks at it."""
    wanted = normalise_slice(key)
    statuses = [gate.status for gate in gates if gate.normalised_slice == wanted]
    return max(statuses, key=_STATUS_SEVERITY.__getitem__) if statuses else None
