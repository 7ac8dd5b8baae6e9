"""The built-in server's REST API against a tiny real SavedModel: status, metadata, predict, errors, load."""
import base64
import concurrent.futures
import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mammo_tfx.serving.limits import ImageLimits, RequestLimits  # noqa: E402
from mammo_tfx.serving.rest_client import RestClient, images_request, model_path  # noqa: E402
from mammo_tfx.serving.server import ModelServer  # noqa: E402
from mammo_tfx.serving.tiny_model import export_tiny_model, synthetic_png  # noqa: E402

pytestmark = pytest.mark.e2e  # every test calls a served SavedModel

MODEL = "mammo"
VERSION = 1700000000
# max_in_flight admits the 8 concurrent clients of the concurrency test; beyond it see test_serving_admission.py.
LIMITS = RequestLimits(max_body_bytes=256 * 1024, max_in_flight=8,
                       image=ImageLimits(max_bytes=64 * 1024, max_pixels=300 * 300, max_side=400))


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / MODEL
    export_tiny_model(str(base / str(VERSION)))
    return base


@pytest.fixture(scope="module")
def server(model_base):
    with ModelServer(str(model_base), MODEL, limits=LIMITS, poll_interval_s=60) as running:
        yield running


@pytest.fixture(scope="module")
def in_process(model_base):
    """The same SavedModel called directly: the reference every served value is checked against."""
    return tf.saved_model.load(str(model_base / str(VERSION)))


@pytest.fixture()
def client(server):
    with RestClient(server.url) as rest:
        yield rest


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def expected_probabilities(in_process, images):
    outputs = in_process.signatures["serving_default"](image_bytes=tf.constant(images))
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def test_status_lists_the_served_version(client):
    status, body = client.get(model_path(MODEL))
    assert status == 200
    assert body == {"model_version_status": [
        {"version": str(VERSION), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get(model_path(MODEL, VERSION)) == (status, body)


def test_metadata_describes_every_signature_in_tf_serving_json(client):
    status, body = client.get(model_path(MODEL) + "/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": str(VERSION)}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_examples", "heatmap"} <= set(signatures)
    image_input = signatures["serving_default"]["inputs"]["image_bytes"]
    assert image_input["dtype"] == "DT_STRING"
    assert image_input["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert image_input["name"].startswith("serving_default_image_bytes")
    assert set(signatures["serving_default"]["outputs"]) == {"probability", "probability_single"}
    assert signatures["serving_examples"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert signatures["heatmap"]["outputs"]["heatmap"]["dtype"] == "DT_FLOAT"
    assert signatures["heatmap"]["method_name"] == "tensorflow/serving/predict"
    versioned = client.get(model_path(MODEL, VERSION) + "/metadata")
    assert versioned == (status, body)


def test_predict_row_format_matches_the_model_in_process(client, in_process):
    images = [synthetic_png(seed) for seed in range(3)]
    status, body = client.predict(MODEL, images_request(images))
    assert status == 200
    expected = expected_probabilities(in_process, images)
    assert len(body["predictions"]) == 3
    for index, prediction in enumerate(body["predictions"]):
        assert set(prediction) == {"probability", "probability_single"}
        assert np.float32(prediction["probability"]) == expected["probability"][index]
        assert np.float32(prediction["probability_single"]) == expected["probability_single"][index]


def test_predict_named_instances_8_bit_png_and_versions_path(client, in_process):
    images = [synthetic_png(seed, bit_depth=8) for seed in (11, 12)]
    document = {"signature_name": "serving_default", "instances": [{"image_bytes": b64(image)} for image in images]}
    status, body = client.predict(MODEL, document, version=VERSION)
    assert status == 200
    expected = expected_probabilities(in_process, images)
    np.testing.assert_array_equal(np.float32([p["probability"] for p in body["predictions"]]),
                                  expected["probability"])


def test_predict_columnar_format_returns_outputs(client, in_process):
    images = [synthetic_png(seed) for seed in (21, 22)]
    status, body = client.predict(MODEL, {"inputs": {"image_bytes": [b64(image) for image in images]}})
    assert status == 200
    expected = expected_probabilities(in_process, images)
    assert set(body["outputs"]) == {"probability", "probability_single"}
    np.testing.assert_array_equal(np.float32(body["outputs"]["probability_single"]), expected["probability_single"])
    bare_status, bare_body = client.predict(MODEL, {"inputs": [b64(image) for image in images]})
    assert (bare_status, bare_body) == (status, body)


def test_single_output_signature_returns_bare_values(client, in_process):
    images = [synthetic_png(seed, height=32, width=24) for seed in (31, 32)]
    status, body = client.predict(MODEL, images_request(images, signature_name="heatmap"))
    assert status == 200
    expected = in_process.signatures["heatmap"](image_bytes=tf.constant(images))["heatmap"].numpy()
    assert expected.shape == (2, 4, 3)
    np.testing.assert_array_equal(np.float32(body["predictions"]), expected)


def test_examples_signature_takes_serialized_tf_examples(client, in_process):
    image = synthetic_png(41)
    example = tf.train.Example(features=tf.train.Features(feature={
        "image_png": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString()
    status, body = client.predict(MODEL, {"signature_name": "serving_examples", "instances": [b64(example)]})
    assert status == 200
    expected = expected_probabilities(in_process, [image])
    assert np.float32(body["predictions"][0]["probability"]) == expected["probability"][0]


def _png_of_size(height: int, width: int) -> bytes:
    return tf.io.encode_png(tf.zeros([height, width, 1], tf.uint8)).numpy()


def _example_body(image: bytes) -> bytes:
    example = tf.train.Example(features=tf.train.Features(feature={
        "image_png": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString()
    return json.dumps({"signature_name": "serving_examples", "instances": [b64(example)]}).encode()


BAD_REQUESTS = [
    # (what is wrong, method, path, body, expected status, words the error message contains)
    ("malformed JSON", "POST", model_path(MODEL) + ":predict", b'{"instances": [', 400, "JSON"),
    ("not an object", "POST", model_path(MODEL) + ":predict", b"[1, 2]", 400, "object"),
    ("no instances or inputs", "POST", model_path(MODEL) + ":predict", b"{}", 400, "Missing"),
    ("both instances and inputs", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": ["a"], "inputs": ["a"]}).encode(), 400, "only one"),
    ("unknown signature", "POST", model_path(MODEL) + ":predict",
     json.dumps({"signature_name": "nope", "instances": [b64(b"x")]}).encode(), 400, "nope"),
    ("undecodable image", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [b64(b"this is not a png")]}).encode(), 400, "decoded"),
    ("truncated PNG", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [b64(_png_of_size(40, 40)[:60])]}).encode(), 400, "Invalid PNG data"),
    ("image over the pixel limit", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [b64(_png_of_size(400, 300))]}).encode(), 400, "serving.image.max_pixels=90000"),
    ("image over the side limit", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [b64(_png_of_size(10, 500))]}).encode(), 400, "serving.image.max_side=400"),
    ("image over the byte limit", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [b64(b"\x89PNG" + bytes(70 * 1024))]}).encode(), 400, "serving.image.max_bytes"),
    ("empty image", "POST", model_path(MODEL) + ":predict", json.dumps({"instances": [b64(b"")]}).encode(), 400,
     "empty"),
    ("example image over the pixel limit", "POST", model_path(MODEL) + ":predict", _example_body(
        _png_of_size(400, 300)), 400, "serving.image.max_pixels"),
    ("example image not an image", "POST", model_path(MODEL) + ":predict", _example_body(b"GIF89a"), 400,
     "decoded"),
    ("example without an image", "POST", model_path(MODEL) + ":predict", json.dumps(
        {"signature_name": "serving_examples", "instances": [b64(tf.train.Example().SerializeToString())]}).encode(),
     400, "no 'image_png'"),
    ("not a serialized example", "POST", model_path(MODEL) + ":predict", json.dumps(
        {"signature_name": "serving_examples", "instances": [b64(b"\xff\xff\xff")]}).encode(), 400, "tf.Example"),
    ("invalid base64", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [{"b64": "***"}]}).encode(), 400, "base64"),
    ("number for a string input", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [3.5]}).encode(), 400, "b64"),
    ("missing input", "POST", model_path(MODEL) + ":predict",
     json.dumps({"inputs": {"other": [b64(b"x")]}}).encode(), 400, "missing ['image_bytes']"),
    ("extra input", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [{"image_bytes": b64(b"x"), "age": 50}]}).encode(), 400, "unexpected ['age']"),
    ("instances naming different inputs", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [{"image_bytes": b64(b"x")}, {"image": b64(b"x")}]}).encode(), 400, "same inputs"),
    ("body over the limit", "POST", model_path(MODEL) + ":predict",
     json.dumps({"instances": [b64(bytes(300 * 1024))]}).encode(), 413, "exceeds"),
    ("empty instances", "POST", model_path(MODEL) + ":predict", json.dumps({"instances": []}).encode(), 400,
     "non-empty"),
    ("unknown model", "POST", model_path("other") + ":predict",
     json.dumps({"instances": [b64(b"x")]}).encode(), 404, "other"),
    ("unknown version", "POST", model_path(MODEL, 7) + ":predict",
     json.dumps({"instances": [b64(b"x")]}).encode(), 404, "7"),
    ("status of unknown model", "GET", model_path("other"), None, 404, "other"),
    ("status of unknown version", "GET", model_path(MODEL, 7), None, 404, "version 7"),
    ("metadata of unknown version", "GET", model_path(MODEL, 7) + "/metadata", None, 404, "7"),
    ("malformed path", "GET", "/v1/modelz", None, 400, "Malformed"),
    ("classify is not offered", "POST", model_path(MODEL) + ":classify", b"{}", 501, "predict"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_gets_error_json_and_server_keeps_serving(client, in_process, case):
    _, method, path, body, expected_status, words = case
    status, document = client.request(method, path, body)
    assert status == expected_status
    assert set(document) == {"error"} and words in document["error"]
    image = synthetic_png(51)
    status, after = client.predict(MODEL, images_request([image]))
    assert status == 200
    assert np.float32(after["predictions"][0]["probability"]) == expected_probabilities(in_process, [image])[
        "probability"][0]


def test_32_concurrent_requests_are_all_answered_correctly(server, in_process):
    images = [synthetic_png(100 + index, height=32 + index % 5, width=24) for index in range(32)]
    expected = expected_probabilities(in_process, images)["probability"]

    def predict_one(index):
        with RestClient(server.url) as rest:
            return rest.predict(MODEL, images_request([images[index]]))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(predict_one, range(32)))
    assert [status for status, _ in answers] == [200] * 32
    served = np.float32([body["predictions"][0]["probability"] for _, body in answers])
    np.testing.assert_array_equal(served, expected)
