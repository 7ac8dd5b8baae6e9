"""Hyperparameter dataclasses: JSON round trip, the profiles' values, strict keys, validation."""
import json

import pytest

from mammo_tfx.evaluation.screening import CalibrationMethod, ScreeningOptions
from pipeline.config import PROFILES, load_config
from trainer_module.hparams import (ImageHParams, PatchHParams, TopBlockSpec, TrainingStep, TrainScope,
                                    hparams_from_custom_config, screening_options_from_custom_config)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_hparams_survive_a_json_round_trip(profile):
    config = load_config(profile)
    for hparams in (config.patch_training, config.image_training):
        restored = type(hparams).from_dict(json.loads(json.dumps(hparams.to_dict())))
        assert restored == hparams


def test_production_defaults_are_the_paper_values():
    patch = PatchHParams()
    assert [(s.scope, s.learning_rate, s.epochs) for s in patch.schedule] == [
        (TrainScope.NEW_LAYERS, 1e-3, 3), (TrainScope.TOP_OF_TRUNK, 1e-4, 10), (TrainScope.ALL, 1e-5, 37)]
    assert (patch.batch_size, patch.weight_decay, patch.patch_size) == (32, 1e-4, 224)
    assert patch.augmentation.rotation_degrees == 25 and patch.augmentation.zoom_range == (0.8, 1.2)
    image = ImageHParams()
    assert [(s.scope, s.learning_rate, s.epochs) for s in image.schedule] == [
        (TrainScope.NEW_LAYERS, 1e-4, 30), (TrainScope.ALL, 1e-5, 20)]
    assert image.weight_decay == 1e-3 and image.image_size == (1152, 896)
    assert image.top_block == TopBlockSpec("resnet", (512, 512), (2, 2), 2)
    assert image.best_model_monitor == "val_auc" and image.early_stopping_patience


def test_unknown_keys_are_errors_at_every_level():
    with pytest.raises(ValueError, match="bacth_size"):
        PatchHParams.from_dict({"bacth_size": 8})
    with pytest.raises(ValueError, match="lr"):
        ImageHParams.from_dict({"schedule": [{"scope": "all", "lr": 0.1, "epochs": 1}]})
    with pytest.raises(ValueError, match="flip"):
        ImageHParams.from_dict({"augmentation": {"flip": True}})
    with pytest.raises(ValueError, match="hparms"):
        hparams_from_custom_config(ImageHParams, {"hparms": {}})
    with pytest.raises(ValueError, match="preset"):  # profiles live in pipeline/config.py only
        hparams_from_custom_config(PatchHParams, {"preset": "tiny"})


def test_unknown_nested_keys_are_named_by_their_dotted_path_with_the_known_keys():
    with pytest.raises(ValueError, match=r"key top_block\.knd; the keys are bottleneck_expansion"):
        ImageHParams.from_dict({"top_block": {"knd": "vgg"}})
    with pytest.raises(ValueError, match=r"key schedule\[1\]\.lr;"):
        PatchHParams.from_dict({"schedule": [{"scope": "all", "learning_rate": 0.1, "epochs": 1},
                                             {"scope": "all", "lr": 0.1, "epochs": 1}]})
    with pytest.raises(ValueError, match=r"TrainingStep needs the keys \['schedule\[0\]\.epochs'\]"):
        PatchHParams.from_dict({"schedule": [{"scope": "all", "learning_rate": 0.1}]})
    with pytest.raises(ValueError, match="batch_size: expected an integer"):
        PatchHParams.from_dict({"batch_size": "32"})


def test_custom_config_hparams_replace_the_defaults_field_by_field():
    tiny = load_config("test").image_training
    hparams = hparams_from_custom_config(
        ImageHParams, {"hparams": {**tiny.to_dict(), "batch_size": 2, "top_block": {"kind": "vgg"}}})
    assert hparams.batch_size == 2 and hparams.image_size == (64, 48)
    assert hparams.top_block.kind == "vgg" and hparams.top_block.depths == (512, 512)
    assert hparams_from_custom_config(PatchHParams, None) == PatchHParams()


def test_custom_config_screening_options():
    config = {"hparams": {}, "screening": {"calibration": "isotonic", "target_value": 0.85}}
    assert hparams_from_custom_config(ImageHParams, config) == ImageHParams()
    options = screening_options_from_custom_config(config)
    assert options == ScreeningOptions(calibration=CalibrationMethod.ISOTONIC, target_value=0.85)
    assert screening_options_from_custom_config(None) == ScreeningOptions()
    with pytest.raises(ValueError, match="target_vlaue"):
        screening_options_from_custom_config({"screening": {"target_vlaue": 0.8}})


@pytest.mark.parametrize("bad", [
    {"backbone": "resnet18"}, {"dropout": 1.5}, {"batch_size": 0}, {"best_model_monitor": "loss"},
    {"schedule": []}, {"schedule": [{"scope": "everything", "learning_rate": 1e-3, "epochs": 1}]},
])
def test_invalid_patch_values_are_rejected(bad):
    with pytest.raises(ValueError):
        PatchHParams.from_dict(bad)


def test_whole_image_schedule_rejects_a_patch_only_scope():
    with pytest.raises(ValueError, match="top_of_trunk"):
        ImageHParams(schedule=(TrainingStep(TrainScope.TOP_OF_TRUNK, 1e-4, 1),))
