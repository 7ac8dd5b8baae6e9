"""The mammo-tfx pipeline, defined once; runners (pipeline/runners.py) only choose where it runs."""
from __future__ import annotations

import os
from typing import List, Optional

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.mammo_example_gen.component import MammoExampleGen
from components.mammo_example_gen.executor import encode_custom_config
from pipeline.config import PipelineConfig, SplitConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(REPO_ROOT, "schemas", "schema.pbtxt")


def output_config(splits: SplitConfig) -> example_gen_pb2.Output:
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
            for name, buckets in splits.buckets()
        ])
    )


def create_components(config: PipelineConfig, manifest_dir: str) -> List[tfx.types.BaseNode]:
    example_gen = MammoExampleGen(
        input_base=manifest_dir,
        custom_config=encode_custom_config(config.ingest),
        output_config=output_config(config.splits),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=SCHEMA_FILE)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    return [example_gen, statistics_gen, schema_gen, example_validator]


def create_pipeline(
    config: PipelineConfig,
    manifest_dir: str,
    pipeline_root: str,
    metadata_path: Optional[str] = None,
) -> tfx.dsl.Pipeline:
    metadata_config = (
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path) if metadata_path else None
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=create_components(config, manifest_dir),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_config,
        beam_pipeline_args=config.beam.pipeline_args(),
    )
