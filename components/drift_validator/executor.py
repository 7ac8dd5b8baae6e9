"""ExampleValidator's executor, plus drift from the statistics of the data the model in service was trained on.

The schema check is TFX's own (SchemaDiff.pb per split, the `blessed` property). Then each split's statistics are
compared with the training statistics pushed beside the newest version in the push directory (written at push time
by the ModelCardWriter), per slice (All Examples, each dataset, site and device), and the results go to `drift.json`
in the anomalies artifact. With `monitoring.stop_run_on_drift` a drift fails this step, so training never starts.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.example_validator import executor as tfx_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from mammo_tfx.monitoring.drift import DRIFT, DriftResults, compare, served_training_statistics, write_results
from mammo_tfx.monitoring.options import DriftOptions

DRIFT_OPTIONS_KEY = "drift_options"
BASELINE_DIR_KEY = "baseline_dir"
REPORTS_DIR_KEY = "reports_dir"
DRIFTED_PROPERTY = "drifted"


class DriftError(RuntimeError):
    """The run's data drifted from the served model's training data and monitoring.stop_run_on_drift is set."""


def drift_check(statistics: types.Artifact, split_names: List[str], baseline_dir: str,
                options: DriftOptions) -> DriftResults:
    """Every split of `statistics` against the training statistics of the newest version under `baseline_dir`."""
    version_dir, baseline = served_training_statistics(baseline_dir)
    if version_dir is None:
        return DriftResults(baseline="", rows=[], notes=[f"no model is pushed under {baseline_dir} yet: no "
                                                         "baseline to compare with"])
    if baseline is None:
        return DriftResults(baseline=version_dir, rows=[], notes=[
            f"the served version {version_dir} was pushed without its training statistics: no baseline to compare "
            "with"])
    rows, notes = [], []
    for split in split_names:
        current = stats_artifact_utils.load_statistics(statistics, split).proto()
        split_rows, split_notes = compare(current, baseline, options, DRIFT, split)
        rows += split_rows
        notes += split_notes
    return DriftResults(baseline=version_dir, rows=rows, notes=notes)


class Executor(tfx_executor.Executor):
    """TFX's ExampleValidator, then the drift check (module docstring)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> Any:
        result = super().Do(input_dict, output_dict, exec_properties)
        options = DriftOptions.from_dict(json.loads(exec_properties[DRIFT_OPTIONS_KEY]))
        statistics = artifact_utils.get_single_instance(input_dict[standard_component_specs.STATISTICS_KEY])
        anomalies = artifact_utils.get_single_instance(output_dict[standard_component_specs.ANOMALIES_KEY])
        excluded = json_utils.loads(exec_properties.get(standard_component_specs.EXCLUDE_SPLITS_KEY, "null")) or []
        splits = [split for split in artifact_utils.decode_split_names(statistics.split_names) if split not in excluded]
        results = drift_check(statistics, splits, exec_properties[BASELINE_DIR_KEY], options)
        write_results(results, anomalies.uri)
        for note in results.notes:
            logging.info("ExampleValidator: %s", note)
        drifted = results.drifted
        anomalies.set_int_custom_property(DRIFTED_PROPERTY, len(drifted))
        # The executor output carries the artifact as it was when TFX's Do returned: copy the new property into it.
        for artifact in result.output_artifacts[standard_component_specs.ANOMALIES_KEY].artifacts:
            artifact.custom_properties[DRIFTED_PROPERTY].int_value = len(drifted)
        if drifted and options.stop_run_on_drift:
            kept = self._keep_results(results, exec_properties.get(REPORTS_DIR_KEY))
            lines = "\n".join(f"  {row.sentence()}" for row in drifted)
            raise DriftError(f"the data of this run drifted from the data the model in service ({results.baseline}) "
                             f"was trained on, and monitoring.stop_run_on_drift is set, so the run stops before "
                             f"training:\n{lines}\nAll comparisons: {kept}")
        return result

    def _keep_results(self, results: DriftResults, reports_dir: Optional[str]) -> str:
        """A copy of the results outside the artifact folder, which TFX removes when this step fails."""
        if not reports_dir:
            return "(no reports folder configured)"
        folder = os.path.join(reports_dir, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        return write_results(results, folder)
