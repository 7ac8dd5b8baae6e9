"""`mammo-tfx monitor`: the acquisition statistics of served requests (from the server's request logs) against the
served model's training statistics (skew) and against the previous window of requests (drift), plus the
distribution of answered probabilities and recall decisions (docs/monitoring.md)."""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2
from tensorflow_serving.apis import prediction_log_pb2

from mammo_tfx import names
from mammo_tfx.ingest.image_statistics import decode_display_image, image_statistics
from mammo_tfx.monitoring.drift import (DRIFT, REQUESTS, SKEW, DriftResults, compare, served_training_statistics,
                                        write_results)
from mammo_tfx.monitoring.options import DriftOptions
from mammo_tfx.serving.request_log import read_request_logs

# Per-image features of a logged request: the pixel statistics (compared with training data), the served answer
# and its decision (compared between windows only: training data has no answers), and the model version.
MODEL_VERSION = "model_version"
ANSWER_FEATURES = (names.PROBABILITY, names.RECALL)
WINDOW_FEATURES = (*names.IMAGE_STATISTICS, *ANSWER_FEATURES)
CURRENT_WINDOW_FILE = "requests_current.tfrecord"
PREVIOUS_WINDOW_FILE = "requests_previous.tfrecord"


@dataclasses.dataclass(frozen=True)
class RequestImage:
    """One image of a logged request: its statistics and what the server answered for it."""

    timestamp_secs: int
    version: int
    statistics: Dict[str, float]
    probability: Optional[float]
    recall: Optional[bool]

    def to_example(self) -> tf.train.Example:
        features = {name: tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                    for name, value in self.statistics.items()}
        if self.probability is not None:
            features[names.PROBABILITY] = tf.train.Feature(float_list=tf.train.FloatList(value=[self.probability]))
        if self.recall is not None:
            features[names.RECALL] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[b"recall" if self.recall else b"no recall"]))
        features[MODEL_VERSION] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(self.version).encode()]))
        return tf.train.Example(features=tf.train.Features(feature=features))


def _logged_images(log: prediction_log_pb2.PredictionLog) -> List[bytes]:
    """The encoded images of a logged predict request: `image_bytes`, or the `image_png` of `examples`."""
    inputs = log.predict_log.request.inputs
    if names.IMAGE_BYTES_INPUT in inputs:
        return [bytes(value) for value in tf.make_ndarray(inputs[names.IMAGE_BYTES_INPUT]).reshape(-1)]
    if names.EXAMPLES_INPUT in inputs:
        images = []
        for serialized in tf.make_ndarray(inputs[names.EXAMPLES_INPUT]).reshape(-1):
            feature = tf.train.Example.FromString(bytes(serialized)).features.feature.get(names.IMAGE_PNG)
            images += list(feature.bytes_list.value) if feature is not None else []
        return images
    return []


def _output(log: prediction_log_pb2.PredictionLog, key: str) -> Optional[np.ndarray]:
    outputs = log.predict_log.response.outputs
    return tf.make_ndarray(outputs[key]).reshape(-1) if key in outputs else None


def request_images(logs: Iterable[prediction_log_pb2.PredictionLog]) -> Iterator[RequestImage]:
    """Every image of the logged predict requests, with its statistics and answer. Images the statistics cannot be
    taken of (not decodable) are skipped: the server answered them with an error, which is not logged."""
    for log in logs:
        if not log.HasField("predict_log"):
            continue
        probabilities, recalls = _output(log, names.PROBABILITY), _output(log, names.RECALL)
        for index, encoded in enumerate(_logged_images(log)):
            try:
                statistics = image_statistics(decode_display_image(encoded)).as_features()
            except ValueError:
                continue
            yield RequestImage(
                timestamp_secs=log.log_metadata.timestamp_secs, version=log.log_metadata.model_spec.version.value,
                statistics=statistics,
                probability=float(probabilities[index]) if probabilities is not None and index < len(probabilities)
                else None,
                recall=bool(recalls[index]) if recalls is not None and index < len(recalls) else None)


def split_windows(images: Sequence[RequestImage], window_hours: float
                  ) -> tuple[List[RequestImage], List[RequestImage]]:
    """(current, previous): the images logged in the `window_hours` up to the newest one, and in the window before."""
    if not images:
        return [], []
    end = max(image.timestamp_secs for image in images) + 1
    width = window_hours * 3600.0
    current = [image for image in images if end - width <= image.timestamp_secs < end]
    previous = [image for image in images if end - 2 * width <= image.timestamp_secs < end - width]
    return current, previous


def window_statistics(images: Sequence[RequestImage], path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of a window's images (written to `path` as TFRecords first: TFDV reads files)."""
    with tf.io.TFRecordWriter(path) as writer:
        for image in images:
            writer.write(image.to_example().SerializeToString())
    return tfdv.generate_statistics_from_tfrecord(path)


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    """What `monitor` found: the comparisons (skew and drift rows, notes), the window sizes, and the images of the
    current window (for the report's plots)."""

    results: DriftResults
    current: List[RequestImage]
    previous: List[RequestImage]
    training_statistics: Optional[statistics_pb2.DatasetFeatureStatisticsList]


def monitor(log_dir: str, model_base_path: str, out_dir: str, options: DriftOptions,
            window_hours: float = 24.0) -> MonitorResult:
    """Compare the current window of logged requests with the served model's training statistics and with the
    previous window; write `drift.json` and the windows' features to `out_dir`."""
    images = list(request_images(read_request_logs(log_dir)))
    if not images:
        raise ValueError(f"no logged predict request with an image in {log_dir} (is the server started with "
                         "--request-log-dir and a --request-log-rate above 0?)")
    current, previous = split_windows(images, window_hours)
    os.makedirs(out_dir, exist_ok=True)
    current_statistics = window_statistics(current, os.path.join(out_dir, CURRENT_WINDOW_FILE))
    rows, notes = [], []
    version_dir, training = served_training_statistics(model_base_path)
    if training is None:
        notes.append(f"no training statistics beside the served version under {model_base_path} "
                     f"({version_dir or 'nothing pushed'}): skew not computed")
    else:
        split_rows, split_notes = compare(current_statistics, training, options, SKEW, REQUESTS,
                                          names.IMAGE_STATISTICS)
        rows, notes = rows + split_rows, notes + split_notes
    if previous:
        previous_statistics = window_statistics(previous, os.path.join(out_dir, PREVIOUS_WINDOW_FILE))
        split_rows, split_notes = compare(current_statistics, previous_statistics, options, DRIFT, REQUESTS,
                                          WINDOW_FEATURES)
        rows, notes = rows + split_rows, notes + split_notes
    else:
        notes.append(f"no requests logged in the {window_hours:g} hours before the current window: drift between "
                     "windows not computed")
    results = DriftResults(baseline=version_dir or "", rows=rows, notes=notes)
    write_results(results, out_dir)
    return MonitorResult(results=results, current=current, previous=previous, training_statistics=training)
