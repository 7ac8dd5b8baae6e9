"""Serving tools around the server: the gRPC example client, the Kubernetes manifest, `serve()` dispatch."""
import importlib.util
import os
import signal
import subprocess
import sys
import threading

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402

from mammo_tfx.serving.server import serve  # noqa: E402
from mammo_tfx.serving.rest_client import RestClient, images_request, model_path  # noqa: E402
from mammo_tfx.serving.tiny_model import export_tiny_model, synthetic_png  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_grpc_example():
    spec = importlib.util.spec_from_file_location("grpc_client", os.path.join(REPO, "examples", "grpc_client.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return export_tiny_model(str(tmp_path_factory.mktemp("tiny") / "1"))


def test_grpc_client_builds_a_predict_request_from_png_files(tmp_path):
    client = load_grpc_example()
    paths, images = [], [synthetic_png(1), synthetic_png(2, bit_depth=8)]
    for index, image in enumerate(images):
        paths.append(str(tmp_path / f"scan{index}.png"))
        with open(paths[-1], "wb") as handle:
            handle.write(image)
    request = client.build_predict_request(client.read_images(paths), "mammo", version=1700000000)
    parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert parsed.model_spec.name == "mammo"
    assert parsed.model_spec.signature_name == "serving_default"
    assert parsed.model_spec.version.value == 1700000000
    assert list(parsed.inputs) == ["image_bytes"]
    tensor = tf.make_ndarray(parsed.inputs["image_bytes"])
    assert tensor.shape == (2,) and tensor.tolist() == images


def test_kubernetes_manifest_serves_rest_and_grpc_with_a_readiness_probe():
    with open(os.path.join(REPO, "kfp", "tf-serving.yaml")) as handle:
        documents = [document for document in yaml.safe_load_all(handle) if document]
    by_kind = {document["kind"]: document for document in documents}
    assert set(by_kind) == {"Deployment", "Service"}
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("tensorflow/serving:")
    assert {port["name"]: port["containerPort"] for port in container["ports"]} == {"grpc": 8500, "http": 8501}
    flags = dict(arg.lstrip("-").split("=", 1) for arg in container["args"])
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert container["readinessProbe"]["httpGet"] == {"path": f"/v1/models/{flags['model_name']}", "port": "http"}
    mount = container["volumeMounts"][0]["mountPath"]
    assert flags["model_base_path"] == f"{mount}/{flags['model_name']}"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    service = by_kind["Service"]["spec"]
    assert service["selector"] == by_kind["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {port["name"]: port["port"] for port in service["ports"]} == {"grpc": 8500, "http": 8501}


def test_serve_runs_tensorflow_model_server_when_it_is_on_path(tmp_path, monkeypatch):
    # An executable that records its arguments stands in for the binary, which cannot be installed here.
    binary_dir = tmp_path / "bin"
    binary_dir.mkdir()
    recorded = tmp_path / "args.txt"
    binary = binary_dir / "tensorflow_model_server"
    binary.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{recorded}'\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{binary_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "serving" / "mammo").mkdir(parents=True)

    assert serve(str(tmp_path / "serving" / "mammo"), "mammo", port=8501, grpc_port=8500) == 0
    assert recorded.read_text().splitlines() == [
        "--port=8500", "--rest_api_port=8501", "--model_name=mammo",
        f"--model_base_path={tmp_path / 'serving' / 'mammo'}", "--rest_api_num_threads=4",
        "--rest_api_timeout_in_ms=30000"]
    with pytest.raises(ValueError, match="different ports"):
        serve(str(tmp_path / "serving"), "mammo", port=8500, grpc_port=8500)


@pytest.mark.e2e
def test_serve_without_the_binary_runs_the_built_in_server_for_rest_and_the_grpc_example_until_sigterm(
        tmp_path, tiny_export):
    os.symlink(os.path.dirname(tiny_export), tmp_path / "mammo")
    script = ("from mammo_tfx.serving.server import serve; import sys; "
              f"sys.exit(serve({str(tmp_path)!r}, 'mammo', port=0, grpc_port=0, use_model_server_binary=False))")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    # Bounds the blocking reads below: a server that never comes up is killed, and the test fails.
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    try:
        line = process.stdout.readline()  # printed once the server listens
        assert line.startswith("serving model mammo"), line
        url = line.split(" at ")[1].split("/v1/")[0]
        grpc_target = line.split(" and gRPC ")[1].split()[0]
        images = [synthetic_png(5), synthetic_png(6, bit_depth=8)]
        with RestClient(url) as client:
            assert client.get(model_path("mammo"))[0] == 200
            status, body = client.predict("mammo", images_request(images))
            assert status == 200 and 0.0 <= body["predictions"][0]["probability"] <= 1.0
        paths = []
        for index, image in enumerate(images):
            paths.append(str(tmp_path / f"scan{index}.png"))
            with open(paths[-1], "wb") as handle:
                handle.write(image)
        # The example client, unchanged, as a user runs it against TF Serving.
        example = subprocess.run([sys.executable, os.path.join(REPO, "examples", "grpc_client.py"), "--server",
                                  grpc_target, "--model-name", "mammo", *paths], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert example.returncode == 0, example.stderr
        printed = example.stdout.splitlines()
        assert [row.split(":")[0] for row in printed] == paths
        for row, prediction in zip(printed, body["predictions"]):
            assert f"probability={prediction['probability']:.4f}" in row
        unknown = subprocess.run([sys.executable, os.path.join(REPO, "examples", "grpc_client.py"), "--server",
                                  grpc_target, "--model-name", "other", paths[0]], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
