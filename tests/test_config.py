"""The typed configuration: profiles, YAML and --set overrides, strict keys and types."""
import dataclasses
import json
import re

import pytest

from mammo_tfx.ingest.salt import DEFAULT_PATIENT_SALT, PATIENT_SALT_ENV
from pipeline.config import (PROFILES, KubeflowConfig, TrainerService, load_config,
                             parse_set_overrides)
from pipeline.pipeline import IMAGE_TRAINER_ID, PATCH_TRAINER_ID, create_pipeline


def test_every_profile_builds_and_names_itself():
    for name in PROFILES:
        config = load_config(name)
        assert config.profile == name
        assert config.pipeline_name == "mammo-tfx"


def test_production_uses_the_seed_working_size_and_demo_a_reduced_one():
    production, demo = load_config("production"), load_config("demo")
    assert (production.ingest.height, production.ingest.width) == (1152, 896)
    assert demo.ingest.height < production.ingest.height


def test_set_overrides_nested_values_with_their_types():
    config = load_config("demo", overrides=["ingest.height=300", "beam.direct_num_workers=1",
                                            "ingest.resize_mode=pad", "enable_cache=false"])
    assert config.ingest.height == 300
    assert config.beam.direct_num_workers == 1
    assert config.ingest.resize_mode == "pad"
    assert config.enable_cache is False


def test_yaml_file_then_set_overrides(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("ingest:\n  height: 400\n  width: 320\nsplits:\n  train: 3\n")
    config = load_config("demo", str(path), ["ingest.width=300"])
    assert (config.ingest.height, config.ingest.width) == (400, 300)
    assert config.splits.train == 3


@pytest.mark.parametrize("override, key", [("ingest.heigth=10", "ingest.heigth"),
                                           ("nosuchsection.x=1", "nosuchsection")])
def test_unknown_keys_are_errors(override, key):
    with pytest.raises(KeyError, match=rf"unknown \w+ key {re.escape(key)}; the keys are "):
        load_config("demo", overrides=[override])


def test_the_profile_name_is_not_a_key_to_set():
    with pytest.raises(KeyError, match="configuration key profile follows the profile chosen"):
        load_config("demo", overrides=["profile=production"])


@pytest.mark.parametrize("override", ["ingest.height=tall", "enable_cache=3", "splits=4"])
def test_wrong_types_are_errors(override):
    with pytest.raises(ValueError):
        load_config("demo", overrides=[override])


def test_unknown_profile_is_an_error():
    with pytest.raises(KeyError, match="unknown profile"):
        load_config("laptop")


def test_the_salt_is_no_part_of_a_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv(PATIENT_SALT_ENV, "site-secret-4711")
    config = load_config("production")
    # The environment is read by the ExampleGen where it runs, not by the configuration.
    assert config.ingest.patient_salt == DEFAULT_PATIENT_SALT
    assert "patient_salt" not in config.to_dict()["ingest"] and "patient_salt" not in config.ingest.to_dict()
    with pytest.raises(ValueError, match=f"ingest.patient_salt is a secret .*{PATIENT_SALT_ENV}"):
        load_config("test", overrides=["ingest.patient_salt=site-secret-4711"])
    config_file = tmp_path / "site.yaml"
    config_file.write_text("ingest:\n  patient_salt: site-secret-4711\n")
    with pytest.raises(ValueError, match="ingest.patient_salt is a secret"):
        load_config("test", str(config_file))
    # A salt given in code never reaches a repr, the recorded configuration or a component's properties.
    salted = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, patient_salt="site-secret-4711"))
    assert "site-secret-4711" not in repr(salted) + json.dumps(salted.to_dict(), default=str)
    carrying = [component.id for component in create_pipeline(salted, "gs://b/manifest", "gs://b/root").components
                if "site-secret-4711" in json.dumps(component.exec_properties, default=str)]
    assert carrying == []


def test_a_configured_salt_fingerprint_wins():
    config = load_config("test", overrides=["ingest.patient_salt_fingerprint=abc"])
    assert config.for_patient_salt("def").ingest.patient_salt_fingerprint == "abc"
    assert load_config("test").for_patient_salt("def").ingest.patient_salt_fingerprint == "def"


def test_parse_set_overrides_builds_nested_mapping():
    assert parse_set_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}
    with pytest.raises(ValueError):
        parse_set_overrides(["novalue"])


def test_trainer_sizes_follow_ingestion_and_sampling():
    config = load_config("demo", overrides=["ingest.height=320", "ingest.width=256", "patches.patch_size=64"])
    assert config.image_training.image_size == (320, 256)
    assert config.patch_training.patch_size == 64
    with pytest.raises(KeyError, match="follows ingest.height"):
        load_config("demo", overrides=["image_training.image_size=[10, 10]"])


def test_one_seed_and_one_determinism_switch_reach_sampling_and_both_trainers():
    config = load_config("test", overrides=["reproducibility.seed=7", "reproducibility.deterministic_ops=false"])
    assert config.patches.seed == config.patch_training.seed == config.image_training.seed == 7
    assert config.patch_training.deterministic_ops is False and config.image_training.deterministic_ops is False
    assert load_config("production").patch_training.deterministic_ops is True  # on unless turned off
    for key in ("patches.seed", "patch_training.seed", "image_training.deterministic_ops"):
        with pytest.raises(KeyError, match="follows reproducibility"):
            load_config("test", overrides=[f"{key}=1"])
    # What the pipeline hands the PatchSampler and the Trainers.
    components = {component.id: component.exec_properties
                  for component in create_pipeline(config, "gs://b/manifest", "gs://b/root").components}
    assert json.loads(components["PatchSampler"]["sampling_options"])["seed"] == 7
    for trainer in (PATCH_TRAINER_ID, IMAGE_TRAINER_ID):
        hparams = json.loads(components[trainer]["custom_config"])["hparams"]
        assert (hparams["seed"], hparams["deterministic_ops"]) == (7, False)


def test_schedule_and_enum_overrides_build_typed_steps(tmp_path):
    path = tmp_path / "schedule.yaml"
    path.write_text("patch_training:\n  schedule:\n    - {scope: new_layers, learning_rate: 0.01, epochs: 2}\n"
                    "    - {scope: all, learning_rate: 0.001, epochs: 1}\n  distribution: default\n")
    config = load_config("demo", str(path))
    assert [step.scope.value for step in config.patch_training.schedule] == ["new_layers", "all"]
    assert config.patch_training.total_epochs == 3
    assert config.patch_training.distribution.value == "default"
    with pytest.raises(ValueError, match="expected one of"):
        load_config("demo", overrides=["patch_training.distribution=tpu"])


def test_serving_limits_are_a_validated_section_that_reaches_the_whole_image_trainer_only():
    config = load_config("production", overrides=["serving.max_in_flight=8", "serving.request_timeout_s=12",
                                                  "serving.image.max_pixels=30000000"])
    assert (config.serving.max_in_flight, config.serving.request_timeout_s) == (8, 12.0)
    assert config.serving.image.max_pixels == 30_000_000 and config.serving.image.max_side == 8192
    trainers = {component.id: json.loads(component.exec_properties["custom_config"])
                for component in create_pipeline(config, "gs://b/manifest", "gs://b/root").components
                if component.id in (PATCH_TRAINER_ID, IMAGE_TRAINER_ID)}
    assert len(trainers) == 2
    # Only the whole-image export is served, calibrates and chooses operating thresholds: a change of those settings
    # leaves the patch Trainer's cached execution valid.
    assert trainers[IMAGE_TRAINER_ID]["image_limits"] == config.serving.image.to_dict()
    assert trainers[IMAGE_TRAINER_ID]["screening"] == config.evaluation.screening.to_dict()
    assert set(trainers[PATCH_TRAINER_ID]) == {"hparams", "checkpoints_dir"}
    for invalid in ("serving.max_in_flight=0", "serving.image.max_bytes=-1", "serving.request_timeout_s=0"):
        with pytest.raises(ValueError, match="positive"):
            load_config("production", overrides=[invalid])
    with pytest.raises(ValueError, match="integer"):
        load_config("production", overrides=["serving.image.max_side=1.5"])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_trainers_calibrate_on_the_eval_split_and_never_see_the_test_split(profile, tmp_path):
    # The whole-image Trainer fits its calibration and thresholds on its EvalArgs splits (trainer_module/export.py
    # reads fn_args.eval_files): the eval split, so the test split that the evaluation judges stays unseen.
    overrides = []
    if profile == "finetune":  # a base model to start from: the pipeline resolves the folder when it is built
        (tmp_path / "saved_model.pb").write_bytes(b"")
        overrides = [f"base_model={tmp_path}"]
    config = load_config(profile, overrides=overrides)
    components = {component.id: component
                  for component in create_pipeline(config, "gs://b/manifest", "gs://b/root").components}
    trainers = [trainer_id for trainer_id in (PATCH_TRAINER_ID, IMAGE_TRAINER_ID) if trainer_id in components]
    assert IMAGE_TRAINER_ID in trainers and (profile == "finetune") == (PATCH_TRAINER_ID not in trainers)
    for trainer_id in trainers:
        properties = components[trainer_id].exec_properties
        assert json.loads(properties["train_args"])["splits"] == ["train"], trainer_id
        assert json.loads(properties["eval_args"])["splits"] == ["eval"], trainer_id
    assert config.evaluation.split == "test"
    assert json.loads(components["Evaluator"].exec_properties["example_splits"]) == ["test"]


VERTEX = ["kubeflow.trainer_service=vertex", "kubeflow.vertex_project=mammo-project",
          "kubeflow.vertex_region=europe-west4", "kubeflow.vertex_machine_type=n1-standard-8"]


def test_the_trainers_train_in_their_pods_unless_vertex_is_chosen():
    assert load_config("production").kubeflow.trainer_service == TrainerService.POD
    kubeflow = load_config("production", overrides=VERTEX + ["kubeflow.vertex_accelerator_type=NVIDIA_TESLA_T4",
                                                             "kubeflow.vertex_accelerator_count=4"]).kubeflow
    assert kubeflow.trainer_service == TrainerService.VERTEX
    assert (kubeflow.vertex_accelerator_type, kubeflow.vertex_accelerator_count, kubeflow.vertex_worker_count) == (
        "NVIDIA_TESLA_T4", 4, 1)
    # Built in code from a plain string, the service is the enum too.
    assert KubeflowConfig(trainer_service="pod").trainer_service == TrainerService.POD


@pytest.mark.parametrize("overrides, message", [
    (["kubeflow.trainer_service=vertex"],
     r"trainer_service 'vertex' needs \['kubeflow.vertex_project', 'kubeflow.vertex_region', "
     r"'kubeflow.vertex_machine_type'\]"),
    (VERTEX[:2] + VERTEX[3:], r"needs \['kubeflow.vertex_region'\]"),
    (["kubeflow.trainer_service=cloud"], r"kubeflow.trainer_service: expected one of \['pod', 'vertex'\]"),
    (VERTEX + ["kubeflow.vertex_accelerator_count=2"], "vertex_accelerator_type and kubeflow.vertex_accelerator_count"),
    (VERTEX + ["kubeflow.vertex_accelerator_type=NVIDIA_TESLA_T4"], "go together .* 'NVIDIA_TESLA_T4' and 0"),
    (VERTEX + ["kubeflow.vertex_accelerator_count=-1"], "vertex_accelerator_count must not be negative"),
    (VERTEX + ["kubeflow.vertex_worker_count=0"], "vertex_worker_count must be at least 1"),
    (VERTEX + ["kubeflow.vertex_worker_count=2"], "more than one machine needs multi-worker distribution"),
])
def test_incomplete_or_unsupported_vertex_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config("production", overrides=overrides)


def test_a_service_not_named_in_the_enum_is_refused_when_built_in_code():
    with pytest.raises(ValueError, match=r"kubeflow.trainer_service must be one of \['pod', 'vertex'\], got 'gpu'"):
        KubeflowConfig(trainer_service="gpu")


def test_production_smoke_keeps_every_production_value_but_steps_data_sizes_and_gate_bounds():
    production, smoke = load_config("production"), load_config("production-smoke")
    assert smoke.ingest == production.ingest and smoke.patches == production.patches
    for stage in ("patch_training", "image_training"):
        full, cut = getattr(production, stage), getattr(smoke, stage)
        assert [(s.scope, s.learning_rate, s.weight_decay) for s in cut.schedule] == \
            [(s.scope, s.learning_rate, s.weight_decay) for s in full.schedule]
        assert {s.epochs for s in cut.schedule} == {1} and cut.steps_per_epoch == 1
        assert not cut.mixed_precision and full.mixed_precision  # float16 is emulated on a CPU
        assert cut.augmentation == full.augmentation and cut.weight_decay == full.weight_decay
    assert smoke.patch_training.backbone == production.patch_training.backbone == "resnet50"
    assert smoke.patch_training.backbone_weights is None  # offline from a fresh clone
    assert smoke.image_training.top_block == production.image_training.top_block
    assert smoke.image_training.image_size == (1152, 896)
    assert smoke.evaluation.gate_unit == production.evaluation.gate_unit == "breast"
    assert smoke.evaluation.min_overall_auc == 0.0 and smoke.evaluation.min_dataset_auc == {}
    assert smoke.kubeflow == production.kubeflow and smoke.beam == production.beam


def test_production_smoke_takes_a_backbone_weights_file_from_set(tmp_path):
    weights = tmp_path / "resnet50_notop.h5"
    config = load_config("production-smoke", overrides=[f"patch_training.backbone_weights={weights}"])
    assert config.patch_training.backbone_weights == str(weights)


def test_the_whole_image_trainer_follows_the_ingestion_resize_mode():
    assert load_config("test", overrides=["ingest.resize_mode=pad"]).image_training.resize_mode == "pad"
    assert load_config("test").image_training.resize_mode == "stretch"
    with pytest.raises(ValueError, match="ingest.resize_mode"):
        load_config("test", overrides=["image_training.resize_mode=pad"])
