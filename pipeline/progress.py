"""One line per component as a local run goes (start, end, key counts) and a short table at the end.

A watcher thread polls the run's ML Metadata store: every component execution the runner records (running,
complete, cached, failed) becomes a progress line, and the key counts come from what the component published
there. MLMD is the run's own record; log messages are not (libraries inside components change logging levels).
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, TextIO

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.pushed_baseline import executor as pushed_baseline
from mammo_tfx.evaluation.screening import UNITS
from mammo_tfx.evaluation.unit_results import read_unit_evaluation
from mammo_tfx.monitoring.drift import read_results
from mammo_tfx.names import PATCH_COUNTS_FILE, TRAINING_SUMMARY_FILE
from pipeline.evaluation import BASELINE_ID
from pipeline.outputs import SCREENING_EVALUATOR_ID, UNIT_EVALUATION_OUTPUT, open_store, read_anomalies

@dataclass
class ComponentRun:
    node_id: str
    execution_id: int
    seconds: float = 0.0
    cached: bool = False
    summary: str = ""
    done: bool = False
    failed: bool = False


@dataclass
class RunProgress:
    components: List[ComponentRun] = field(default_factory=list)

    def table(self) -> str:
        rows = [("component", "status", "seconds", "summary")]
        for run in self.components:
            status = "cached" if run.cached else ("ran" if run.done else ("failed" if run.failed else "stopped"))
            rows.append((run.node_id, status, f"{run.seconds:.0f}", run.summary))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = []
        for index, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
            if index == 0:
                lines.append("  ".join("-" * width for width in widths) + "  " + "-" * 7)
        return "\n".join(lines)


def latest_outputs(store: metadata_store.MetadataStore, node_id: str) -> Dict[str, metadata_store_pb2.Artifact]:
    """Output key -> artifact of the newest execution of `node_id` (cached or not)."""
    contexts = [c for c in store.get_contexts_by_type("node") if c.name.split(".")[-1] == node_id]
    executions = [e for c in contexts for e in store.get_executions_by_context(c.id)]
    if not executions:
        return {}
    newest = max(executions, key=lambda e: (e.create_time_since_epoch, e.id))
    events = [e for e in store.get_events_by_execution_ids([newest.id])
              if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {e.path.steps[0].key: artifacts[e.artifact_id] for e in events if e.path.steps}


def _int(artifact: metadata_store_pb2.Artifact, key: str) -> Optional[int]:
    value = artifact.custom_properties.get(key)
    return value.int_value if value is not None else None


def _read_json(path: str) -> Optional[dict]:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _example_gen(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    examples = outputs.get("examples")
    if examples is None:
        return ""
    splits = json.loads(examples.custom_properties["split_counts"].string_value or "{}") \
        if "split_counts" in examples.custom_properties else {}
    per_split = ", ".join(f"{name} {sum(counts.values())}" for name, counts in sorted(splits.items()))
    return (f"{_int(examples, 'ingested')} examples ({per_split}), {_int(examples, 'quarantined')} quarantined, "
            f"{_int(examples, 'excluded')} excluded")


def _patch_sampler(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    patches = outputs.get("patches")
    counts = _read_json(os.path.join(patches.uri, PATCH_COUNTS_FILE)) if patches else None
    if not counts:
        return ""
    parts = []
    for split, per_class in sorted(counts.items(), reverse=True):
        classes = {k: v for k, v in per_class.items() if k not in ("scans", "failed_scans", "incomplete_mask_scans")}
        # Not an error (folder datasets have no lesion masks), but the patch stage learns nothing from it.
        no_lesions = " (NO lesion patches)" if not any(n for k, n in classes.items() if k != "background") else ""
        incomplete = per_class.get("incomplete_mask_scans", 0)
        # Scans without (complete) outlines, e.g. all of RSNA: sampled without background patches.
        unoutlined = f" ({incomplete} scans with incomplete masks)" if incomplete else ""
        parts.append(f"{split}: " + " ".join(f"{name} {n}" for name, n in classes.items()) + no_lesions + unoutlined)
    return "; ".join(parts)


def _trainer(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    model_run = outputs.get("model_run")
    summary = _read_json(os.path.join(model_run.uri, TRAINING_SUMMARY_FILE)) if model_run else None
    if not summary:
        return ""
    epochs = sum(step.get("epochs_run", 0) for step in summary["steps"])
    metric = "val_auc"
    values = [v for step in summary["steps"] for v in step.get("history", {}).get(metric, [])]
    best = f", best {metric} {max(values):.3f}" if values else ""
    return f"{len(summary['steps'])} steps, {epochs} epochs{best}"


def _example_validator(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    anomalies = outputs.get("anomalies")
    if anomalies is None:
        return ""
    found = read_anomalies(anomalies.uri)
    total = sum(len(v) for v in found.values())
    drift = read_results(anomalies.uri)
    drift_text = "" if drift is None or not drift.rows else (
        f", drift: {len(drift.drifted)} of {len(drift.rows)} comparisons above threshold" if drift.drifted
        else ", no drift")
    return ("no anomalies" if total == 0 else f"{total} anomalies: " + "; ".join(
        f"{split}: {', '.join(v)}" for split, v in found.items() if v)) + drift_text


def _blessing(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    blessing = outputs.get("blessing")
    if blessing is None:
        return ""
    return "blessed" if _int(blessing, "blessed") == 1 else "NOT blessed"


def _screening_evaluator(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    unit_evaluation = outputs.get(UNIT_EVALUATION_OUTPUT)
    if unit_evaluation is None:
        return ""
    figures = read_unit_evaluation(unit_evaluation.uri).candidate.figures
    overall = {unit: figures[unit][()] for unit in UNITS if () in figures.get(unit, {})}
    return ", ".join(f"{item.count} {unit}s AUC {item.auc:.3f}" for unit, item in overall.items())


def _baseline(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    baseline = outputs.get(pushed_baseline.BASELINE_MODEL_KEY)
    if baseline is None:
        return ""
    if _int(baseline, pushed_baseline.FOUND_PROPERTY) != 1:
        return "no pushed version yet: gated without a baseline"
    return ("baseline: pushed version "
            + baseline.custom_properties[pushed_baseline.SOURCE_PROPERTY].string_value)


def _pusher(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    pushed = outputs.get("pushed_model")
    if pushed is None:
        return ""
    if _int(pushed, "pushed") == 1:
        return "pushed to " + pushed.custom_properties["pushed_destination"].string_value
    return "not pushed"


SUMMARISERS: Dict[str, Callable[[Dict[str, metadata_store_pb2.Artifact]], str]] = {
    "MammoExampleGen": _example_gen,
    "PatchSampler": _patch_sampler,
    "Trainer": _trainer,
    "ExampleValidator": _example_validator,
    SCREENING_EVALUATOR_ID: _screening_evaluator,
    BASELINE_ID: _baseline,
    "ModelGate": _blessing,
    "Pusher": _pusher,
}


def summarise(metadata_path: str, node_id: str) -> str:
    summariser = next((f for prefix, f in SUMMARISERS.items() if node_id.startswith(prefix)), None)
    if summariser is None:
        return ""
    try:
        return summariser(latest_outputs(open_store(metadata_path), node_id))
    except Exception as error:  # a progress line must never break the run it reports on
        return f"(summary unavailable: {type(error).__name__})"


_Execution = metadata_store_pb2.Execution
_FINISHED_STATES = {_Execution.COMPLETE: "finished", _Execution.CACHED: "cached", _Execution.FAILED: "FAILED",
                    _Execution.CANCELED: "cancelled"}
# A line ProgressWatcher prints (its time stamp, then the component's start or end), for reading a console back.
PROGRESS_LINE = re.compile(
    r"\[\d\d:\d\d:\d\d\] (?P<node_id>\S+): (?:started|(?P<cached>cached)|(?P<state>"
    + "|".join(state for state in _FINISHED_STATES.values() if state != "cached")
    + r") in (?P<seconds>\d+) s)(?: - (?P<summary>.+))?")


class ProgressWatcher:
    """Polls the MLMD store of a run and prints a line when a component starts and when it ends."""

    def __init__(self, metadata_path: str, stream: TextIO = sys.stdout, interval_s: float = 1.0):
        self.metadata_path = metadata_path
        self.stream = stream
        self.interval_s = interval_s
        self.progress = RunProgress()
        self._runs: Dict[int, ComponentRun] = {}
        self._baseline = self._max_execution_id()
        self._node_type_id: Optional[int] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mammo-tfx-progress", daemon=True)

    def _max_execution_id(self) -> int:
        if not os.path.exists(self.metadata_path):
            return 0
        return max((e.id for e in open_store(self.metadata_path).get_executions()), default=0)

    def _print(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def poll(self) -> None:
        if not os.path.exists(self.metadata_path):
            return
        store = open_store(self.metadata_path)
        for execution in sorted(store.get_executions(), key=lambda e: e.id):
            if execution.id <= self._baseline:
                continue
            run = self._runs.get(execution.id)
            if run is None:
                contexts = [c for c in store.get_contexts_by_execution(execution.id) if c.type_id == self._node_type(store)]
                if not contexts:
                    continue
                run = ComponentRun(node_id=contexts[0].name.split(".")[-1], execution_id=execution.id)
                self._runs[execution.id] = run
                self.progress.components.append(run)
                if execution.last_known_state not in (_Execution.CACHED,):
                    self._print(f"{run.node_id}: started")
            state = execution.last_known_state
            if state in _FINISHED_STATES and not (run.done or run.failed):
                run.seconds = max(0.0, (execution.last_update_time_since_epoch
                                        - execution.create_time_since_epoch) / 1000)
                run.cached = state == _Execution.CACHED
                run.failed = state in (_Execution.FAILED, _Execution.CANCELED)
                run.done = not run.failed
                if run.done:
                    run.summary = summarise(self.metadata_path, run.node_id)
                status = "cached" if run.cached else f"{_FINISHED_STATES[state]} in {run.seconds:.0f} s"
                self._print(f"{run.node_id}: {status}" + (f" - {run.summary}" if run.summary else ""))

    def _node_type(self, store: metadata_store.MetadataStore) -> Optional[int]:
        if self._node_type_id is None:
            try:
                self._node_type_id = store.get_context_type("node").id
            except Exception:  # the runner has not registered the type yet
                return None
        return self._node_type_id

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._safe_poll()

    def _safe_poll(self) -> None:
        try:
            self.poll()
        except Exception:  # the store may be locked mid-write; the next poll sees the same state
            pass

    def __enter__(self) -> "ProgressWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._safe_poll()
