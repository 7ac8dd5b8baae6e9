"""The built-in server's gRPC API (TF Serving's PredictionService and ModelService) against a tiny real SavedModel:
the same answers as its REST API for the same input, TF Serving's status codes for bad requests, and a server that
stays up after them; and a real whole-image export's signatures (serving_exam included) served through gRPC."""
import base64
import os
import threading

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,  # noqa: E402
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from mammo_tfx.names import (BREAST_ID_INPUT, DEFAULT_SIGNATURE, EXAM_SIGNATURE, EXAMPLES_INPUT,  # noqa: E402
                             EXAMPLES_SIGNATURE, HEATMAP_SIGNATURE, IMAGE_BYTES_INPUT)
from mammo_tfx.serving.limits import ImageLimits, RequestLimits  # noqa: E402
from mammo_tfx.serving.rest_client import RestClient, images_request, model_path  # noqa: E402
from mammo_tfx.serving.server import ModelServer  # noqa: E402
from mammo_tfx.serving.tiny_model import export_tiny_model, synthetic_png  # noqa: E402
from tests.conftest import (encode_png16, export_untrained_whole_image_model, toy_whole_image,  # noqa: E402
                            whole_image_example)

pytestmark = pytest.mark.e2e  # every test calls a served SavedModel

MODEL = "mammo"
VERSION = 1700000000
MAX_MESSAGE_BYTES = 256 * 1024
LIMITS = RequestLimits(max_body_bytes=MAX_MESSAGE_BYTES, max_in_flight=4,
                       image=ImageLimits(max_bytes=64 * 1024, max_pixels=300 * 300, max_side=400))
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / MODEL
    export_tiny_model(str(base / str(VERSION)))
    with ModelServer(str(base), MODEL, limits=LIMITS, poll_interval_s=60, grpc_port=0) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    # The client may send more than the server accepts, so the server's own limit is what refuses oversize input.
    options = [("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(server.grpc_target, options=options) as opened:
        yield opened


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture()
def rest(server):
    with RestClient(server.url) as client:
        yield client


def predict_request(images, signature_name="", model=MODEL, version=None, key="image_bytes", output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[key].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    request.output_filter.extend(output_filter)
    return request


def outputs_of(response):
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def status_code(call, request):
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=TIMEOUT_S)
    return raised.value.code(), raised.value.details()


def test_predict_answers_the_numbers_rest_answers(predictions, rest):
    images = [synthetic_png(1), synthetic_png(2, bit_depth=8)]
    response = predictions.Predict(predict_request(images), timeout=TIMEOUT_S)
    assert response.model_spec.name == MODEL and response.model_spec.version.value == VERSION
    assert response.model_spec.signature_name == "serving_default"
    outputs = outputs_of(response)
    status, body = rest.predict(MODEL, images_request(images))
    assert status == 200
    for name in ("probability", "probability_single"):
        # REST writes float32 values as the float64 of the same value, so casting back is exact.
        from_rest = np.array([row[name] for row in body["predictions"]], dtype=np.float32)
        assert outputs[name].dtype == np.float32
        np.testing.assert_array_equal(outputs[name], from_rest)


def test_predict_serves_other_signatures_versions_and_output_filters(predictions, rest):
    image = synthetic_png(3)
    response = predictions.Predict(predict_request([image], "heatmap", version=VERSION), timeout=TIMEOUT_S)
    heatmap = outputs_of(response)["heatmap"]
    status, body = rest.post_json(model_path(MODEL, VERSION) + ":predict",
                                  {"signature_name": "heatmap", "instances": [{"b64": base64.b64encode(image).decode()}]})
    assert status == 200
    np.testing.assert_array_equal(heatmap, np.array(body["predictions"], dtype=np.float32))
    filtered = predictions.Predict(predict_request([image], output_filter=["probability"]), timeout=TIMEOUT_S)
    assert list(filtered.outputs) == ["probability"]


def test_model_status_and_metadata_match_rest(predictions, models, rest):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    status = models.GetModelStatus(request, timeout=TIMEOUT_S)
    as_rest = json_format.MessageToDict(status, preserving_proto_field_name=True, including_default_value_fields=True)
    rest_status = rest.get(model_path(MODEL))
    assert rest_status[0] == 200
    # The proto's int64 version prints as a string and the enums by name, as TF Serving's REST status does.
    assert as_rest == rest_status[1]

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    metadata = predictions.GetModelMetadata(request, timeout=TIMEOUT_S)
    assert metadata.model_spec.name == MODEL and metadata.model_spec.version.value == VERSION
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signature_map)
    rest_metadata = rest.get(model_path(MODEL) + "/metadata")[1]["metadata"]["signature_def"]
    assert json_format.MessageToDict(signature_map, including_default_value_fields=True,
                                     preserving_proto_field_name=True) == rest_metadata
    assert {"serving_default", "serving_examples", "heatmap"} <= set(signature_map.signature_def)


def flat_png(height, width):
    """A black PNG: a few hundred bytes however many pixels it has."""
    return tf.io.encode_png(tf.zeros([height, width, 1], tf.uint8)).numpy()


def _bad_predicts():
    good = [synthetic_png(4)]
    float_input = predict_request(good)
    float_input.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    label = predict_request(good)
    label.model_spec.version_label = "stable"
    return {
        "not an image": (predict_request([b"GIF89a not an image"]), grpc.StatusCode.INVALID_ARGUMENT, "cannot be decoded"),
        "image over the limit": (predict_request([flat_png(320, 300)]), grpc.StatusCode.INVALID_ARGUMENT,
                                 "serving.image.max_pixels"),
        "numbers for images": (float_input, grpc.StatusCode.INVALID_ARGUMENT, "byte strings"),
        "wrong input key": (predict_request(good, key="pixels"), grpc.StatusCode.INVALID_ARGUMENT, "missing ['image_bytes']"),
        "unknown signature": (predict_request(good, "nope"), grpc.StatusCode.INVALID_ARGUMENT, '"nope" not found'),
        "unknown output": (predict_request(good, output_filter=["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        "unknown model": (predict_request(good, model="other"), grpc.StatusCode.NOT_FOUND, "Latest(other)"),
        "unknown version": (predict_request(good, version=1), grpc.StatusCode.NOT_FOUND, f"Specific({MODEL}, 1)"),
        "version label": (label, grpc.StatusCode.INVALID_ARGUMENT, "stable"),
        # Over the server's max_body_bytes: refused by gRPC before the message is parsed.
        "oversize": (predict_request([b"\0" * (MAX_MESSAGE_BYTES + 1)]), grpc.StatusCode.RESOURCE_EXHAUSTED,
                     "larger than max"),
    }


@pytest.mark.parametrize("case", sorted(_bad_predicts()))
def test_bad_predict_requests_get_tf_serving_status_codes_and_the_server_stays_up(predictions, case):
    request, code, detail = _bad_predicts()[case]
    got_code, got_detail = status_code(predictions.Predict, request)
    assert got_code == code, got_detail
    assert detail in got_detail
    # The next good request is answered.
    response = predictions.Predict(predict_request([synthetic_png(6)]), timeout=TIMEOUT_S)
    assert 0.0 <= outputs_of(response)["probability"][0] <= 1.0


def test_bad_status_and_metadata_requests_get_tf_serving_status_codes(predictions, models):
    unknown_version = get_model_status_pb2.GetModelStatusRequest()
    unknown_version.model_spec.name = MODEL
    unknown_version.model_spec.version.value = 1
    assert status_code(models.GetModelStatus, unknown_version)[0] == grpc.StatusCode.NOT_FOUND
    unknown_model = get_model_status_pb2.GetModelStatusRequest()
    unknown_model.model_spec.name = "other"
    assert status_code(models.GetModelStatus, unknown_model)[0] == grpc.StatusCode.NOT_FOUND

    no_field = get_model_metadata_pb2.GetModelMetadataRequest()
    no_field.model_spec.name = MODEL
    assert status_code(predictions.GetModelMetadata, no_field) == (
        grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
    other_field = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def", "graph"])
    other_field.model_spec.name = MODEL
    assert status_code(predictions.GetModelMetadata, other_field)[0] == grpc.StatusCode.INVALID_ARGUMENT
    unknown_model = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    unknown_model.model_spec.name = "other"
    assert status_code(predictions.GetModelMetadata, unknown_model)[0] == grpc.StatusCode.NOT_FOUND

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    assert status_code(predictions.Classify, classify)[0] == grpc.StatusCode.UNIMPLEMENTED


def _watchers():
    return sum(thread.name == "model-version-watcher" for thread in threading.enumerate())


def test_a_grpc_port_in_use_fails_the_start_and_leaves_nothing_running(server, models):
    watchers = _watchers()
    taken = ModelServer(str(server.repository.base_path), MODEL, limits=LIMITS, poll_interval_s=60,
                        grpc_port=server.grpc_port)
    with pytest.raises(OSError, match="cannot listen for gRPC"):
        taken.start()
    assert _watchers() == watchers
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    assert len(models.GetModelStatus(request, timeout=TIMEOUT_S).model_version_status) == 1


# A real whole-image export (trainer_module's export of tiny untrained models over a real Transform graph) at the
# demo profile's working size, served with the production image limits: every signature TF Serving clients call.
REAL_WORKING_SIZE = (288, 224)


@pytest.fixture(scope="module")
def real_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_export")
    export_dir = root / "serving" / MODEL / "1"
    export_untrained_whole_image_model(str(root), str(export_dir), REAL_WORKING_SIZE)
    with ModelServer(str(export_dir.parent), MODEL, poll_interval_s=60, grpc_port=0) as running, \
            grpc.insecure_channel(running.grpc_target,
                                  options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)]) as opened:
        yield tf.saved_model.load(str(export_dir)), prediction_service_pb2_grpc.PredictionServiceStub(opened)


def _real_request(signature_name, inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature_name
    for key, values in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
    return request


def test_grpc_serves_a_real_export_s_signatures_with_the_export_s_own_answers(real_export):
    loaded, stub = real_export
    rng = np.random.default_rng(21)
    # One exam: the CC and MLO views of a left and of a right breast (the right one malignant).
    images = [encode_png16(toy_whole_image(rng, malignant=index >= 2, rows=REAL_WORKING_SIZE[0],
                                           cols=REAL_WORKING_SIZE[1])) for index in range(4)]
    breasts = [b"left", b"left", b"right", b"right"]
    examples = [whole_image_example(np.asarray(tf.io.decode_png(image, dtype=tf.uint16))[..., 0], 0)
                .SerializeToString() for image in images]
    calls = {
        DEFAULT_SIGNATURE: {IMAGE_BYTES_INPUT: images},
        EXAMPLES_SIGNATURE: {EXAMPLES_INPUT: examples},
        EXAM_SIGNATURE: {IMAGE_BYTES_INPUT: images, BREAST_ID_INPUT: breasts},
        HEATMAP_SIGNATURE: {IMAGE_BYTES_INPUT: images},
    }
    served = {}
    for signature, inputs in calls.items():
        response = stub.Predict(_real_request(signature, inputs), timeout=TIMEOUT_S * 4)
        assert response.model_spec.signature_name == signature and response.model_spec.version.value == 1
        served[signature] = outputs_of(response)
        expected = loaded.signatures[signature](**{key: tf.constant(values) for key, values in inputs.items()})
        assert set(served[signature]) == set(expected), signature
        for name, tensor in expected.items():
            if tensor.dtype.is_floating:
                np.testing.assert_allclose(served[signature][name], tensor.numpy(), rtol=1e-6,
                                           err_msg=f"{signature} {name}")
            else:  # the exam's breast ids and the recall decisions
                np.testing.assert_array_equal(served[signature][name], tensor.numpy(), err_msg=f"{signature} {name}")
    for name in ("probability", "score", "probability_single"):
        np.testing.assert_array_equal(served[EXAMPLES_SIGNATURE][name], served[DEFAULT_SIGNATURE][name])
    assert served[HEATMAP_SIGNATURE]["heatmap"].shape[0] == len(images)
