"""Runners: where the one pipeline definition runs."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Sequence, Tuple

from tfx import v1 as tfx

from mammo_tfx.ingest.salt import read_patient_salt
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.progress import ProgressWatcher, RunProgress
from pipeline.sources import DataSource, write_manifest
from trainer_module.backbone_weights import resolve_backbone_weights


@dataclass(frozen=True)
class LocalRunLayout:
    """Everything a local run writes lives under one output folder."""

    out_dir: str

    @property
    def manifest_dir(self) -> str:
        return os.path.join(self.out_dir, "manifest")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.out_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.out_dir, "metadata.sqlite")


def for_local_salt(config: PipelineConfig) -> PipelineConfig:
    """The configuration for the patient-key salt that a local ExampleGen will read (it runs on this machine, with
    this environment): its properties get the salt's fingerprint, so a new salt misses the cache."""
    return config.for_patient_salt(read_patient_salt(config.ingest.patient_salt_file).fingerprint)


def _beam_dag_runner() -> Any:
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner  # loaded only for runs that choose it

    return BeamDagRunner()


# Orchestrators that run the pipeline on this machine (Kubeflow compiles it instead: pipeline/kubeflow.py).
# "local" runs components one after another in this process; "beam" schedules them as a Beam pipeline.
LOCAL_ORCHESTRATORS: Dict[str, Callable[[], Any]] = {
    "local": tfx.orchestration.LocalDagRunner,
    "beam": _beam_dag_runner,
}


def _orchestrator(name: str) -> Any:
    if name not in LOCAL_ORCHESTRATORS:
        raise ValueError(f"unknown orchestrator {name!r}; choose one of {sorted(LOCAL_ORCHESTRATORS)}")
    return LOCAL_ORCHESTRATORS[name]()


def run_local(
    config: PipelineConfig, sources: Sequence[DataSource], out_dir: str, show_progress: bool = True,
    orchestrator: str = "local",
) -> Tuple[LocalRunLayout, RunProgress]:
    """Runs the pipeline on this machine (LocalDagRunner or BeamDagRunner), SQLite metadata, Beam for the data.

    Prints a line per component start/end unless `show_progress` is False; returns the per-component record
    either way (also when a component fails, through the exception's `progress` attribute)."""
    runner = _orchestrator(orchestrator)  # an unknown name fails before anything is written
    # Missing backbone weights (offline, wrong path) stop the run here, not in the Trainer after ingestion; the
    # Trainer resolves them again from the cache this fills. A fine-tune run trains no patch stage: none are read.
    if not config.fine_tunes:
        resolve_backbone_weights(config.patch_training.backbone, config.patch_training.backbone_weights)
    config = for_local_salt(config)
    layout = LocalRunLayout(os.path.abspath(out_dir))
    write_manifest(sources, layout.manifest_dir)
    stream = sys.stdout if show_progress else open(os.devnull, "w")
    watcher = ProgressWatcher(layout.metadata_path, stream=stream)
    try:
        with watcher:
            runner.run(
                create_pipeline(config, layout.manifest_dir, layout.pipeline_root, layout.metadata_path))
    except Exception as error:
        error.progress = watcher.progress  # type: ignore[attr-defined]
        raise
    finally:
        if stream is not sys.stdout:
            stream.close()
    return layout, watcher.progress
