"""Drift and skew of the acquisition features between two sets of statistics, with TFDV's comparators: the
L-infinity distance for categorical features, the Jensen-Shannon divergence for numeric ones. Used by the
pipeline's ExampleValidator (a run's data against the served model's training data) and by `mammo-tfx monitor`
(served requests against the training data and against the previous window); docs/monitoring.md."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from mammo_tfx import names
from mammo_tfx.monitoring.options import DriftOptions
from mammo_tfx.serving.repository import list_complete_versions

# TFDV's name of the slice holding every example.
ALL_EXAMPLES = "All Examples"
JENSEN_SHANNON = "jensen_shannon_divergence"
INFINITY_NORM = "infinity_norm"
DRIFT = "drift"  # against earlier data of the same kind (the previous run's, the previous window's)
SKEW = "skew"  # served requests against the training data
REQUESTS = "requests"  # the `split` of rows about served requests
# StatisticsGen's file in each Split-<name> folder.
STATISTICS_FILE = "FeatureStats.pb"
_CATEGORICAL = (statistics_pb2.FeatureNameStatistics.STRING, statistics_pb2.FeatureNameStatistics.BYTES)


@dataclasses.dataclass(frozen=True)
class DriftRow:
    """One comparison: `feature` of `slice` (`split` of the data), its distance by `comparator`, and whether it is
    above `threshold`."""

    kind: str
    split: str
    slice: str
    feature: str
    comparator: str
    value: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold

    def sentence(self) -> str:
        where = self.slice if self.slice == ALL_EXAMPLES else f"slice {self.slice}"
        return (f"{self.kind} on {self.feature} ({where}, {_data(self.split)}): {self.comparator.replace('_', ' ')} "
                f"{self.value:.3f} above the threshold {self.threshold:g}")


@dataclasses.dataclass(frozen=True)
class DriftResults:
    """The comparisons of one check, and what could not be compared (`notes`, sentences)."""

    baseline: str
    rows: List[DriftRow]
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def drifted(self) -> List[DriftRow]:
        return [row for row in self.rows if row.drifted]


def _data(split: str) -> str:
    return REQUESTS if split == REQUESTS else f"split {split}"


def _comparator(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return INFINITY_NORM if feature.type in _CATEGORICAL else JENSEN_SHANNON


def comparison_schema(statistics: statistics_pb2.DatasetFeatureStatistics, features: Sequence[str],
                      options: DriftOptions) -> schema_pb2.Schema:
    """A schema of the `features` present in `statistics`, each with its drift and skew comparator."""
    schema = schema_pb2.Schema()
    for feature in statistics.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if name not in features:
            continue
        entry = schema.feature.add(name=name)
        entry.type = schema_pb2.BYTES if feature.type in _CATEGORICAL else (
            schema_pb2.INT if feature.type == statistics_pb2.FeatureNameStatistics.INT else schema_pb2.FLOAT)
        for comparator in (entry.drift_comparator, entry.skew_comparator):
            if _comparator(feature) == INFINITY_NORM:
                comparator.infinity_norm.threshold = options.infinity_norm_threshold
            else:
                comparator.jensen_shannon_divergence.threshold = options.jensen_shannon_threshold
    return schema


def _only(statistics: statistics_pb2.DatasetFeatureStatistics, features: Sequence[str]
          ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One slice's statistics as a list TFDV validates, restricted to `features` (others would be schema anomalies)."""
    kept = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = kept.datasets.add()
    dataset.CopyFrom(statistics)
    del dataset.features[:]
    for feature in statistics.features:
        if (feature.path.step[0] if feature.path.step else feature.name) in features:
            dataset.features.add().CopyFrom(feature)
    return kept


def slices(statistics: statistics_pb2.DatasetFeatureStatisticsList
           ) -> Dict[str, statistics_pb2.DatasetFeatureStatistics]:
    """Slice name -> statistics; the unsliced statistics (one dataset named "") count as All Examples."""
    return {(dataset.name or ALL_EXAMPLES): dataset for dataset in statistics.datasets}


def compare(current: statistics_pb2.DatasetFeatureStatisticsList, baseline: statistics_pb2.DatasetFeatureStatisticsList,
            options: DriftOptions, kind: str = DRIFT, split: str = REQUESTS,
            features: Sequence[str] = names.DRIFT_FEATURES) -> tuple[List[DriftRow], List[str]]:
    """The distances of `features` between `current` and `baseline`, per slice both have (All Examples and each
    dataset/site/device value); notes say which slices could not be compared and why."""
    rows: List[DriftRow] = []
    notes: List[str] = []
    baseline_slices = slices(baseline)
    for slice_name, statistics in slices(current).items():
        reference = baseline_slices.get(slice_name)
        if reference is None:
            notes.append(f"slice {slice_name} ({_data(split)}) has no counterpart in the baseline: new in this data")
            continue
        if min(statistics.num_examples, reference.num_examples) < options.min_slice_examples:
            if slice_name == ALL_EXAMPLES:
                notes.append(f"{statistics.num_examples} examples against {reference.num_examples} in the baseline "
                             f"({_data(split)}): fewer than monitoring.min_slice_examples="
                             f"{options.min_slice_examples}, not compared")
            continue
        schema = comparison_schema(statistics, features, options)
        if kind == SKEW:
            anomalies = tfdv.validate_statistics(_only(reference, features), schema,
                                                 serving_statistics=_only(statistics, features))
        else:
            anomalies = tfdv.validate_statistics(_only(statistics, features), schema,
                                                 previous_statistics=_only(reference, features))
        for info in anomalies.drift_skew_info:
            measurements = info.skew_measurements if kind == SKEW else info.drift_measurements
            for measurement in measurements:
                comparator = INFINITY_NORM if measurement.type == measurement.L_INFTY else JENSEN_SHANNON
                rows.append(DriftRow(kind=kind, split=split, slice=slice_name, feature=".".join(info.path.step),
                                     comparator=comparator, value=float(measurement.value),
                                     threshold=float(measurement.threshold)))
    return rows, notes


def write_results(results: DriftResults, directory: str) -> str:
    """`<directory>/drift.json`; returns its path. Read back with `read_results`."""
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, names.DRIFT_RESULTS_FILE)
    document = {"baseline": results.baseline, "notes": results.notes,
                "rows": [dict(dataclasses.asdict(row), drifted=row.drifted) for row in results.rows]}
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(document, indent=1))
    return path


def read_results(directory: str) -> Optional[DriftResults]:
    """The results `write_results` wrote into `directory`, or None when it holds none."""
    path = os.path.join(directory, names.DRIFT_RESULTS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        document = json.load(handle)
    fields = {field.name for field in dataclasses.fields(DriftRow)}
    return DriftResults(baseline=document["baseline"], notes=list(document["notes"]),
                        rows=[DriftRow(**{k: v for k, v in row.items() if k in fields}) for row in document["rows"]])


def read_statistics(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A FeatureStats.pb as StatisticsGen writes it (binary DatasetFeatureStatisticsList)."""
    return tfdv.load_stats_binary(path)


def training_statistics_path(version_dir: str, split: str = "train") -> str:
    """Where a pushed version keeps the statistics of its training split (written at push time)."""
    return os.path.join(version_dir, names.SERVING_EXTRAS_DIR, names.TRAINING_STATISTICS_DIR, f"Split-{split}",
                        STATISTICS_FILE)



def served_training_statistics(model_base_path: str
                               ) -> tuple[Optional[str], Optional[statistics_pb2.DatasetFeatureStatisticsList]]:
    """(version folder, training statistics) of the model in service: the newest complete version under
    `model_base_path` (TF Serving's policy). (None, None) when nothing is pushed yet; (folder, None) when that version
    was pushed without its statistics."""
    versions = list_complete_versions(model_base_path)
    if not versions:
        return None, None
    version_dir = os.path.join(model_base_path, str(versions[-1]))
    path = training_statistics_path(version_dir)
    return version_dir, (read_statistics(path) if tf.io.gfile.exists(path) else None)
