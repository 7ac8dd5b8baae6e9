"""Serving overhead: the built-in server's REST and gRPC APIs against calling the SavedModel in-process, in one run.

For 1 and 4 concurrent clients it sends the same single-image predict requests (a synthetic 16-bit PNG, b64 in a
TF Serving row-format JSON body over loopback HTTP, or a string TensorProto in a PredictRequest over loopback gRPC)
to `mammo_tfx.serving.ModelServer`, and makes the same calls directly on the loaded signature from as many threads.
It prints a Markdown table of requests/s and p50/p99 latency, and the server/in-process ratios (the cost of the
transport, JSON/base64 or protobuf, and the image checks), then the per-stage cost of one request in Python
(`--no-breakdown` skips it): what is left of the server's latency beyond these stages is the transport.

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/serving_benchmark.py [--model-dir DIR] [--requests 200]
`--model-dir` is a serving base path (integer version directories) or one SavedModel directory; without it
the tiny reference model (same signatures as the exported model) is built in a temporary directory.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Dict, List, Sequence, Tuple  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from mammo_tfx import names  # noqa: E402
from mammo_tfx.serving.grpc_api import MAX_SEND_MESSAGE_BYTES  # noqa: E402
from mammo_tfx.serving.json_tensors import decode_inputs, encode_outputs, parse_predict_body  # noqa: E402
from mammo_tfx.serving.limits import ImageLimits, check_image_inputs  # noqa: E402
from mammo_tfx.serving.model import load_model  # noqa: E402
from mammo_tfx.serving.repository import list_complete_versions  # noqa: E402
from mammo_tfx.serving.rest_client import RestClient, images_request  # noqa: E402
from mammo_tfx.serving.server import ModelServer  # noqa: E402
from mammo_tfx.serving.tiny_model import export_tiny_model, synthetic_png  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Measurement:
    mode: str
    clients: int
    requests: int
    seconds: float
    latencies_s: List[float]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000.0)


def prepare_base_path(model_dir: str | None, workdir: str) -> str:
    """A base path with version directories: given, wrapped around one SavedModel, or the tiny model."""
    if model_dir is None:
        export_tiny_model(os.path.join(workdir, "tiny", "1"))
        return os.path.join(workdir, "tiny")
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        base = os.path.join(workdir, "wrapped")
        os.makedirs(base)
        os.symlink(os.path.abspath(model_dir), os.path.join(base, "1"))
        return base
    if not list_complete_versions(model_dir):
        raise SystemExit(f"{model_dir} holds neither saved_model.pb nor integer version directories")
    return model_dir


Caller = Callable[[int], None]


def measure(mode: str, callers: Sequence[Caller], per_client: int, first_index: int) -> Measurement:
    """`per_client` calls on each caller (one client, with its own connection), the callers in parallel threads."""

    def client_loop(client_index: int) -> List[float]:
        call = callers[client_index]
        latencies = []
        for index in range(per_client):
            started = time.perf_counter()
            call(first_index + client_index * per_client + index)
            latencies.append(time.perf_counter() - started)
        return latencies

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(callers)) as pool:
        started = time.perf_counter()
        results = list(pool.map(client_loop, range(len(callers))))
        seconds = time.perf_counter() - started
    latencies = [latency for result in results for latency in result]
    return Measurement(mode, len(callers), len(latencies), seconds, latencies)


def measure_interleaved(make_callers: Dict[str, Callable[[], Caller]], clients: int, total_requests: int,
                        rounds: int, warmup_requests: int) -> List[Measurement]:
    """Each mode's `total_requests` split into `rounds` short rounds, the modes taking turns, so a change in the
    machine's other load during the run falls on every mode alike (the machine is shared)."""
    callers = {mode: [make() for _ in range(clients)] for mode, make in make_callers.items()}
    for mode_callers in callers.values():
        for call in mode_callers:
            for index in range(warmup_requests):
                call(index)
    per_client = max(1, total_requests // (clients * rounds))
    merged: Dict[str, Measurement] = {}
    for round_index in range(rounds):
        for mode, mode_callers in callers.items():
            part = measure(mode, mode_callers, per_client, round_index * clients * per_client)
            previous = merged.get(mode)
            merged[mode] = part if previous is None else Measurement(
                mode, clients, previous.requests + part.requests, previous.seconds + part.seconds,
                previous.latencies_s + part.latencies_s)
    return list(merged.values())


def grpc_predict_request(image: bytes, model_name: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.inputs[names.IMAGE_BYTES_INPUT].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    return request


def run(base_path: str, model_name: str, images: Sequence[bytes], total_requests: int,
        concurrency_levels: Sequence[int], warmup_requests: int, rounds: int) -> List[Measurement]:
    version = list_complete_versions(base_path)[-1]
    signature = tf.saved_model.load(os.path.join(base_path, str(version))).signatures[names.DEFAULT_SIGNATURE]
    image_tensors = [tf.constant([image]) for image in images]
    bodies = [images_request([image]) for image in images]
    grpc_requests = [grpc_predict_request(image, model_name) for image in images]
    measurements = []
    with ModelServer(base_path, model_name, poll_interval_s=3600, grpc_port=0) as server:
        for clients in concurrency_levels:
            def in_process_caller() -> Caller:
                return lambda index: signature(image_bytes=image_tensors[index % len(images)])

            def server_caller() -> Caller:
                client = RestClient(server.url)

                def call(index: int) -> None:
                    status, body = client.predict(model_name, bodies[index % len(bodies)])
                    if status != 200:
                        raise RuntimeError(f"server answered {status}: {body}")
                return call

            def grpc_caller() -> Caller:
                channel = grpc.insecure_channel(server.grpc_target, options=[
                    ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_SEND_MESSAGE_BYTES)])
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                return lambda index: stub.Predict(grpc_requests[index % len(grpc_requests)], timeout=60)

            measurements += measure_interleaved(
                {"in-process": in_process_caller, "REST server": server_caller, "gRPC server": grpc_caller},
                clients, total_requests, rounds, warmup_requests)
    return measurements


def _mean_ms(action: Callable[[], Any], repeats: int) -> Tuple[float, Any]:
    result = action()  # untimed: first calls trace or allocate
    started = time.perf_counter()
    for _ in range(repeats):
        result = action()
    return (time.perf_counter() - started) / repeats * 1000.0, result


def stage_breakdown(base_path: str, model_name: str, image: bytes, repeats: int) -> List[Tuple[str, float]]:
    """Mean ms of each step a server request takes in Python, run in this process with the server's own functions;
    the transport (sockets, HTTP/2 framing, thread hand-offs) is what a measured server latency adds to these."""
    version = list_complete_versions(base_path)[-1]
    model = load_model(os.path.join(base_path, str(version)), version)
    signature_name = names.DEFAULT_SIGNATURE
    dtypes = model.input_dtypes(signature_name)
    document = images_request([image])
    stages = []
    ms, body = _mean_ms(lambda: json.dumps(document).encode("utf-8"), repeats)
    stages.append(("REST client: JSON + base64 encode (rest_client)", ms))
    ms, request = _mean_ms(lambda: parse_predict_body(body), repeats)
    stages.append(("REST server: JSON parse", ms))
    ms, inputs = _mean_ms(lambda: decode_inputs(request, signature_name, dtypes), repeats)
    stages.append(("REST server: base64 decode, typed arrays", ms))
    ms, _ = _mean_ms(lambda: check_image_inputs(inputs, ImageLimits()), repeats)
    stages.append(("both: image header checks", ms))
    ms, outputs = _mean_ms(lambda: model.predict(signature_name, inputs), max(3, repeats // 10))
    stages.append(("both: model call (LoadedModel.predict)", ms))
    ms, _ = _mean_ms(lambda: json.dumps(encode_outputs(outputs, True)).encode("utf-8"), repeats)
    stages.append(("REST server: response JSON", ms))
    grpc_request = grpc_predict_request(image, model_name)
    ms, wire = _mean_ms(grpc_request.SerializeToString, repeats)
    stages.append(("gRPC client: PredictRequest serialise", ms))
    ms, _ = _mean_ms(lambda: predict_pb2.PredictRequest.FromString(wire), repeats)
    stages.append(("gRPC server: PredictRequest parse", ms))
    ms, _ = _mean_ms(lambda: {k: tf.make_ndarray(p) for k, p in grpc_request.inputs.items()}, repeats)
    stages.append(("gRPC server: TensorProto -> arrays", ms))
    ms, _ = _mean_ms(lambda: {k: tf.make_tensor_proto(v) for k, v in outputs.items()}, repeats)
    stages.append(("gRPC server: outputs -> TensorProtos", ms))
    return stages


def markdown_table(measurements: Sequence[Measurement]) -> str:
    rows = ["| mode | clients | requests | req/s | p50 ms | p99 ms | server/in-process p50 | in-process/server req/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    baseline = {m.clients: m for m in measurements if m.mode == "in-process"}
    for m in measurements:
        base = baseline[m.clients]
        latency_ratio = m.percentile_ms(50) / base.percentile_ms(50)
        throughput_ratio = base.requests_per_s / m.requests_per_s
        rows.append(f"| {m.mode} | {m.clients} | {m.requests} | {m.requests_per_s:.1f} | {m.percentile_ms(50):.2f} | "
                    f"{m.percentile_ms(99):.2f} | {latency_ratio:.2f} | {throughput_ratio:.2f} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="serving base path or SavedModel dir (default: tiny model)")
    parser.add_argument("--model-name", default="mammo")
    parser.add_argument("--requests", type=int, default=200, help="requests per mode and concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4], help="concurrency levels")
    parser.add_argument("--height", type=int, default=1152)
    parser.add_argument("--width", type=int, default=896)
    parser.add_argument("--distinct-images", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per client before timing")
    parser.add_argument("--rounds", type=int, default=10, help="rounds in which the modes take turns")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-stage costs")
    args = parser.parse_args(argv)

    images = [synthetic_png(seed, args.height, args.width) for seed in range(args.distinct_images)]
    with tempfile.TemporaryDirectory() as workdir:
        base_path = prepare_base_path(args.model_dir, workdir)
        measurements = run(base_path, args.model_name, images, args.requests, args.clients, args.warmup,
                           args.rounds)
        stages = [] if args.no_breakdown else stage_breakdown(base_path, args.model_name, images[0], 50)
    print(f"\nServing benchmark: model {base_path if args.model_dir else 'tiny reference model'}, "
          f"{args.height}x{args.width} 16-bit PNG ({len(images[0]) / 1e6:.2f} MB) per request, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{load:.2f}' for load in os.getloadavg())}\n")
    print(markdown_table(measurements))
    if stages:
        print("\n| stage of one request (Python, in this process) | mean ms |\n| --- | ---: |")
        print("\n".join(f"| {name} | {ms:.3f} |" for name, ms in stages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
