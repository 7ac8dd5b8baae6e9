"""Serving overhead: the built-in REST server against calling the SavedModel in-process, in one run.

For 1 and 4 concurrent clients it sends the same single-image predict requests (a synthetic 16-bit PNG,
b64 in a TF Serving row-format body) to `mammo_tfx.serving.ModelServer` over loopback HTTP, and makes the
same calls directly on the loaded signature from as many threads. It prints a Markdown table of requests/s
and p50/p99 latency, and the server/in-process ratios (the cost of HTTP, JSON, base64 and image checks).

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
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable, List, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mammo_tfx import names  # noqa: E402
from mammo_tfx.serving.server import ModelServer  # noqa: E402
from mammo_tfx.serving.repository import list_complete_versions  # noqa: E402
from mammo_tfx.serving.rest_client import RestClient, images_request  # noqa: E402
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


def measure(mode: str, clients: int, total_requests: int, make_caller: Callable[[], Callable[[int], None]],
            warmup_requests: int) -> Measurement:
    """Run `total_requests` calls spread over `clients` threads, each with its own caller (connection)."""
    per_client = max(1, total_requests // clients)

    def client_loop(client_index: int) -> List[float]:
        call = make_caller()
        for index in range(warmup_requests):
            call(index)
        latencies = []
        for index in range(per_client):
            started = time.perf_counter()
            call(client_index * per_client + index)
            latencies.append(time.perf_counter() - started)
        return latencies

    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        started = time.perf_counter()
        results = list(pool.map(client_loop, range(clients)))
        # Warm-up calls are inside the wall time but few; subtracting them would need a barrier per client.
        seconds = time.perf_counter() - started
    latencies = [latency for result in results for latency in result]
    return Measurement(mode, clients, len(latencies) + clients * warmup_requests, seconds, latencies)


def run(base_path: str, model_name: str, images: Sequence[bytes], total_requests: int,
        concurrency_levels: Sequence[int], warmup_requests: int) -> List[Measurement]:
    version = list_complete_versions(base_path)[-1]
    signature = tf.saved_model.load(os.path.join(base_path, str(version))).signatures[names.DEFAULT_SIGNATURE]
    image_tensors = [tf.constant([image]) for image in images]
    bodies = [images_request([image]) for image in images]
    measurements = []
    with ModelServer(base_path, model_name, poll_interval_s=3600) as server:
        for clients in concurrency_levels:
            def in_process_caller() -> Callable[[int], None]:
                return lambda index: signature(image_bytes=image_tensors[index % len(images)])

            def server_caller() -> Callable[[int], None]:
                client = RestClient(server.url)

                def call(index: int) -> None:
                    status, body = client.predict(model_name, bodies[index % len(bodies)])
                    if status != 200:
                        raise RuntimeError(f"server answered {status}: {body}")
                return call

            measurements.append(measure("in-process", clients, total_requests, in_process_caller, warmup_requests))
            measurements.append(measure("REST server", clients, total_requests, server_caller, warmup_requests))
    return measurements


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
    args = parser.parse_args(argv)

    images = [synthetic_png(seed, args.height, args.width) for seed in range(args.distinct_images)]
    with tempfile.TemporaryDirectory() as workdir:
        base_path = prepare_base_path(args.model_dir, workdir)
        measurements = run(base_path, args.model_name, images, args.requests, args.clients, args.warmup)
    print(f"\nServing benchmark: model {base_path if args.model_dir else 'tiny reference model'}, "
          f"{args.height}x{args.width} 16-bit PNG ({len(images[0]) / 1e6:.2f} MB) per request, "
          f"{os.cpu_count()} CPUs\n")
    print(markdown_table(measurements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
