"""How a fine-tune run (`--profile finetune --base-model MODEL`) is wired: which MODEL folder it starts from,
where it reads its baseline and pushes, what it asks of the splits, and that it has no patch stage."""
import json
import os

import pytest

from components.model_card.executor import BASELINE_MODEL_KEY
from pipeline.config import load_config
from pipeline.evaluation import BASELINE_ID, MODEL_CARD_ID, PUSHER_ID
from pipeline.pipeline import (EXAMPLE_VALIDATOR_ID, IMAGE_TRAINER_ID, PATCH_TRAINER_ID, create_components,
                               push_directories, split_needs)


def _version(base: str, version: int, complete: bool = True) -> str:
    folder = os.path.join(base, str(version))
    os.makedirs(folder)
    if complete:
        open(os.path.join(folder, "saved_model.pb"), "wb").close()
    return folder


def _nodes(config, root: str) -> dict:
    return {node.id: node for node in create_components(config, os.path.join(root, "manifest"),
                                                        os.path.join(root, "pipeline"))}


def _init_from(trainer) -> str:
    return json.loads(trainer.exec_properties["custom_config"])["hparams"]["init_from"]


def test_a_base_folder_is_fine_tuned_from_its_newest_complete_version_and_pushed_beside_it(tmp_path):
    base = str(tmp_path / "serving" / "mammo")
    _version(base, 1700000000)
    newest = _version(base, 1700000500)
    _version(base, 1700000900, complete=False)  # still being copied by a Pusher
    config = load_config("finetune", overrides=[f"base_model={base}"])
    assert push_directories(config, str(tmp_path / "pipeline")) == (newest, base)
    nodes = _nodes(config, str(tmp_path))
    assert PATCH_TRAINER_ID not in nodes and "PatchSampler" not in nodes
    trainer = nodes[IMAGE_TRAINER_ID]
    assert "base_model" not in trainer.inputs
    assert _init_from(trainer) == newest
    assert nodes[BASELINE_ID].exec_properties["push_base_directory"] == newest
    assert json.loads(nodes[PUSHER_ID].exec_properties["push_destination"])["filesystem"]["base_directory"] == base
    assert nodes[EXAMPLE_VALIDATOR_ID].exec_properties["baseline_dir"] == base
    assert BASELINE_MODEL_KEY in nodes[MODEL_CARD_ID].inputs


def test_a_version_folder_is_the_start_and_its_base_folder_gets_the_new_version(tmp_path):
    base = str(tmp_path / "mammo")
    older = _version(base, 1)
    _version(base, 2)
    config = load_config("finetune", overrides=[f"base_model={older}"])
    assert push_directories(config, str(tmp_path / "pipeline")) == (older, base)


def test_a_bare_export_is_pushed_to_the_configured_serving_folder(tmp_path):
    export = str(tmp_path / "export")
    os.makedirs(export)
    open(os.path.join(export, "saved_model.pb"), "wb").close()
    config = load_config("finetune", overrides=[f"base_model={export}", f"evaluation.serving_dir={tmp_path / 'srv'}"])
    assert push_directories(config, str(tmp_path / "pipeline")) == (export, str(tmp_path / "srv" / "mammo"))


def test_a_fine_tune_needs_a_base_model_that_holds_a_model(tmp_path):
    with pytest.raises(ValueError, match="name it with --base-model"):
        push_directories(load_config("finetune"), str(tmp_path))
    empty = tmp_path / "nothing-pushed"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"the base model {empty} holds no model"):
        push_directories(load_config("finetune", overrides=[f"base_model={empty}"]), str(tmp_path))


def test_a_fine_tune_needs_labels_only_and_the_finetune_profile_trains_all_layers(tmp_path):
    export = str(tmp_path)
    config = load_config("finetune", overrides=[f"base_model={export}"])
    needs = split_needs(config)
    assert needs.located_lesions == () and needs.patches == ()
    assert needs.both_classes == ("eval", "test")
    assert split_needs(load_config("production")).located_lesions == ("train",)
    assert [step.scope.value for step in config.image_training.schedule] == ["all"]
    assert config.image_training.augmentation.has_affine
    assert config.evaluation.must_beat_baseline and not load_config("production").evaluation.must_beat_baseline
