"""Runners: where the one pipeline definition runs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.sources import DataSource, write_manifest


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


def run_local(config: PipelineConfig, sources: Sequence[DataSource], out_dir: str) -> LocalRunLayout:
    """Runs the pipeline with the LocalDagRunner, SQLite metadata and Beam on this machine."""
    layout = LocalRunLayout(os.path.abspath(out_dir))
    write_manifest(sources, layout.manifest_dir)
    tfx.orchestration.LocalDagRunner().run(
        create_pipeline(config, layout.manifest_dir, layout.pipeline_root, layout.metadata_path))
    return layout
