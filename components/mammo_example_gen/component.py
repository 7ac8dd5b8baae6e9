"""MammoExampleGen: a file-based TFX ExampleGen for mammography datasets in their own on-disk layouts.

It subclasses FileBasedExampleGen so that TFX's file-based driver (span/version/fingerprint of the input) and the
Kubeflow V2 step builder treat it like any other file-based ExampleGen, and it adds a second typed output: the
quarantine report of records that could not be (or must not be) turned into examples.
"""
from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.mammo_example_gen import executor
from components.mammo_example_gen.artifacts import QuarantineReport
from mammo_tfx.ingest.splits import SplitNeeds
from mammo_tfx.names import SOURCES_MANIFEST_FILE

QUARANTINE_KEY = "quarantine"


class MammoExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's parameters and the folder that keeps every execution's report, plus the quarantine
    report output."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.REPORTS_DIR_KEY: ExecutionParameter(type=str, optional=True),
        executor.SPLIT_NEEDS_KEY: ExecutionParameter(type=str, optional=True),
    }
    OUTPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        QUARANTINE_KEY: ChannelParameter(type=QuarantineReport),
    }


class MammoExampleGen(FileBasedExampleGen):
    """Reads CBIS-DDSM, INbreast, MIAS and plain-folder datasets listed in a sources manifest.

    `input_base` is the folder holding the manifest (`sources.json`, written by `pipeline.sources`); the manifest
    names each dataset root and carries a fingerprint of its files, so that TFX's driver sees new data as a new
    input fingerprint. Ingestion settings travel in `custom_config` (see `executor.Executor`).
    """

    SPEC_CLASS = MammoExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        input_base: str,
        custom_config: example_gen_pb2.CustomConfig,
        output_config: example_gen_pb2.Output,
        input_config: Optional[example_gen_pb2.Input] = None,
        reports_dir: Optional[str] = None,
        split_needs: Optional[SplitNeeds] = None,
    ):
        """`reports_dir`: where each execution also keeps its quarantine report and counts, in a subfolder of its
        own (e.g. `<pipeline root>/reports/MammoExampleGen`); it must not change between runs, or the cached
        result would not be re-used. `split_needs`: what the downstream stages need of each split; the patient
        split fills these minimums where the data allows, and ingested data that still lacks them stops the run."""
        input_config = input_config or example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="all", pattern=SOURCES_MANIFEST_FILE)]
        )
        spec = MammoExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            custom_config=custom_config,
            reports_dir=reports_dir,
            split_needs=split_needs.to_json() if split_needs else None,
            range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=types.Channel(type=standard_artifacts.Examples),
            quarantine=types.Channel(type=QuarantineReport),
        )
        # FileBasedExampleGen.__init__ would build its own spec without the quarantine output.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
