"""Backbone weights from the setting `patch_training.backbone_weights`: the Keras cache ('imagenet'), a local file,
a bucket file (a local GCS server), and the one clear error when they are unavailable, also at the CLI's start.

No test touches the internet: a stand-in (a randomly initialised ResNet50 no-top saved where tf_keras caches the
ImageNet file) replaces the published weights, and downloads go through an HTTPS proxy on a closed local port,
so they fail at once and always the same way.
"""
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import portpicker
import pytest
import tf_keras
from tf_keras.src.applications import resnet, vgg16

from mammo_tfx import synth
from trainer_module.backbone_weights import (IMAGENET_NOTOP, WEIGHTS_SETTING, BackboneWeightsUnavailable,
                                             imagenet_cache_path, resolve_backbone_weights)
from trainer_module.backbones import TRUNK_NAME, build_trunk
from trainer_module.hparams import PatchHParams
from trainer_module.patch_model import build_patch_model

RESNET50_NOTOP = IMAGENET_NOTOP["resnet50"].file_name


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A random ResNet50 no-top saved as the 'imagenet' file of a Keras home, and its weight arrays."""
    home = tmp_path_factory.mktemp("keras_home")
    path = home / "models" / RESNET50_NOTOP
    path.parent.mkdir()
    tf_keras.utils.set_random_seed(3)
    model = tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    model.save_weights(str(path))
    return {"home": str(home), "path": str(path), "arrays": model.get_weights()}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download goes to a proxy on a port nobody listens on (urllib honours https_proxy)."""
    closed = f"http://127.0.0.1:{portpicker.pick_unused_port()}"
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, closed)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def assert_trunk_holds(trunk: tf_keras.Model, arrays: list) -> None:
    loaded = trunk.get_weights()
    assert len(loaded) == len(arrays)
    for got, want in zip(loaded, arrays):
        np.testing.assert_array_equal(got, want)


def test_imagenet_is_the_keras_cache_file_and_the_patch_model_starts_from_it(standin, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", standin["home"])
    assert resolve_backbone_weights("resnet50", "imagenet") == standin["path"]
    model = build_patch_model(PatchHParams(backbone="resnet50", backbone_weights="imagenet"))
    assert_trunk_holds(model.get_layer(TRUNK_NAME), standin["arrays"])


def test_local_and_bucket_files_load_the_same_weights(standin, tmp_path, monkeypatch, gcs_emulator):
    keras_home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    local = tmp_path / "weights" / "resnet50-init.h5"
    local.parent.mkdir()
    shutil.copy(standin["path"], local)
    bucket = gcs_emulator.upload_tree(local.parent, "mammo-weights", "init")

    assert resolve_backbone_weights("resnet50", str(local)) == str(local)
    assert_trunk_holds(build_trunk("resnet50", str(local)), standin["arrays"])

    bucket_file = f"{bucket}/{local.name}"
    copy = resolve_backbone_weights("resnet50", bucket_file)
    assert copy.startswith(str(keras_home)) and Path(copy).read_bytes() == local.read_bytes()
    copied_at = os.stat(copy).st_mtime_ns
    assert_trunk_holds(build_trunk("resnet50", bucket_file), standin["arrays"])
    assert os.stat(copy).st_mtime_ns == copied_at  # copied once: the second resolve used the copy


def test_unreadable_paths_and_offline_imagenet_are_one_clear_error(tmp_path, monkeypatch, offline, gcs_emulator):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    missing = str(tmp_path / "nowhere.h5")
    for weights in (missing, "gs://no-such-bucket-here/init.h5"):
        with pytest.raises(BackboneWeightsUnavailable, match=f"{WEIGHTS_SETTING}='{weights}'"):
            resolve_backbone_weights("vgg16", weights)

    cache_file = imagenet_cache_path("resnet50")
    with pytest.raises(BackboneWeightsUnavailable) as raised:
        build_trunk("resnet50", "imagenet")
    message = str(raised.value)
    for part in (WEIGHTS_SETTING, cache_file, IMAGENET_NOTOP["resnet50"].origin, "KERAS_HOME"):
        assert part in message
    assert not os.path.exists(cache_file)  # no partial download left to be taken for the file


def test_small_backbone_has_no_imagenet_weights():
    with pytest.raises(ValueError, match="backbone_weights='imagenet'.*'small'"):
        PatchHParams(backbone="small", backbone_weights="imagenet")


def test_published_files_are_the_ones_tf_keras_loads():
    assert IMAGENET_NOTOP["resnet50"].origin == resnet.BASE_WEIGHTS_PATH + RESNET50_NOTOP
    assert IMAGENET_NOTOP["resnet50"].md5 == resnet.WEIGHTS_HASHES["resnet50"][1]
    assert IMAGENET_NOTOP["vgg16"].origin == vgg16.WEIGHTS_PATH_NO_TOP
    assert IMAGENET_NOTOP["vgg16"].md5 in inspect.getsource(vgg16.VGG16)


def test_cli_run_without_the_weights_stops_before_any_component(tmp_path, offline):
    data = tmp_path / "cbis"
    synth.generate("cbis-ddsm", str(data), patients=2, seed=1, scale=0.25)
    out = tmp_path / "out"
    keras_home = tmp_path / "empty_keras_home"
    result = subprocess.run(
        [sys.executable, "-m", "mammo_tfx.cli", "run", "--profile", "production", "--data", f"cbis-ddsm={data}",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_HOME": str(keras_home)})
    assert result.returncode != 0
    assert WEIGHTS_SETTING in result.stderr
    assert str(keras_home / "models" / RESNET50_NOTOP) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()  # no manifest, no metadata, no ExampleGen output
