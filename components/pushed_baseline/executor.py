"""PushedBaseline executor: copies the newest complete version under the Pusher's base directory into its Model
artifact's `Format-Serving` folder, where TFX's Evaluator and the other consumers read a model. The directory may
also be one version folder or a bare export (a fine-tune run's base model): that model is copied.

The Pusher writes only blessed models there, so the newest complete version is the last model that passed the gate
and was shipped. With no version yet (first run) the artifact holds no model: `holds_model` is False and the
consumers evaluate without a baseline. The artifact always exists, because KFP records every declared output of a
task whatever its executor wrote; "no baseline" is therefore an empty artifact on every runner, not a missing one.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from mammo_tfx.serving.repository import find_model_folder

MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
PUSH_BASE_DIRECTORY_KEY = "push_base_directory"
# Custom properties of the output: 1/0, the pushed version number (TF Serving's version folder) and its folder.
FOUND_PROPERTY = "baseline_found"
VERSION_PROPERTY = "pushed_version"
SOURCE_PROPERTY = "pushed_destination"


def holds_model(model: types.Artifact) -> bool:
    """Whether a Model artifact holds a SavedModel where TFX's components read it (`<uri>/Format-Serving`)."""
    return fileio.exists(os.path.join(path_utils.serving_model_path(model.uri), "saved_model.pb"))


def baseline_models(artifacts: Optional[List[types.Artifact]]) -> List[types.Artifact]:
    """The baseline input without a PushedBaseline artifact that holds no model (no version pushed yet)."""
    return [artifact for artifact in artifacts or [] if holds_model(artifact)]


class Executor(base_executor.BaseExecutor):
    """Finds the newest pushed version and copies it into the output Model artifact (or leaves it empty)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        push_base_directory = exec_properties[PUSH_BASE_DIRECTORY_KEY]
        baseline = artifact_utils.get_single_instance(output_dict[BASELINE_MODEL_KEY])
        found = find_model_folder(push_base_directory)
        if found is None:
            baseline.set_int_custom_property(FOUND_PROPERTY, 0)
            logging.info("PushedBaseline: no model version under %s yet; the candidate is gated without a "
                         "baseline", push_base_directory)
            return
        io_utils.copy_dir(found.path, path_utils.serving_model_dir(baseline.uri))
        baseline.set_int_custom_property(FOUND_PROPERTY, 1)
        # "" for a bare export, which has no version number.
        baseline.set_string_custom_property(VERSION_PROPERTY, "" if found.version is None else str(found.version))
        baseline.set_string_custom_property(SOURCE_PROPERTY, found.path)
        logging.info("PushedBaseline: baseline is %s, copied to %s", found.path, baseline.uri)
