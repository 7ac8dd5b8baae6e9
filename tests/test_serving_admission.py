"""The built-in server's cap on requests in flight (429 + Retry-After; gRPC RESOURCE_EXHAUSTED) and its per-request
deadline (504; gRPC DEADLINE_EXCEEDED), shared by REST and gRPC, against a real SavedModel whose predict call waits on a FIFO the test opens: a model call of controlled length without CPU."""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import time
import urllib.parse
from typing import Callable

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,  # noqa: E402
                                     prediction_service_pb2_grpc)

from mammo_tfx.names import DEFAULT_SIGNATURE, IMAGE_BYTES_INPUT  # noqa: E402
from mammo_tfx.serving.limits import RequestLimits  # noqa: E402
from mammo_tfx.serving.rest_client import images_request, model_path  # noqa: E402
from mammo_tfx.serving.server import ModelServer, model_server_command  # noqa: E402
from mammo_tfx.serving.tiny_model import synthetic_png  # noqa: E402

MODEL = "mammo"
UNGATED = "ungated"
WAIT_S = 30.0  # bound of every wait below; reached only if the server misbehaves


class _GatedModel(tf.Module):
    """`serving_default` returns only once the FIFO at `gate` has been opened for reading (writing to a FIFO blocks
    in open() until a reader comes); `ungated` answers at once."""

    def __init__(self, gate: str) -> None:
        super().__init__()
        self._gate = gate

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
    def gated(self, image_bytes: tf.Tensor) -> dict:
        with tf.control_dependencies([tf.io.write_file(self._gate, "")]):
            return {"probability": tf.fill(tf.shape(image_bytes), 0.5)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
    def ungated(self, image_bytes: tf.Tensor) -> dict:
        return {"probability": tf.fill(tf.shape(image_bytes), 0.25)}


@pytest.fixture()
def gated_base(tmp_path):
    gate = tmp_path / "gate.fifo"
    os.mkfifo(gate)
    module = _GatedModel(str(gate))
    base = tmp_path / MODEL
    tf.saved_model.save(module, str(base / "1"), signatures={DEFAULT_SIGNATURE: module.gated, UNGATED: module.ungated})
    yield base, gate
    _open_gate(gate)  # never leave a model call (and its worker thread) waiting


def _open_gate(gate) -> None:
    """Release every call waiting on the gate: a reader's open() wakes the writers blocked in theirs, and they
    write nothing, so the reader may go at once."""
    os.close(os.open(gate, os.O_RDONLY | os.O_NONBLOCK))


def _open_gate_until(gate, done: Callable[[], bool]) -> None:
    """Open the gate again and again (the waiting call may not have reached it yet) until `done()`, at most WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        _open_gate(gate)
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"still not done {WAIT_S} s after opening the gate")


def _post(url: str, signature: str = DEFAULT_SIGNATURE) -> tuple[int, dict, dict]:
    """One predict request on a fresh connection: status, headers, JSON body."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT_S)
    try:
        body = json.dumps(images_request([synthetic_png(1)], signature_name=signature)).encode()
        connection.request("POST", model_path(MODEL) + ":predict", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def _status(url: str) -> int:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT_S)
    try:
        connection.request("GET", model_path(MODEL))
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.e2e
def test_a_request_beyond_max_in_flight_gets_429_with_retry_after_and_the_admitted_one_completes(gated_base):
    base, gate = gated_base
    limits = RequestLimits(max_in_flight=1, request_timeout_s=WAIT_S)
    with ModelServer(str(base), MODEL, limits=limits, poll_interval_s=60) as server, \
            concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.submit(_post, server.url), pool.submit(_post, server.url)
        # Whichever arrived second is refused at once while the other waits inside the model.
        done, waiting = concurrent.futures.wait([first, second], timeout=WAIT_S,
                                                return_when=concurrent.futures.FIRST_COMPLETED)
        assert len(done) == 1 and len(waiting) == 1
        refused, admitted = done.pop().result(), waiting.pop()
        assert refused[0] == 429
        assert refused[1]["Retry-After"] == "1"  # the value README.md and docs/input-limits.md promise
        assert set(refused[2]) == {"error"} and "serving.max_in_flight" in refused[2]["error"]
        assert _status(server.url) == 200  # status and readiness probes are never refused
        _open_gate_until(gate, admitted.done)
        status, _, body = admitted.result()
        assert status == 200 and body == {"predictions": [0.5]}
        assert _post(server.url, UNGATED)[0] == 200  # the slot is free again


@pytest.mark.e2e
def test_a_request_past_its_deadline_gets_504_and_keeps_its_slot_until_the_model_returns(gated_base):
    base, gate = gated_base
    limits = RequestLimits(max_in_flight=1, request_timeout_s=0.5)
    with ModelServer(str(base), MODEL, limits=limits, poll_interval_s=60) as server:
        started = time.monotonic()
        status, _, body = _post(server.url)
        assert status == 504 and "serving.request_timeout_s" in body["error"]
        assert time.monotonic() - started < WAIT_S
        # The abandoned model call still runs: its slot is taken, so the next request is refused, not queued.
        assert _post(server.url, UNGATED)[0] == 429
        answers = []
        _open_gate_until(gate, lambda: answers.append(_post(server.url, UNGATED)) or answers[-1][0] != 429)
        assert answers[-1][0] == 200 and answers[-1][2] == {"predictions": [0.25]}


def _grpc_predict(target: str, signature: str = DEFAULT_SIGNATURE) -> tuple[grpc.StatusCode, float]:
    """One gRPC predict call: its status code and, if OK, the first probability (else NaN)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.inputs[IMAGE_BYTES_INPUT].CopyFrom(tf.make_tensor_proto([synthetic_png(1)], dtype=tf.string))
    with grpc.insecure_channel(target) as channel:
        try:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=WAIT_S)
        except grpc.RpcError as error:
            return error.code(), float("nan")
    return grpc.StatusCode.OK, float(tf.make_ndarray(response.outputs["probability"])[0])


def _grpc_status(target: str) -> int:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    with grpc.insecure_channel(target) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=WAIT_S)
    return len(response.model_version_status)


@pytest.mark.e2e
def test_rest_and_grpc_share_the_in_flight_cap_and_grpc_is_refused_with_resource_exhausted(gated_base):
    base, gate = gated_base
    limits = RequestLimits(max_in_flight=1, request_timeout_s=WAIT_S)
    with ModelServer(str(base), MODEL, limits=limits, poll_interval_s=60, grpc_port=0) as server, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        admitted = pool.submit(_post, server.url)
        # Until the REST request holds the only slot, ungated gRPC calls are answered; then they are refused.
        deadline = time.monotonic() + WAIT_S
        while _grpc_predict(server.grpc_target, UNGATED)[0] == grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "the REST request never took the slot"
            time.sleep(0.05)
        assert _grpc_predict(server.grpc_target, UNGATED)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _grpc_status(server.grpc_target) == 1  # status calls are never refused
        _open_gate_until(gate, admitted.done)
        assert admitted.result()[0] == 200
        assert _grpc_predict(server.grpc_target, UNGATED) == (grpc.StatusCode.OK, 0.25)


@pytest.mark.e2e
def test_a_grpc_call_past_its_deadline_gets_deadline_exceeded_and_keeps_its_slot(gated_base):
    base, gate = gated_base
    limits = RequestLimits(max_in_flight=1, request_timeout_s=0.5)
    with ModelServer(str(base), MODEL, limits=limits, poll_interval_s=60, grpc_port=0) as server:
        assert _grpc_predict(server.grpc_target)[0] == grpc.StatusCode.DEADLINE_EXCEEDED
        # The abandoned model call still holds the slot, for REST as for gRPC.
        assert _post(server.url, UNGATED)[0] == 429
        answers = []
        _open_gate_until(gate, lambda: answers.append(_grpc_predict(server.grpc_target, UNGATED))
                         or answers[-1][0] != grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert answers[-1] == (grpc.StatusCode.OK, 0.25)


def test_tensorflow_model_server_gets_the_same_deadline_and_concurrency():
    command = model_server_command("tms", "/models/mammo", MODEL, 8501, 8500,
                                   RequestLimits(max_in_flight=6, request_timeout_s=12.5))
    assert command[-2:] == ["--rest_api_num_threads=6", "--rest_api_timeout_in_ms=12500"]
