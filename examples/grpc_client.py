"""Ask a running TF Serving for screening probabilities over gRPC: `tensorflow_model_server` or the built-in
server of `mammo-tfx serve`, which speaks the same PredictionService.

Usage (TF Serving's gRPC port is 8500, `mammo-tfx serve --grpc-port`):
    TF_USE_LEGACY_KERAS=1 .venv/bin/python examples/grpc_client.py --server localhost:8500 \
        --model-name mammo scan1.png scan2.png

Each file is sent as encoded bytes (8/16-bit PNG or JPEG) in one batch to the `serving_default` signature,
whose input `image_bytes` is a string tensor of shape [batch]; the answer holds `probability` (mean over
the four flips) and `probability_single` per image.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from typing import Dict, List, Optional, Sequence  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

# gRPC refuses messages over 4 MB by default; a batch of 16-bit mammogram PNGs is larger than that.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def build_predict_request(images: Sequence[bytes], model_name: str, signature_name: str = "serving_default",
                          input_key: str = "image_bytes", version: Optional[int] = None) -> predict_pb2.PredictRequest:
    """A PredictRequest carrying the encoded images as one string tensor of shape [len(images)]."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[input_key].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(images))]),
        string_val=list(images)))
    return request


def read_images(paths: Sequence[str]) -> List[bytes]:
    images = []
    for path in paths:
        with open(path, "rb") as handle:
            images.append(handle.read())
    return images


def predict(server: str, request: predict_pb2.PredictRequest, timeout_s: float = 30.0) -> Dict[str, np.ndarray]:
    """Send the request to `server` (host:port of the gRPC endpoint); returns output name -> array."""
    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=timeout_s)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="PNG or JPEG files")
    parser.add_argument("--server", default="localhost:8500", help="gRPC host:port of the model server")
    parser.add_argument("--model-name", default="mammo")
    parser.add_argument("--signature-name", default="serving_default")
    parser.add_argument("--version", type=int, default=None, help="a specific version (default: the newest)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds")
    args = parser.parse_args(argv)

    request = build_predict_request(read_images(args.images), args.model_name, args.signature_name,
                                    version=args.version)
    try:
        outputs = predict(args.server, request, args.timeout)
    except grpc.RpcError as error:
        print(f"predict failed: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    for index, path in enumerate(args.images):
        values = ", ".join(f"{name}={outputs[name][index]:.4f}" for name in sorted(outputs)
                           if outputs[name].ndim == 1)
        print(f"{path}: {values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
