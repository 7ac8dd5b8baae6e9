"""One line per component as a local run goes (start, end, key counts) and a short table at the end.

The LocalDagRunner announces each component through absl logging ("Component X is running." / "... is
finished.", and the launcher's "A cached execution N is used."). A logging handler turns those records into
progress lines; the key counts come from what the component published in ML Metadata, so they are the run's own
record, not a guess from paths.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, TextIO

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

_RUNNING = re.compile(r"^Component (\S+) is running\.$")
_FINISHED = re.compile(r"^Component (\S+) is finished\.$")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")


@dataclass
class ComponentRun:
    node_id: str
    started: float
    seconds: float = 0.0
    cached: bool = False
    summary: str = ""
    done: bool = False


@dataclass
class RunProgress:
    components: List[ComponentRun] = field(default_factory=list)

    def table(self) -> str:
        rows = [("component", "status", "seconds", "summary")]
        for run in self.components:
            status = "cached" if run.cached else ("ran" if run.done else "failed")
            rows.append((run.node_id, status, f"{run.seconds:.0f}", run.summary))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = []
        for index, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
            if index == 0:
                lines.append("  ".join("-" * width for width in widths) + "  " + "-" * 7)
        return "\n".join(lines)


def _store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


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
    counts = _read_json(os.path.join(patches.uri, "patch_counts.json")) if patches else None
    if not counts:
        return ""
    parts = []
    for split, per_class in sorted(counts.items(), reverse=True):
        classes = {k: v for k, v in per_class.items() if k not in ("scans", "failed_scans")}
        parts.append(f"{split}: " + " ".join(f"{name} {n}" for name, n in classes.items()))
    return "; ".join(parts)


def _trainer(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    model_run = outputs.get("model_run")
    summary = _read_json(os.path.join(model_run.uri, "training_summary.json")) if model_run else None
    if not summary:
        return ""
    epochs = sum(step.get("epochs_run", 0) for step in summary["steps"])
    metric = "val_auc"
    values = [v for step in summary["steps"] for v in step.get("history", {}).get(metric, [])]
    best = f", best {metric} {max(values):.3f}" if values else ""
    return f"{len(summary['steps'])} steps, {epochs} epochs{best}"


def _example_validator(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    from pipeline.outputs import read_anomalies

    anomalies = outputs.get("anomalies")
    if anomalies is None:
        return ""
    found = read_anomalies(anomalies.uri)
    total = sum(len(v) for v in found.values())
    return "no anomalies" if total == 0 else f"{total} anomalies: " + "; ".join(
        f"{split}: {', '.join(v)}" for split, v in found.items() if v)


def _blessing(outputs: Dict[str, metadata_store_pb2.Artifact]) -> str:
    blessing = outputs.get("blessing")
    if blessing is None:
        return ""
    return "blessed" if _int(blessing, "blessed") == 1 else "NOT blessed"


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
    "Evaluator": _blessing,
    "ModelGate": _blessing,
    "Pusher": _pusher,
}


def summarise(metadata_path: str, node_id: str) -> str:
    summariser = next((f for prefix, f in SUMMARISERS.items() if node_id.startswith(prefix)), None)
    if summariser is None:
        return ""
    try:
        return summariser(latest_outputs(_store(metadata_path), node_id))
    except Exception as error:  # a progress line must never break the run it reports on
        return f"(summary unavailable: {type(error).__name__})"


class ProgressHandler(logging.Handler):
    """Prints a line when a component starts and when it ends, with its key counts."""

    def __init__(self, metadata_path: str, stream: TextIO = sys.stdout):
        super().__init__(level=logging.INFO)
        self.metadata_path = metadata_path
        self.stream = stream
        self.progress = RunProgress()
        self._current: Optional[ComponentRun] = None

    def _print(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if match := _RUNNING.match(message):
            self._current = ComponentRun(node_id=match.group(1), started=time.monotonic())
            self.progress.components.append(self._current)
            self._print(f"{self._current.node_id}: started")
        elif _CACHED.match(message) and self._current is not None:
            self._current.cached = True
        elif (match := _FINISHED.match(message)) and self._current is not None:
            run = self._current
            run.seconds, run.done = time.monotonic() - run.started, True
            run.summary = summarise(self.metadata_path, run.node_id)
            status = "cached" if run.cached else f"finished in {run.seconds:.0f} s"
            self._print(f"{run.node_id}: {status}" + (f" - {run.summary}" if run.summary else ""))
            self._current = None
