"""Reads the ModelGate's `gate_results.json` (written into its ModelBlessing artifact) for the report.

The file is an object: `blessed`, `reasons`, `settings` (min_slice_size, min_examples_per_class, ...) and
`gates`, a list of {name, output, slice, metric, value, bound, status, blocks_blessing, detail, ...}; `slice`
reads like "dataset=inbreast" or "density=2, dataset=inbreast". A bare list of gates is accepted too.
"""
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
    output: str = ""
    metric: str = ""
    blocks_blessing: Optional[bool] = None


@dataclass(frozen=True)
class GateReport:
    """All gates plus the gate's verdict and the slice-size rule it applied (None when the file lacks them)."""

    gates: tuple[GateResult, ...]
    blessed: Optional[bool] = None
    min_examples: Optional[int] = None
    min_per_class: Optional[int] = None


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


def _optional_int(raw: object) -> Optional[int]:
    number = _number(raw)
    return None if number is None else int(number)


def parse_gate_results(document: object) -> GateReport:
    """Gate entries with keys name (or gate), slice, value, bound (or threshold), status, detail (or reason)."""
    results = []
    for index, entry in enumerate(_entries(document)):
        if not isinstance(entry, Mapping):
            raise ValueError(f"gate entry {index} is not an object: {entry!r}")
        status = str(entry.get("status", "")).strip().lower()
        if status not in GATE_STATUSES:
            raise ValueError(f"gate entry {index}: status {entry.get('status')!r} not one of {GATE_STATUSES}")
        raw_slice = entry.get("slice")
        blocks = entry.get("blocks_blessing")
        results.append(GateResult(
            gate=str(entry.get("name", entry.get("gate", f"gate {index + 1}"))),
            slice=_slice_text(raw_slice),
            value=_number(entry.get("value")),
            bound=_number(entry.get("bound", entry.get("threshold"))),
            status=status,
            reason=str(entry.get("detail") or entry.get("reason") or ""),
            normalised_slice=normalise_gate_slice(raw_slice),
            output=str(entry.get("output") or ""),
            metric=str(entry.get("metric") or ""),
            blocks_blessing=bool(blocks) if blocks is not None else None,
        ))
    top = document if isinstance(document, Mapping) else {}
    settings = top.get("settings") if isinstance(top.get("settings"), Mapping) else {}
    blessed = top.get("blessed")
    return GateReport(
        gates=tuple(results),
        blessed=bool(blessed) if blessed is not None else None,
        min_examples=_optional_int(settings.get("min_slice_size")),
        min_per_class=_optional_int(settings.get("min_examples_per_class")),
    )


def load_gate_results(path: str) -> GateReport:
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
