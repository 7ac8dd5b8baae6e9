"""TF Serving's JSON encoding of predict requests and responses (row and columnar formats).

Request: `{"signature_name": optional, "instances": [...]}` (row: one entry per batch item; bare values for a
single-input signature, objects keyed by input name otherwise) or `{"inputs": ...}` (columnar: one value per
input, batch dimension included). Binary values are `{"b64": "..."}`. Response: `{"predictions": [...]}` for
row requests (bare values for one output, objects for several) or `{"outputs": ...}` for columnar ones.
Outputs whose name ends in `_bytes` go back as `{"b64": ...}`.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any, Callable, Dict, List, Mapping

import numpy as np
import tensorflow as tf

from mammo_tfx.serving.errors import InvalidArgument
from mammo_tfx.serving.signatures import check_input_keys


@dataclasses.dataclass(frozen=True)
class PredictJson:
    """A parsed predict body before its values are typed by the signature."""

    signature_name: str
    row_format: bool
    payload: Any  # the "instances" list or the "inputs" value


def parse_predict_body(body: bytes) -> PredictJson:
    """Parse the JSON envelope; value checks need the signature and happen in `decode_inputs`."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgument(f"JSON Parse error: {error}") from error
    if not isinstance(document, dict):
        raise InvalidArgument("JSON Value: request body must be a JSON object")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise InvalidArgument("'signature_name' must be a string")
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise InvalidArgument("Not formatted correctly expecting only one of 'inputs' or 'instances' keys")
    if not has_instances and not has_inputs:
        raise InvalidArgument("Missing 'inputs' or 'instances' key")
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidArgument("'instances' must be a non-empty list")
        return PredictJson(signature_name, True, instances)
    return PredictJson(signature_name, False, document["inputs"])


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def decode_inputs(request: PredictJson, signature_name: str,
                  dtypes: Mapping[str, tf.dtypes.DType]) -> Dict[str, np.ndarray]:
    """Typed input arrays (batch first) for the signature whose input dtypes are `dtypes`; the image limits are
    checked later, on the arrays, for every transport (servables.py)."""
    if request.row_format:
        columns = _columns_from_instances(request.payload, dtypes)
    elif _is_named(request.payload):
        columns = dict(request.payload)
    else:
        columns = {_only_input(dtypes): request.payload}
    check_input_keys(signature_name, dtypes, columns)
    return {key: _to_array(value, dtypes[key], key) for key, value in columns.items()}


def _only_input(dtypes: Mapping[str, tf.dtypes.DType]) -> str:
    if len(dtypes) != 1:
        raise InvalidArgument(f"the signature has {len(dtypes)} inputs {sorted(dtypes)}; name them "
                              "(objects keyed by input name)")
    return next(iter(dtypes))


def _columns_from_instances(instances: List[Any], dtypes: Mapping[str, tf.dtypes.DType]) -> Dict[str, List[Any]]:
    named = [_is_named(instance) for instance in instances]
    if not any(named):
        return {_only_input(dtypes): instances}
    if not all(named):
        raise InvalidArgument("'instances' mixes objects keyed by input name with bare values")
    keys = set(instances[0])
    for index, instance in enumerate(instances):
        if set(instance) != keys:
            raise InvalidArgument(f"instance {index} has inputs {sorted(instance)}, instance 0 has {sorted(keys)}; "
                                  "every instance must name the same inputs")
    return {key: [instance[key] for instance in instances] for key in keys}


def _to_array(value: Any, dtype: tf.dtypes.DType, key: str) -> np.ndarray:
    if dtype == tf.string:
        return _to_string_array(value, key)
    not_numbers = InvalidArgument(f"input '{key}' expects {dtype.name} numbers, got strings, objects or ragged lists")
    if _contains_dict_or_str(value):
        raise not_numbers
    try:
        array = np.asarray(value)
    except ValueError as error:  # numpy refuses ragged nesting
        raise not_numbers from error
    if array.dtype == object or array.dtype.kind in "USV":
        raise not_numbers
    try:
        return array.astype(dtype.as_numpy_dtype)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"input '{key}' cannot be converted to {dtype.name}: {error}") from error


def _contains_dict_or_str(value: Any) -> bool:
    if isinstance(value, (dict, str)):
        return True
    if isinstance(value, list):
        return any(_contains_dict_or_str(item) for item in value)
    return False


def _to_string_array(value: Any, key: str) -> np.ndarray:
    leaves = _bytes_tree(value, key)
    try:
        array = np.array(leaves, dtype=object)
    except ValueError as error:
        raise InvalidArgument(f"input '{key}' is a ragged list: {error}") from error
    # With dtype=object numpy may also build an array of lists from ragged nesting instead of failing.
    if not all(isinstance(item, bytes) for item in array.flat):
        raise InvalidArgument(f"input '{key}' is a ragged list")
    return array


def _bytes_tree(value: Any, key: str) -> Any:
    """Replace b64 objects by their bytes and text by its UTF-8, keeping the list nesting."""
    if isinstance(value, list):
        return [_bytes_tree(item, key) for item in value]
    if _is_b64(value):
        encoded = value["b64"]
        if not isinstance(encoded, str):
            raise InvalidArgument(f"input '{key}': 'b64' must hold a base64 string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidArgument(f"input '{key}': invalid base64: {error}") from error
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidArgument(f"input '{key}' expects strings or {{\"b64\": ...}} objects, got {type(value).__name__}")


def encode_outputs(outputs: Mapping[str, np.ndarray], row_format: bool) -> Dict[str, Any]:
    """The response document for the outputs of one predict call."""
    if not row_format:
        encoded = {name: _to_json(array, name) for name, array in outputs.items()}
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}
    batch_sizes = {name: (array.shape[0] if array.ndim else None) for name, array in outputs.items()}
    if len(set(batch_sizes.values())) != 1 or None in batch_sizes.values():
        raise InvalidArgument(f"outputs have no common batch size {batch_sizes}; use the columnar 'inputs' format")
    batch_size = next(iter(batch_sizes.values()))
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return {"predictions": [_to_json(array[index], name) for index in range(batch_size)]}
    return {"predictions": [{name: _to_json(array[index], name) for name, array in outputs.items()}
                            for index in range(batch_size)]}


def _to_json(value: Any, name: str) -> Any:
    leaf_fn = _b64_leaf if name.endswith("_bytes") else _text_leaf
    # A string tensor's item is a bytes object; numpy's fixed-width bytes dtype would drop trailing NULs.
    if isinstance(value, bytes):
        return leaf_fn(value)
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind == "S":
        return _map_nested(array.tolist(), leaf_fn)
    # float32 values become the float64 of the same value, so a client casting back gets identical numbers;
    # NaN and infinities are written as NaN/Infinity tokens, which TF Serving also emits.
    return array.tolist()


def _b64_leaf(item: bytes) -> Dict[str, str]:
    return {"b64": base64.b64encode(item).decode("ascii")}


def _text_leaf(item: bytes) -> str:
    return item.decode("utf-8", errors="replace")


def _map_nested(value: Any, leaf_fn: Callable[[bytes], Any]) -> Any:
    if isinstance(value, list):
        return [_map_nested(item, leaf_fn) for item in value]
    return leaf_fn(value)
