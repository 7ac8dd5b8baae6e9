"""TF Serving's gRPC API for the built-in server: `PredictionService` (Predict, GetModelMetadata) and
`ModelService.GetModelStatus`, from the `tensorflow-serving-api` protos.

It shares the model lookup, version policy and image checks (servables.py) and the admission limiter with the REST
API; ServingErrors become the gRPC status named by their `code`, as in TF Serving (INVALID_ARGUMENT, NOT_FOUND,
RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ...). A message over `max_body_bytes` is refused by gRPC itself with
RESOURCE_EXHAUSTED before it is parsed. Classify, Regress and MultiInference answer UNIMPLEMENTED (the servicer
base classes' default).
"""
from __future__ import annotations

import concurrent.futures
import logging
from typing import Callable, Dict, Optional, Sequence, TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from mammo_tfx.names import DEFAULT_SIGNATURE
from mammo_tfx.serving.admission import InFlightLimiter
from mammo_tfx.serving.errors import InvalidArgument, ServingError
from mammo_tfx.serving.servables import Servables
from mammo_tfx.serving.signatures import signature_def_map

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# Responses (e.g. heatmaps of a batch) may exceed gRPC's 4 MB default as requests may; the same bound as the
# example client's.
MAX_SEND_MESSAGE_BYTES = 256 * 1024 * 1024
# gRPC threads beyond the predict slots, so status and metadata calls are answered while every slot is busy.
_PROBE_THREADS = 4
SIGNATURE_DEF_FIELD = "signature_def"


def _answer(context: grpc.ServicerContext, method: str, action: Callable[[], _T]) -> _T:
    """Run `action`; a ServingError aborts the call with its status code, anything else with INTERNAL."""
    try:
        return action()
    except ServingError as error:
        logger.info("%s -> %s: %s", method, error.code, error.message)
        context.abort(grpc.StatusCode[error.code], error.message)
    except Exception as error:  # noqa: BLE001 - one bad request must not take the server down
        logger.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
    raise AssertionError("context.abort returns only by raising")


def _name_and_version(spec: model_pb2.ModelSpec) -> tuple[str, Optional[int]]:
    if spec.WhichOneof("version_choice") == "version_label":
        # TF Serving answers the same for a label it has no mapping for; this server serves no labels.
        raise InvalidArgument(f"Unrecognized servable version label: {spec.version_label}")
    return spec.name, (spec.version.value if spec.HasField("version") else None)


def _to_array(key: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"input '{key}' is not a valid TensorProto: {error}") from error


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata of TF Serving's PredictionService."""

    def __init__(self, servables: Servables, limiter: InFlightLimiter) -> None:
        self.servables = servables
        self.limiter = limiter

    def Predict(self, request: predict_pb2.PredictRequest,  # noqa: N802 - gRPC's method names
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        def admitted() -> predict_pb2.PredictResponse:
            self.limiter.enter()
            return self.limiter.run(lambda: self._predict(request))

        return _answer(context, "Predict", admitted)

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        name, version = _name_and_version(request.model_spec)
        model = self.servables.model(name, version)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        inputs = {key: _to_array(key, proto) for key, proto in request.inputs.items()}
        outputs = self.servables.predict(model, signature_name, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature_name
        for key, array in _filtered(outputs, request.output_filter).items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
        return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return _answer(context, "GetModelMetadata", lambda: self._metadata(request))

    def _metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                  ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise InvalidArgument(f"Metadata field {field} is not supported")
        name, version = _name_and_version(request.model_spec)
        model = self.servables.model(name, version)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = model.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(model.signature_defs))
        return response


def _filtered(outputs: Dict[str, np.ndarray], output_filter: Sequence[str]) -> Dict[str, np.ndarray]:
    """The outputs named in a request's `output_filter` (all when it is empty)."""
    if not output_filter:
        return outputs
    unknown = sorted(set(output_filter) - set(outputs))
    if unknown:
        raise InvalidArgument(f"output tensor alias not found in signature: {', '.join(unknown)}; "
                              f"outputs are {sorted(outputs)}")
    return {key: outputs[key] for key in output_filter}


class ModelStatusServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus of TF Serving's ModelService (HandleReloadConfigRequest answers UNIMPLEMENTED)."""

    def __init__(self, servables: Servables) -> None:
        self.servables = servables

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,  # noqa: N802
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        return _answer(context, "GetModelStatus", lambda: self._status(request))

    def _status(self, request: get_model_status_pb2.GetModelStatusRequest
                ) -> get_model_status_pb2.GetModelStatusResponse:
        name, version = _name_and_version(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self.servables.version_states(name, version):
            row = response.model_version_status.add()
            row.version = state.version
            row.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            row.status.error_code = error_codes_pb2.Code.Value(state.error_code)
            row.status.error_message = state.error_message
        return response


def start_grpc_server(servables: Servables, limiter: InFlightLimiter, host: str, port: int) -> tuple[grpc.Server, int]:
    """Start the gRPC services on `host:port` (0: a free port) in background threads; returns the server and the
    port it listens on."""
    workers = concurrent.futures.ThreadPoolExecutor(max_workers=servables.limits.max_in_flight + _PROBE_THREADS,
                                                    thread_name_prefix="grpc")
    options = [("grpc.max_receive_message_length", servables.limits.max_body_bytes),
               ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
               # One server per port: without this a second server could bind the same port silently.
               ("grpc.so_reuseport", 0)]
    server = grpc.server(workers, options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(servables, limiter), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelStatusServicer(servables), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:  # grpcio raises this when the port is taken
        raise OSError(f"cannot listen for gRPC on {host}:{port}: {error}") from error
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    server.start()
    return server, bound
