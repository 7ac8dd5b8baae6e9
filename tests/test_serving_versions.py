"""Version policy of the built-in server (newest complete version, hot swap, failed loads) and warm-up files."""
import logging
import os
import shutil
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

from mammo_tfx.serving.repository import ModelRepository, list_complete_versions  # noqa: E402
from mammo_tfx.serving.rest_client import RestClient, images_request, model_path  # noqa: E402
from mammo_tfx.serving.server import ModelServer, resolve_model_base_path  # noqa: E402
from mammo_tfx.serving.tiny_model import export_tiny_model, synthetic_png  # noqa: E402
from mammo_tfx.serving.warmup import read_warmup_requests, warmup_path, write_warmup_file  # noqa: E402

pytestmark = pytest.mark.e2e  # every test serves exported SavedModels

MODEL = "mammo"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two staged exports that predict differently (gain 1.0 and 0.5), copied into serving dirs per test."""
    staging = tmp_path_factory.mktemp("staging")
    return {gain: export_tiny_model(str(staging / f"gain{gain}"), gain=gain) for gain in (1.0, 0.5)}


def push(export_dir: str, base: str, version: int) -> str:
    """Copy a SavedModel the way the TFX Pusher does: everything else first, saved_model.pb last."""
    target = os.path.join(base, str(version))
    shutil.copytree(export_dir, target, ignore=shutil.ignore_patterns("saved_model.pb"))
    shutil.copy(os.path.join(export_dir, "saved_model.pb"), target)
    return target


def in_process_probability(export_dir: str, image: bytes) -> np.float32:
    model = tf.saved_model.load(export_dir)
    return model.signatures["serving_default"](image_bytes=tf.constant([image]))["probability"].numpy()[0]


def wait_for_version(client: RestClient, version: int, timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, body = client.get(model_path(MODEL))
        if status == 200 and body["model_version_status"][0]["version"] == str(version):
            return body
        time.sleep(0.1)
    raise AssertionError(f"version {version} was not served within {timeout_s}s; last status {body}")


def test_only_integer_directories_with_saved_model_pb_are_versions(tmp_path, exports):
    push(exports[1.0], str(tmp_path), 5)
    push(exports[1.0], str(tmp_path), 12)
    shutil.copytree(exports[1.0], tmp_path / "99", ignore=shutil.ignore_patterns("saved_model.pb"))
    shutil.copytree(exports[1.0], tmp_path / "latest")
    assert list_complete_versions(str(tmp_path)) == [5, 12]
    assert list_complete_versions(str(tmp_path / "missing")) == []


def test_base_path_is_found_from_the_serving_directory_above_it(tmp_path, exports):
    push(exports[1.0], str(tmp_path / MODEL), 3)
    assert resolve_model_base_path(str(tmp_path), MODEL) == str(tmp_path / MODEL)
    assert resolve_model_base_path(str(tmp_path / MODEL), MODEL) == str(tmp_path / MODEL)


def test_new_version_pushed_while_serving_is_picked_up(tmp_path, exports):
    base = str(tmp_path / MODEL)
    push(exports[1.0], base, 1)
    image = synthetic_png(7)
    with ModelServer(base, MODEL, poll_interval_s=0.2) as server, RestClient(server.url) as client:
        status, body = client.predict(MODEL, images_request([image]))
        assert status == 200
        assert np.float32(body["predictions"][0]["probability"]) == in_process_probability(exports[1.0], image)

        # A version still being copied (no saved_model.pb yet) is not a version.
        shutil.copytree(exports[0.5], os.path.join(base, "2"), ignore=shutil.ignore_patterns("saved_model.pb"))
        assert server.repository.poll_once() == 1
        shutil.copy(os.path.join(exports[0.5], "saved_model.pb"), os.path.join(base, "2"))

        wait_for_version(client, 2)
        status, body = client.predict(MODEL, images_request([image]))
        assert np.float32(body["predictions"][0]["probability"]) == in_process_probability(exports[0.5], image)
        assert client.predict(MODEL, images_request([image]), version=2)[0] == 200
        # TF Serving's default policy serves only the newest version.
        assert client.predict(MODEL, images_request([image]), version=1)[0] == 404


def test_version_that_fails_to_load_leaves_the_old_one_serving(tmp_path, exports, caplog):
    base = str(tmp_path / MODEL)
    push(exports[1.0], base, 1)
    image = synthetic_png(8)
    with ModelServer(base, MODEL, poll_interval_s=60) as server, RestClient(server.url) as client:
        os.makedirs(os.path.join(base, "2"))
        with open(os.path.join(base, "2", "saved_model.pb"), "wb") as broken:
            broken.write(b"not a protobuf")
        with caplog.at_level(logging.ERROR, logger="mammo_tfx.serving.repository"):
            assert server.repository.poll_once() == 1
        assert any("failed to load version 2" in record.getMessage() for record in caplog.records)

        status, body = client.get(model_path(MODEL))
        assert status == 200
        states = {entry["version"]: entry for entry in body["model_version_status"]}
        assert states["1"]["state"] == "AVAILABLE"
        assert states["2"]["state"] == "END" and states["2"]["status"]["error_code"] == "UNKNOWN"
        status, body = client.predict(MODEL, images_request([image]))
        assert np.float32(body["predictions"][0]["probability"]) == in_process_probability(exports[1.0], image)

        # The same broken file is not retried on every poll, but a rewritten version is.
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="mammo_tfx.serving.repository"):
            assert server.repository.poll_once() == 1
        assert not caplog.records
        shutil.rmtree(os.path.join(base, "2"))
        push(exports[0.5], base, 2)
        assert server.repository.poll_once() == 2
        assert [entry["version"] for entry in client.get(model_path(MODEL))[1]["model_version_status"]] == ["2"]


def test_warmup_file_is_written_in_tf_serving_format(tmp_path, exports):
    version_dir = push(exports[1.0], str(tmp_path), 1)
    images = [synthetic_png(1), synthetic_png(2, bit_depth=8)]
    path = write_warmup_file(version_dir, images)
    assert path == os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(records) == 2
    for record, image in zip(records, images):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert list(request.inputs) == ["image_bytes"]
        assert tf.make_ndarray(request.inputs["image_bytes"]).tolist() == [image]
    assert [(name, inputs["image_bytes"].tolist()) for name, inputs in read_warmup_requests(version_dir)] == [
        ("serving_default", [image]) for image in images]
    with pytest.raises(ValueError, match="no signature"):
        write_warmup_file(version_dir, images, signature_name="nope")


def test_warmup_requests_are_replayed_before_a_version_goes_live(tmp_path, exports, caplog):
    base = str(tmp_path / MODEL)
    write_warmup_file(push(exports[1.0], base, 1), [synthetic_png(3), synthetic_png(4)])
    repository = ModelRepository(base)
    with caplog.at_level(logging.INFO, logger="mammo_tfx.serving.repository"):
        assert repository.poll_once() == 1
    assert any("2 warm-up requests replayed" in record.getMessage() for record in caplog.records)

    # A warm-up request the model rejects keeps the version from going live, as in TF Serving.
    bad_version = push(exports[0.5], base, 2)
    write_warmup_file(bad_version, [b"not an image"])
    assert os.path.exists(warmup_path(bad_version))
    assert repository.poll_once() == 1
    assert [(state.version, state.state) for state in repository.version_states()] == [(2, "END"), (1, "AVAILABLE")]
