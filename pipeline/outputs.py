"""Finds what a pipeline run produced, by asking ML Metadata (the run's own record), not by guessing paths."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.utils import path_utils

from components.mammo_example_gen.executor import REPORTS_DIR_KEY
from components.screening_evaluator.executor import UNIT_EVALUATION_KEY as UNIT_EVALUATION_OUTPUT
from mammo_tfx.monitoring.drift import DriftResults, read_results
from mammo_tfx.names import INGEST_SUMMARY_FILE, QUARANTINE_FILE
from pipeline.evaluation import EVALUATOR_ID, GATE_ID, SCREENING_EVALUATOR_ID
from pipeline.pipeline import IMAGE_TRAINER_ID


@dataclass(frozen=True)
class RunOutputs:
    examples_uri: str
    evaluation_uri: Optional[str]
    unit_evaluation_uri: Optional[str]  # the ScreeningEvaluator's output; None for runs before it existed
    model_export_dir: Optional[str]  # the whole-image Trainer's export (its screening record)
    blessing_uri: Optional[str]
    pushed_uri: Optional[str]  # the pushed version directory, when the model was pushed
    statistics_uri: Optional[str]
    anomalies_uri: Optional[str]
    quarantine_uri: Optional[str]
    ingest_summary: Dict[str, object]
    anomalies: Dict[str, List[str]]  # split -> anomaly descriptions
    drift: Optional[DriftResults] = None  # the ExampleValidator's drift check against the served model's data


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """A read-only connection to a local run's MLMD store (safe while the run writes to it)."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def latest_output_uri(store: metadata_store.MetadataStore, node_id: str, output_key: str) -> Optional[str]:
    """URI of the newest LIVE artifact that component `node_id` published under `output_key`."""
    artifact = latest_output_artifact(store, node_id, output_key)
    return artifact.uri if artifact else None


def latest_output_artifact(
    store: metadata_store.MetadataStore, node_id: str, output_key: str
) -> Optional[metadata_store_pb2.Artifact]:
    """The newest LIVE artifact that component `node_id` published under `output_key`."""
    node_contexts = [c for c in store.get_contexts_by_type("node") if c.name.split(".")[-1] == node_id]
    if not node_contexts:
        return None
    execution_ids = {e.id for c in node_contexts for e in store.get_executions_by_context(c.id)}
    artifact_ids = {
        event.artifact_id
        for event in store.get_events_by_execution_ids(list(execution_ids))
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        and event.path.steps and event.path.steps[0].key == output_key
    }
    artifacts = [a for a in store.get_artifacts_by_id(list(artifact_ids)) if a.state == metadata_store_pb2.Artifact.LIVE]
    if not artifacts:
        return None
    return max(artifacts, key=lambda a: (a.create_time_since_epoch, a.id))


def read_anomalies(anomalies_uri: str) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for split_dir in sorted(tf.io.gfile.glob(os.path.join(anomalies_uri, "Split-*"))):
        path = os.path.join(split_dir, "SchemaDiff.pb")
        if not tf.io.gfile.exists(path):
            continue
        anomalies = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(path, "rb") as f:
            anomalies.ParseFromString(f.read())
        split = os.path.basename(split_dir)[len("Split-"):]
        found[split] = [
            f"{feature}: {info.short_description}" for feature, info in sorted(anomalies.anomaly_info.items())
        ]
    return found


def _latest_pushed_destination(store: metadata_store.MetadataStore) -> Optional[str]:
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if a.custom_properties.get("pushed") is not None and a.custom_properties["pushed"].int_value == 1]
    if not pushed:
        return None
    newest = max(pushed, key=lambda a: (a.create_time_since_epoch, a.id))
    return newest.custom_properties["pushed_destination"].string_value


def collect_outputs(metadata_path: str) -> RunOutputs:
    store = open_store(metadata_path)
    examples_uri = latest_output_uri(store, "MammoExampleGen", "examples")
    if examples_uri is None:
        raise RuntimeError(f"{metadata_path}: the run recorded no examples from MammoExampleGen")
    quarantine = latest_output_artifact(store, "MammoExampleGen", "quarantine")
    # The kept copy outside the artifact folders (REPORTS_DIR_KEY) is the path the README and error messages name.
    kept = quarantine.custom_properties.get(REPORTS_DIR_KEY) if quarantine else None
    quarantine_uri = kept.string_value if kept else (quarantine.uri if quarantine else None)
    anomalies_uri = latest_output_uri(store, "ExampleValidator", "anomalies")
    summary: Dict[str, object] = {}
    if quarantine_uri:
        with tf.io.gfile.GFile(os.path.join(quarantine_uri, INGEST_SUMMARY_FILE)) as f:
            summary = json.load(f)
    pushed = _latest_pushed_destination(store)
    model_uri = latest_output_uri(store, IMAGE_TRAINER_ID, "model")
    return RunOutputs(
        examples_uri=examples_uri,
        evaluation_uri=latest_output_uri(store, EVALUATOR_ID, "evaluation"),
        unit_evaluation_uri=latest_output_uri(store, SCREENING_EVALUATOR_ID, UNIT_EVALUATION_OUTPUT),
        model_export_dir=path_utils.serving_model_path(model_uri) if model_uri else None,
        blessing_uri=latest_output_uri(store, GATE_ID, "blessing"),
        pushed_uri=pushed,
        statistics_uri=latest_output_uri(store, "StatisticsGen", "statistics"),
        anomalies_uri=anomalies_uri,
        quarantine_uri=os.path.join(quarantine_uri, QUARANTINE_FILE) if quarantine_uri else None,
        ingest_summary=summary,
        anomalies=read_anomalies(anomalies_uri) if anomalies_uri else {},
        drift=read_results(anomalies_uri) if anomalies_uri else None,
    )
