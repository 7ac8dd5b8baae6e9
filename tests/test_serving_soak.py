"""Soak test of the built-in server (`mammo-tfx serve` in its own process, localhost only): several clients send a
bounded mix of good, bad and oversize requests for about a minute. Every good request is answered with the model's
own numbers, every bad one is refused with its status, and the server's memory returns to its baseline."""
from __future__ import annotations

import base64
import collections
import concurrent.futures
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mammo_tfx.names import DEFAULT_SIGNATURE, EXAMPLES_SIGNATURE, IMAGE_PNG  # noqa: E402
from mammo_tfx.serving.rest_client import RestClient  # noqa: E402
from mammo_tfx.serving.tiny_model import export_tiny_model, synthetic_png  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "mammo"
CLIENTS = 6
SOAK_S = 60.0
MAX_REQUESTS_PER_CLIENT = 2000  # bounds the loop by count as well as by time
MAX_IN_FLIGHT = 3
# The server's resident memory after the soak may exceed its warmed-up baseline by at most this much: allocator
# pools and caches settle during the warm-up, so a leak of even a few KB per request (thousands of requests) or one
# decoded bomb (225 MB) would show above it.
RSS_TOLERANCE_BYTES = 48 * 1024 * 1024
SERVER_FLAGS = ["--max-in-flight", str(MAX_IN_FLIGHT), "--request-timeout-s", "20",
                "--set", "serving.max_body_bytes=524288", "--set", "serving.image.max_bytes=262144",
                "--set", "serving.image.max_pixels=262144", "--set", "serving.image.max_side=1024"]


def _b64(data: bytes) -> Dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def _example(image: bytes) -> bytes:
    feature = {IMAGE_PNG: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _zero_png_bomb(side: int) -> bytes:
    """An 8-bit greyscale PNG of side x side zeros, ~1000:1 compressed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(bytes(1 + side)) for _ in range(side)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


class Case:
    """One kind of request: its body, the status it must get, and for good ones the expected probability."""

    def __init__(self, name: str, document: dict, status: int, probability: Optional[float] = None) -> None:
        self.name, self.body, self.status, self.probability = name, json.dumps(document).encode(), status, probability


def _cases(export_dir: str) -> List[Case]:
    model = tf.saved_model.load(export_dir)
    good = [synthetic_png(seed, height=64, width=48) for seed in range(8)]
    expected = model.signatures[DEFAULT_SIGNATURE](image_bytes=tf.constant(good))["probability"].numpy()
    bomb = _zero_png_bomb(15000)
    cases = [Case(f"good image {i}", {"instances": [_b64(image)]}, 200, float(expected[i]))
             for i, image in enumerate(good)]
    cases += [Case(f"good example {i}", {"signature_name": EXAMPLES_SIGNATURE, "instances": [_b64(_example(image))]},
                   200, float(expected[i])) for i, image in enumerate(good[:4])]
    cases += [
        Case("garbage", {"instances": [_b64(b"definitely not an image")]}, 400),
        Case("truncated PNG", {"instances": [_b64(good[0][:300])]}, 400),
        Case("bomb", {"instances": [_b64(bomb)]}, 400),
        Case("bomb in an example", {"signature_name": EXAMPLES_SIGNATURE, "instances": [_b64(_example(bomb))]}, 400),
        Case("oversize body", {"instances": [_b64(bytes(600 * 1024))]}, 413),
        Case("malformed JSON", {"instances": "nope"}, 400),
    ]
    return cases


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _send(client: RestClient, case: Case, counts: collections.Counter, wrong: List[str]) -> None:
    """Send one case, retrying (bounded) while the server answers 429, and record what came back."""
    for _ in range(200):
        status, body = client.request("POST", f"/v1/models/{MODEL}:predict", case.body)
        counts[(case.status, status)] += 1
        if status != 429:
            break
        time.sleep(0.05)
    if status != case.status:
        wrong.append(f"{case.name}: {status} {body}")
    elif case.probability is not None and np.float32(body["predictions"][0]["probability"]) != np.float32(
            case.probability):
        wrong.append(f"{case.name}: {body} instead of {case.probability}")
    elif status != 200 and set(body) != {"error"}:
        wrong.append(f"{case.name}: error body {body}")


def _run_clients(url: str, cases: List[Case], seconds: float, max_per_client: int) -> Tuple[collections.Counter,
                                                                                             List[str]]:
    counts: collections.Counter = collections.Counter()
    wrong: List[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        local: collections.Counter = collections.Counter()
        local_wrong: List[str] = []
        order = np.random.default_rng(index).permutation(len(cases) * 4) % len(cases)
        with RestClient(url) as client:
            for sent in range(max_per_client):
                if time.monotonic() >= stop_at:
                    break
                _send(client, cases[order[sent % len(order)]], local, local_wrong)
        with lock:
            counts.update(local)
            wrong.extend(local_wrong)

    with concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(client_loop, range(CLIENTS)))
    return counts, wrong


@pytest.fixture()
def server_process(tmp_path):
    export_dir = export_tiny_model(str(tmp_path / MODEL / "1"))
    command = [sys.executable, "-m", "mammo_tfx.cli", "serve", "--model-dir", str(tmp_path), "--model-name", MODEL,
               "--port", "0", *SERVER_FLAGS]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    watchdog = threading.Timer(90, process.kill)  # bounds the readline below
    watchdog.start()
    try:
        line = process.stdout.readline()
        watchdog.cancel()
        assert line.startswith(f"serving model {MODEL}"), line
        yield process, line.split(" at ")[1].split("/v1/")[0], export_dir
    finally:
        watchdog.cancel()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.e2e
@pytest.mark.slow
def test_soak_mixed_requests_from_several_clients(server_process):
    process, url, export_dir = server_process
    cases = _cases(export_dir)
    # Warm-up: every case once, then a short concurrent burst, so allocator pools and caches settle.
    warm_counts, warm_wrong = _run_clients(url, cases, seconds=10.0, max_per_client=len(cases))
    assert not warm_wrong, warm_wrong
    baseline = _rss_bytes(process.pid)

    started = time.monotonic()
    counts, wrong = _run_clients(url, cases, seconds=SOAK_S, max_per_client=MAX_REQUESTS_PER_CLIENT)
    elapsed = time.monotonic() - started
    time.sleep(2.0)  # let the last responses' buffers go
    after = _rss_bytes(process.pid)

    by_status = collections.Counter()
    for (_, got), number in counts.items():
        by_status[got] += number
    summary = (f"soak: {sum(counts.values())} requests in {elapsed:.0f} s from {CLIENTS} clients "
               f"(max_in_flight {MAX_IN_FLIGHT}); statuses {dict(sorted(by_status.items()))}; server RSS "
               f"{baseline / 2**20:.0f} MB after warm-up, {after / 2**20:.0f} MB after the soak "
               f"(tolerance +{RSS_TOLERANCE_BYTES / 2**20:.0f} MB)")
    print(summary)
    assert not wrong, wrong[:10]
    answered = {expected for expected, got in counts if got == expected}
    assert answered == {200, 400, 413}, summary  # every kind of request was sent and answered as it must be
    assert set(by_status) <= {200, 400, 413, 429}, summary
    assert process.poll() is None
    assert after <= baseline + RSS_TOLERANCE_BYTES, summary
