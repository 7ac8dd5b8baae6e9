"""TF Serving warm-up files: written next to a SavedModel, replayed when a version loads.

TF Serving reads `<version>/assets.extra/tf_serving_warmup_requests`, a TFRecord file whose records are
serialized `PredictionLog` protos, and sends each logged request to the model before marking the version
AVAILABLE, so the first real request does not pay for graph tracing and kernel initialisation.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from mammo_tfx.names import DEFAULT_SIGNATURE, SERVING_EXTRAS_DIR, WARMUP_FILE
from mammo_tfx.serving.signatures import read_signature_defs

# TF Serving stops replaying after this many records; a longer file is not an error there either.
MAX_WARMUP_RECORDS = 1000

PredictFn = Callable[[str, Mapping[str, np.ndarray]], Dict[str, np.ndarray]]


def warmup_path(saved_model_dir: str) -> str:
    """Where TF Serving looks for the warm-up file of a version directory."""
    return os.path.join(saved_model_dir, SERVING_EXTRAS_DIR, WARMUP_FILE)


def _single_string_input(saved_model_dir: str, signature_name: str) -> str:
    signature_defs = read_signature_defs(saved_model_dir)
    if signature_name not in signature_defs:
        raise ValueError(f"{saved_model_dir} has no signature {signature_name!r} (has {sorted(signature_defs)})")
    inputs = signature_defs[signature_name].inputs
    string_inputs = [key for key, info in inputs.items() if info.dtype == types_pb2.DT_STRING]
    if len(inputs) != 1 or len(string_inputs) != 1:
        raise ValueError(f"signature {signature_name!r} must have exactly one string input to be warmed up with "
                         f"encoded images, has {sorted(inputs)}")
    return string_inputs[0]


def write_warmup_file(saved_model_dir: str, image_bytes_list: Sequence[bytes],
                      signature_name: str = DEFAULT_SIGNATURE) -> str:
    """Write one single-image predict request per encoded image into the SavedModel's warm-up file.

    The input key is taken from the signature (it must have exactly one string input). Returns the path.
    """
    if not image_bytes_list:
        raise ValueError("need at least one image to warm up with")
    input_key = _single_string_input(saved_model_dir, signature_name)
    path = warmup_path(saved_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for image_bytes in image_bytes_list:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature_name))
            request.inputs[input_key].CopyFrom(tf.make_tensor_proto([image_bytes], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(saved_model_dir: str) -> List[Tuple[str, Dict[str, np.ndarray]]]:
    """The (signature name, inputs) of each logged predict request; empty when the version has no file."""
    path = warmup_path(saved_model_dir)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        if index >= MAX_WARMUP_RECORDS:
            break
        log = prediction_log_pb2.PredictionLog.FromString(record)
        kind = log.WhichOneof("log_type")
        if kind != "predict_log":
            # Only predict requests are meaningful for these models; classify/regress logs would need the
            # Example-based APIs this server does not offer.
            raise ValueError(f"{path} record {index} is a {kind!r}, only predict_log warm-up is supported")
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        requests.append((request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs))
    return requests


def replay_warmup(saved_model_dir: str, predict: PredictFn) -> int:
    """Send every warm-up request to `predict`; any failure propagates (the version must not go live).

    Returns the number of requests replayed.
    """
    requests = read_warmup_requests(saved_model_dir)
    for signature_name, inputs in requests:
        predict(signature_name, inputs)
    return len(requests)
