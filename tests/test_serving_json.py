"""TF Serving's JSON tensor encoding for signatures the tiny model does not have (numeric, multi-input, bytes)."""
import base64
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mammo_tfx.serving.errors import InvalidArgument  # noqa: E402
from mammo_tfx.serving.json_tensors import decode_inputs, encode_outputs, parse_predict_body  # noqa: E402

TWO_INPUTS = {"pixels": tf.float32, "age": tf.int64}


def decode(body: bytes, dtypes=TWO_INPUTS):
    return decode_inputs(parse_predict_body(body), "serving_default", dtypes)


def test_named_row_instances_are_stacked_per_input_with_the_signature_dtypes():
    inputs = decode(b'{"instances": [{"pixels": [0.5, 1], "age": 50}, {"pixels": [2, 3.25], "age": 61}]}')
    assert inputs["pixels"].dtype == np.float32 and inputs["pixels"].tolist() == [[0.5, 1.0], [2.0, 3.25]]
    assert inputs["age"].dtype == np.int64 and inputs["age"].tolist() == [50, 61]


def test_columnar_inputs_keep_their_shape_and_allow_nan_tokens():
    inputs = decode(b'{"inputs": {"pixels": [[NaN, Infinity]], "age": [7]}}')
    assert np.isnan(inputs["pixels"][0, 0]) and np.isinf(inputs["pixels"][0, 1])
    assert inputs["age"].shape == (1,)


@pytest.mark.parametrize("body, words", [
    (b'{"instances": [{"pixels": [1, 2], "age": 1}, {"pixels": [1], "age": 2}]}', "ragged"),
    (b'{"instances": [{"pixels": ["a"], "age": 1}]}', "numbers"),
    (b'{"instances": [{"pixels": [null], "age": 1}]}', "numbers"),
    (b'{"instances": [[1, 2]]}', "name them"),
    (b'{"instances": [{"pixels": [1], "age": 1}, [1]]}', "mixes"),
    (b'{"signature_name": 3, "instances": [1]}', "signature_name"),
])
def test_inputs_that_do_not_fit_the_signature_are_invalid_arguments(body, words):
    with pytest.raises(InvalidArgument, match=words):
        decode(body)


def test_text_and_b64_values_of_string_inputs_become_bytes():
    inputs = decode(b'{"instances": ["caf\\u00e9", {"b64": "AAEC"}]}', {"text": tf.string})
    assert inputs["text"].tolist() == ["café".encode("utf-8"), b"\x00\x01\x02"]


def test_row_response_has_one_object_per_instance_and_b64_for_bytes_outputs():
    outputs = {"probability": np.float32([0.25, 0.75]), "mask_bytes": np.array([b"\x89PNG", b"\x00"], dtype=object),
               "label": np.array([b"benign", b"malignant"], dtype=object)}
    assert encode_outputs(outputs, row_format=True) == {"predictions": [
        {"probability": 0.25, "mask_bytes": {"b64": base64.b64encode(b"\x89PNG").decode()}, "label": "benign"},
        {"probability": 0.75, "mask_bytes": {"b64": "AA=="}, "label": "malignant"}]}


def test_columnar_response_with_one_output_is_the_bare_value():
    heatmaps = np.arange(8, dtype=np.float32).reshape(2, 2, 2) / 4
    assert encode_outputs({"heatmap": heatmaps}, row_format=False) == {"outputs": heatmaps.tolist()}
    assert encode_outputs({"heatmap": heatmaps}, row_format=True) == {"predictions": heatmaps.tolist()}


def test_row_response_needs_a_common_batch_size():
    with pytest.raises(InvalidArgument, match="batch size"):
        encode_outputs({"probability": np.float32([0.5, 0.5]), "threshold": np.float32(0.3)}, row_format=True)
    assert encode_outputs({"probability": np.float32([0.5]), "threshold": np.float32(0.25)}, row_format=False) == {
        "outputs": {"probability": [0.5], "threshold": 0.25}}
