"""The export's model info: one typed record, written and read by the same code; the Keras copy leaves the model
as it was."""
from __future__ import annotations

import json

import pytest

from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import (ModelInfo, ServingGeometry, model_info_path, read_model_info,
                                          read_serving_geometry, write_model_info)
from pipeline.config import load_config
from tests.conftest import whole_image_info
from trainer_module.backbones import TRUNK_NAME
from trainer_module.model_io import save_keras_copy
from trainer_module.patch_model import build_patch_model


def test_the_record_round_trips_and_every_missing_key_is_an_error_naming_the_file(tmp_path):
    info = whole_image_info(None)
    write_model_info(str(tmp_path), info)
    assert read_model_info(str(tmp_path)) == info
    assert read_serving_geometry(str(tmp_path)) == info.geometry
    document = json.loads(open(model_info_path(str(tmp_path))).read())
    for key in document:
        partial = {name: value for name, value in document.items() if name != key}
        with open(model_info_path(str(tmp_path)), "w") as handle:
            json.dump(partial, handle)
        with pytest.raises(ValueError, match=str(tmp_path) + r".*model_info.json (lacks \['" + key + "'\\]|records)"):
            read_model_info(str(tmp_path))


def test_a_record_says_what_its_kind_has():
    with pytest.raises(ValueError, match="whole-image model info has image hparams and a serving geometry"):
        ModelInfo(kind="whole_image", patch_hparams={}, image_limits=ImageLimits())
    with pytest.raises(ValueError, match="resize mode must be one of stretch, pad"):
        ServingGeometry((8, 8), 8, 16, resize_mode="crop")


def test_the_keras_copy_leaves_the_trainable_flags_of_the_model_as_they_were(tmp_path):
    hparams = load_config("test").patch_training
    model = build_patch_model(hparams)
    model.get_layer(TRUNK_NAME).trainable = False
    flags = [layer.trainable for layer in model.submodules if hasattr(layer, "trainable")]
    save_keras_copy(model, str(tmp_path), hparams, ImageLimits())
    assert not model.get_layer(TRUNK_NAME).trainable
    assert [layer.trainable for layer in model.submodules if hasattr(layer, "trainable")] == flags
    assert read_model_info(str(tmp_path)).kind == "patch"
