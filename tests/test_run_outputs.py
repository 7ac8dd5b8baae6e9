"""pipeline/outputs.py finds a run's screening evaluation and the whole-image Trainer's export in ML Metadata, the
way a local run records them (node contexts, executions, output events), and runs without them still read."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.outputs import SCREENING_EVALUATOR_ID, UNIT_EVALUATION_OUTPUT, collect_outputs
from pipeline.pipeline import IMAGE_TRAINER_ID
from pipeline.progress import summarise
from tests.conftest import screening_images, unit_evaluation_document


class _Store:
    """A writable MLMD store shaped like a local run's: one node context per component."""

    def __init__(self, path: str) -> None:
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.node_type = self.store.put_context_type(metadata_store_pb2.ContextType(name="node"))
        self.execution_type = self.store.put_execution_type(metadata_store_pb2.ExecutionType(name="component"))
        self.artifact_types: dict[str, int] = {}

    def output(self, node_id: str, key: str, type_name: str, uri: str) -> None:
        if type_name not in self.artifact_types:
            self.artifact_types[type_name] = self.store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
        [artifact_id] = self.store.put_artifacts([metadata_store_pb2.Artifact(
            type_id=self.artifact_types[type_name], uri=uri, state=metadata_store_pb2.Artifact.LIVE)])
        [execution_id] = self.store.put_executions([metadata_store_pb2.Execution(type_id=self.execution_type)])
        [context_id] = self.store.put_contexts([metadata_store_pb2.Context(type_id=self.node_type,
                                                                           name=f"mammo.{node_id}")])
        self.store.put_attributions_and_associations(
            [], [metadata_store_pb2.Association(context_id=context_id, execution_id=execution_id)])
        event = metadata_store_pb2.Event(artifact_id=artifact_id, execution_id=execution_id,
                                         type=metadata_store_pb2.Event.OUTPUT)
        event.path.steps.add().key = key
        self.store.put_events([event])


def test_run_outputs_name_the_unit_evaluation_and_the_trainer_export(tmp_path: Path) -> None:
    store = _Store(str(tmp_path / "metadata.sqlite"))
    store.output("MammoExampleGen", "examples", "Examples", str(tmp_path / "examples"))
    store.output("Evaluator", "evaluation", "ModelEvaluation", str(tmp_path / "evaluation"))
    old_run = collect_outputs(str(tmp_path / "metadata.sqlite"))
    assert (old_run.unit_evaluation_uri, old_run.model_export_dir) == (None, None)

    store.output(SCREENING_EVALUATOR_ID, UNIT_EVALUATION_OUTPUT, "ModelEvaluation", str(tmp_path / "units"))
    model_uri = tmp_path / "model"
    (model_uri / "Format-Serving").mkdir(parents=True)
    store.output(IMAGE_TRAINER_ID, "model", "Model", str(model_uri))
    outputs = collect_outputs(str(tmp_path / "metadata.sqlite"))
    assert outputs.unit_evaluation_uri == str(tmp_path / "units")
    assert outputs.model_export_dir == str(model_uri / "Format-Serving")
    assert outputs.evaluation_uri == str(tmp_path / "evaluation")


def test_the_progress_line_of_the_screening_evaluator_gives_each_units_count_and_auc(tmp_path: Path) -> None:
    images = screening_images(np.random.default_rng(0), {"cbis-ddsm": 12}, views_showing=2)
    units = unit_evaluation_document(str(tmp_path / "units"), {"candidate": images})
    store = _Store(str(tmp_path / "metadata.sqlite"))
    store.output(SCREENING_EVALUATOR_ID, UNIT_EVALUATION_OUTPUT, "UnitEvaluation", units.uri)
    line = summarise(str(tmp_path / "metadata.sqlite"), SCREENING_EVALUATOR_ID)
    overall = {unit: by_slice[()] for unit, by_slice in units.candidate.figures.items()}
    assert line == (f"{overall['image'].count} images AUC {overall['image'].auc:.3f}, "
                    f"{overall['breast'].count} breasts AUC {overall['breast'].auc:.3f}, "
                    f"{overall['exam'].count} exams AUC {overall['exam'].auc:.3f}")
    assert overall["breast"].count == 12 and overall["image"].count == 24
