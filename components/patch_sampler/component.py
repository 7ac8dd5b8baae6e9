"""PatchSampler: a TFX component that turns scan Examples into patch Examples (seed S-sets)."""
from __future__ import annotations

import json
from typing import Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.patch_sampler import executor
from mammo_tfx.patches import PatchSamplingOptions

DEFAULT_SPLITS = ("train", "eval")


class PatchSamplerSpec(ComponentSpec):
    """`sampling_options`: PatchSamplingOptions as JSON; `splits`: JSON list of split names."""

    PARAMETERS = {
        executor.SAMPLING_OPTIONS_KEY: ExecutionParameter(type=str),
        executor.SPLITS_KEY: ExecutionParameter(type=str),
        executor.LESION_SPLITS_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {executor.PATCHES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class PatchSampler(base_beam_component.BaseBeamComponent):
    """Samples lesion and background patches from ExampleGen scans, one output split per input split.

    Output `patches` is an Examples artifact (Split-<name>/data_tfrecord-*.gz, GZIP) of patch
    examples with features image_png (16-bit PNG), patch_class, label, source_image_key, dataset,
    overlap, plus `patch_counts.json` (per split, per class) at its root.
    """

    SPEC_CLASS = PatchSamplerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel,
                 sampling_options: Union[PatchSamplingOptions, str] = PatchSamplingOptions(),
                 splits: Sequence[str] = DEFAULT_SPLITS, lesion_splits: Sequence[str] = ()) -> None:
        """`lesion_splits`: splits that must give lesion patches (the patch classifier's training split); a split
        of no patches at all stops the run in any case."""
        if isinstance(sampling_options, str):
            sampling_options = PatchSamplingOptions.from_json(sampling_options)  # fail at build time
        if isinstance(splits, str) or not splits:
            raise ValueError(f"PatchSampler: splits must be a non-empty list of names, got {splits!r}")
        spec = PatchSamplerSpec(
            examples=examples,
            sampling_options=sampling_options.to_json(),
            splits=json.dumps(list(splits)),
            lesion_splits=json.dumps(list(lesion_splits)),
            patches=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
