"""Sampled request logs in TF Serving's format: `PredictionLog` records (the request, the response and the model
version that answered) in TFRecord files, as `tensorflow_model_server` writes them with a model's `logging_config`.

A logged request holds the images it was sent: a mammogram is patient data, so the logs are off unless a folder is
given, never inside the model folder, and rotated and pruned by size and count (`RequestLogOptions`). What is logged
and how to handle it: docs/monitoring.md. The writer and the reader of these files are both here.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from typing import Callable, Iterator, List, Mapping, Optional

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import logging_config_pb2, model_server_config_pb2

from mammo_tfx.names import SERVING_TAG
from mammo_tfx.options import Options

logger = logging.getLogger(__name__)

# <log dir>/<prefix>-<UTC time>-<sequence>.tfrecord; the prefix is LogCollectorConfig.filename_prefix's last part.
LOG_FILE_PREFIX = "prediction_log"
LOG_FILE_SUFFIX = ".tfrecord"
_MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RequestLogOptions(Options):
    """`sampling_rate`: the share of answered predict requests logged (0 logs none; `mammo-tfx serve
    --request-log-rate` sets it). A file is closed and a new one started once it holds `max_file_mb`; beyond
    `max_files` files the oldest are deleted (0 keeps every file)."""

    sampling_rate: float = 0.0
    max_file_mb: float = 256.0
    max_files: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sampling_rate, bool) or not 0.0 <= self.sampling_rate <= 1.0:
            raise ValueError(f"request_log.sampling_rate must be in [0, 1], got {self.sampling_rate!r}")
        if not self.max_file_mb > 0:
            raise ValueError(f"request_log.max_file_mb must be positive, got {self.max_file_mb!r}")
        if self.max_files < 0:
            raise ValueError(f"request_log.max_files must not be negative, got {self.max_files!r}")


def check_log_dir(log_dir: str, model_base_path: str) -> str:
    """The absolute log folder; ValueError when it lies inside the model folder (logged images would travel with
    every copy of the model, and the server scans that folder for versions)."""
    log_dir, base = os.path.abspath(log_dir), os.path.abspath(model_base_path)
    if os.path.commonpath([log_dir, base]) == base:
        raise ValueError(f"the request log folder {log_dir} is inside the model folder {base}; logged requests hold "
                         "patient images and must be kept apart from the model: choose a folder outside it")
    return log_dir


def logging_config(log_dir: str, sampling_rate: float) -> logging_config_pb2.LoggingConfig:
    """TF Serving's LoggingConfig of these logs (a model's `logging_config` in a model config file)."""
    config = logging_config_pb2.LoggingConfig()
    config.log_collector_config.filename_prefix = os.path.join(log_dir, LOG_FILE_PREFIX)
    config.sampling_config.sampling_rate = sampling_rate
    return config


def model_server_config(model_base_path: str, model_name: str, log_dir: str, sampling_rate: float
                        ) -> model_server_config_pb2.ModelServerConfig:
    """A `--model_config_file` for tensorflow_model_server serving one model with request logging."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = model_base_path
    model.model_platform = "tensorflow"
    model.logging_config.CopyFrom(logging_config(log_dir, sampling_rate))
    return config


class RequestLogger:
    """Writes a sample of answered predict requests to `log_dir` (thread-safe; `close()` when done). `clock` gives
    the time recorded with each request (seconds since the epoch)."""

    def __init__(self, log_dir: str, model_base_path: str, options: RequestLogOptions,
                 rng: Optional[random.Random] = None, clock: Callable[[], float] = time.time) -> None:
        self.log_dir = check_log_dir(log_dir, model_base_path)
        self.options = options
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._writer: Optional[tf.io.TFRecordWriter] = None
        self._path = ""
        self._bytes = 0
        self._sequence = 0
        os.makedirs(self.log_dir, exist_ok=True)

    def log(self, model_name: str, version: int, signature_name: str, inputs: Mapping[str, np.ndarray],
            outputs: Mapping[str, np.ndarray]) -> bool:
        """Log this answered request with probability `sampling_rate`; True when it was logged."""
        if self._rng.random() >= self.options.sampling_rate:
            return False
        record = prediction_log_pb2.PredictionLog()
        metadata = record.log_metadata
        metadata.model_spec.name = model_name
        metadata.model_spec.version.value = version
        metadata.model_spec.signature_name = signature_name
        metadata.sampling_config.sampling_rate = self.options.sampling_rate
        metadata.saved_model_tags.append(SERVING_TAG)
        metadata.timestamp_secs = int(self._clock())
        request, response = record.predict_log.request, record.predict_log.response
        request.model_spec.CopyFrom(metadata.model_spec)
        response.model_spec.CopyFrom(metadata.model_spec)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        serialized = record.SerializeToString()
        with self._lock:
            self._write(serialized)
        return True

    def _write(self, serialized: bytes) -> None:
        if self._writer is None or self._bytes >= self.options.max_file_mb * _MIB:
            self._rotate()
        assert self._writer is not None
        self._writer.write(serialized)
        # Flushed at once: a reader (`mammo-tfx monitor`) sees every logged request, a crash loses none.
        self._writer.flush()
        self._bytes += len(serialized)

    def _rotate(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._path = os.path.join(self.log_dir, f"{LOG_FILE_PREFIX}-{stamp}-{os.getpid()}-{self._sequence:05d}"
                                                f"{LOG_FILE_SUFFIX}")
        self._writer = tf.io.TFRecordWriter(self._path)
        self._bytes = 0
        if self.options.max_files:
            for old in list_log_files(self.log_dir)[:-self.options.max_files]:
                os.remove(old)
                logger.info("request log %s deleted (request_log.max_files=%d)", old, self.options.max_files)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def list_log_files(log_dir: str) -> List[str]:
    """The request log files of `log_dir`, oldest first (their names start with the UTC time they were opened)."""
    if not tf.io.gfile.isdir(log_dir):
        return []
    return sorted(os.path.join(log_dir, name) for name in tf.io.gfile.listdir(log_dir)
                  if name.startswith(LOG_FILE_PREFIX) and name.endswith(LOG_FILE_SUFFIX))


def read_request_logs(log_dir: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """Every PredictionLog of `log_dir`, oldest file first. A file's unfinished last record (a server writing it
    right now) ends that file's reading instead of failing."""
    for path in list_log_files(log_dir):
        try:
            for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
                yield prediction_log_pb2.PredictionLog.FromString(serialized)
        except tf.errors.DataLossError:
            logger.info("request log %s ends in an unfinished record; read up to it", path)
