"""JSON documents the evaluation writes (gate results, model card) are strict JSON."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Tuple

import tensorflow as tf


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats as None (JSON has no NaN/Infinity: a one-class slice has NaN rates, a gate
    whose value is missing a margin of -inf) and mapping keys as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_document(document: Dict[str, Any], directory: str, file_name: str) -> str:
    """Writes `<directory>/<file_name>` as indented strict JSON (json_safe); its path."""
    path = os.path.join(directory, file_name)
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(json_safe(document), indent=2, sort_keys=True))
    return path


def read_document(path: str, file_name: str) -> Tuple[Dict[str, Any], str]:
    """The JSON document at `path`, or at `<path>/<file_name>` when `path` is a directory; and its directory."""
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, file_name)
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle), os.path.dirname(path)
