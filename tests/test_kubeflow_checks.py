"""The Kubeflow helpers on their own: resource requests, repo-path relocation, the machine-path scan and the
KFP v2 compatibility check. No compile here; see test_kubeflow_compile.py for the real pipeline."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest
from tfx import v1 as tfx
from tfx.types.artifact import Artifact, Property, PropertyType

from pipeline import kubeflow, kubeflow_checks
from pipeline.paths import REPO_ROOT

SCHEMA_IN_REPO = os.path.join(REPO_ROOT, "schemas", "schema.pbtxt")


class BadlyNamedReport(Artifact):
    TYPE_NAME = "MammoBadlyNamedReport"


class UnimportableReport(Artifact):
    TYPE_NAME = "mammo_nowhere.UnimportableReport"


class ReportWithProperties(Artifact):
    TYPE_NAME = "mammo_nowhere.ReportWithProperties"
    PROPERTIES = {"span": Property(type=PropertyType.INT)}


def _pipeline(components: list, name: str = "mammo-tfx") -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(pipeline_name=name, pipeline_root="gs://bucket/root", components=components)


def _importer(artifact_type: type, node_id: str) -> tfx.dsl.Importer:
    return tfx.dsl.Importer(source_uri="gs://bucket/report", artifact_type=artifact_type).with_id(node_id)


def test_resource_request_becomes_the_kfp_resource_spec() -> None:
    spec = kubeflow.ResourceRequest(cpu_limit=6, memory_limit_gb=24, gpu_count=1, gpu_type="nvidia.com/gpu"
                                    ).to_resource_spec()
    assert (spec.cpu_limit, spec.memory_limit) == (6.0, 24.0)
    assert (spec.accelerator.type, spec.accelerator.count) == ("nvidia.com/gpu", 1)
    assert not kubeflow.ResourceRequest(memory_limit_gb=8).to_resource_spec().HasField("accelerator")


@pytest.mark.parametrize("values", [dict(trainer_cpu_limit=-1), dict(trainer_memory_limit_gb=-2),
                                    dict(trainer_gpu_count=-1), dict(trainer_gpu_count=1, trainer_gpu_type="")])
def test_invalid_resource_requests_are_refused(values: dict) -> None:
    """Resource requests come only from the configuration, which refuses these."""
    with pytest.raises(ValueError):
        kubeflow.KubeflowConfig(**values)


def test_kubeflow_config_maps_to_the_trainer_request() -> None:
    settings = kubeflow.KubeflowConfig(trainer_gpu_count=4, trainer_gpu_type="NVIDIA_L4", trainer_cpu_limit=16,
                                       trainer_memory_limit_gb=64)
    assert kubeflow.trainer_resources(settings) == kubeflow.ResourceRequest(16, 64, 4, "NVIDIA_L4")
    assert kubeflow.trainer_resources(kubeflow.KubeflowConfig()).is_empty()


def test_trainer_resources_go_to_trainer_components_only() -> None:
    schema_gen = tfx.components.ImportSchemaGen(schema_file="gs://bucket/schema.pbtxt")
    trainer_like = tfx.components.ImportSchemaGen(schema_file="gs://bucket/schema.pbtxt").with_id("Trainer_patch")
    applied = kubeflow.apply_resource_requests([schema_gen, trainer_like], kubeflow.KubeflowConfig(trainer_gpu_count=1))
    assert applied == ["Trainer_patch"]
    assert trainer_like.platform_config.accelerator.count == 1
    assert schema_gen.platform_config is None


def test_an_empty_request_attaches_nothing() -> None:
    trainer_like = tfx.components.ImportSchemaGen(schema_file="gs://bucket/schema.pbtxt").with_id("Trainer")
    assert kubeflow.apply_resource_requests([trainer_like], kubeflow.KubeflowConfig()) == []
    assert trainer_like.platform_config is None


def test_repo_paths_are_moved_into_the_image_and_bucket_paths_stay() -> None:
    local_schema = tfx.components.ImportSchemaGen(schema_file=SCHEMA_IN_REPO)
    bucket_schema = tfx.components.ImportSchemaGen(schema_file="gs://bucket/schema.pbtxt").with_id("Other")
    moved = kubeflow.relocate_repo_paths([local_schema, bucket_schema], REPO_ROOT, "/opt/app")
    assert moved == {"ImportSchemaGen.schema_file": "/opt/app/schemas/schema.pbtxt"}
    assert local_schema.exec_properties["schema_file"] == "/opt/app/schemas/schema.pbtxt"
    assert bucket_schema.exec_properties["schema_file"] == "gs://bucket/schema.pbtxt"


def test_machine_paths_are_found_where_a_path_starts_even_inside_embedded_json() -> None:
    job = {
        "bucket": "gs://bucket/tmp/run",
        "image_copy": "/opt/mammo-tfx/schemas/schema.pbtxt",
        "scratch": "/tmp",
        "nested": [{"config": '{"path": "/home/me/data/cbis"}'}],
        "arg": "--temp_location=/tmp/beam",
    }
    found = kubeflow_checks.find_machine_paths(job, "/opt/mammo-tfx", prefixes=["/tmp", "/home/me", "/opt"])
    assert found == ["--temp_location=/tmp/beam", "/tmp", '{"path": "/home/me/data/cbis"}']


def test_a_pipeline_name_kubeflow_rejects_is_reported() -> None:
    schema_gen = tfx.components.ImportSchemaGen(schema_file="gs://bucket/schema.pbtxt")
    with pytest.raises(ValueError, match="lower case"):
        kubeflow_checks.check_kubeflow_compatibility(_pipeline([schema_gen], name="mammo_tfx"))


def test_custom_artifact_types_must_be_importable_schema_titles_without_properties() -> None:
    pipeline = _pipeline([_importer(BadlyNamedReport, "bad_name"), _importer(UnimportableReport, "unimportable"),
                          _importer(ReportWithProperties, "with_properties")])
    with pytest.raises(ValueError) as error:
        kubeflow_checks.check_kubeflow_compatibility(pipeline)
    message = str(error.value)
    assert "'MammoBadlyNamedReport'): TYPE_NAME must be '<package>.<Class>'" in message
    assert "importing 'mammo_nowhere.UnimportableReport' does not give this class" in message
    assert "no PROPERTIES (found ['span'])" in message


def test_standard_artifact_types_pass_the_check() -> None:
    schema_gen = tfx.components.ImportSchemaGen(schema_file="gs://bucket/schema.pbtxt")
    examples = _importer(tfx.types.standard_artifacts.Examples, "examples")
    statistics_gen = tfx.components.StatisticsGen(examples=examples.outputs["result"])
    kubeflow_checks.check_kubeflow_compatibility(_pipeline([schema_gen, examples, statistics_gen]))


def test_module_files_are_refused_because_they_would_be_staged_at_compile_time() -> None:
    examples = _importer(tfx.types.standard_artifacts.Examples, "examples")
    schema_gen = tfx.components.ImportSchemaGen(schema_file="gs://bucket/schema.pbtxt")
    transform = tfx.components.Transform(examples=examples.outputs["result"], schema=schema_gen.outputs["schema"],
                                         module_file="gs://bucket/preprocessing.py")
    with pytest.raises(ValueError, match="Transform: module_file"):
        kubeflow_checks.check_kubeflow_compatibility(_pipeline([examples, schema_gen, transform]))


CLOUD = tfx.extensions.google_cloud_ai_platform
VERTEX = kubeflow.KubeflowConfig(trainer_service="vertex", vertex_project="mammo-project",
                                 vertex_region="europe-west4", vertex_machine_type="n1-standard-8")


def _cloud_trainer(examples: tfx.dsl.Importer, node_id: str) -> CLOUD.Trainer:
    return CLOUD.Trainer(examples=examples.outputs["result"], run_fn="trainer_module.patch_trainer.run_fn",
                         custom_config=kubeflow.vertex_training_config(VERTEX, "registry/mammo-tfx:1")).with_id(node_id)


def test_vertex_training_config_is_the_extensions_custom_job() -> None:
    config = kubeflow.vertex_training_config(VERTEX, "registry/mammo-tfx:1")
    assert config == {
        CLOUD.ENABLE_VERTEX_KEY: True,
        CLOUD.VERTEX_REGION_KEY: "europe-west4",
        CLOUD.TRAINING_ARGS_KEY: {"project": "mammo-project", "job_spec": {"worker_pool_specs": [{
            "machine_spec": {"machine_type": "n1-standard-8"},  # no accelerator configured, none requested
            "replica_count": 1,
            "container_spec": {"image_uri": "registry/mammo-tfx:1"}}]}},
    }


@pytest.mark.parametrize("job_spec, message", [
    ({"worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-8", "accelerator_type": "TESLA_T4",
                                              "accelerator_count": 1}}]},
     "'TESLA_T4' is not a Vertex AI accelerator type; known: .*'NVIDIA_TESLA_T4'"),
    ({"worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-8", "gpus": 1}}]},
     "not a CustomJobSpec .*Unknown field for MachineSpec: gpus"),
])
def test_a_job_spec_vertex_ai_would_refuse_is_refused_at_compile_time(job_spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kubeflow_checks.check_vertex_job_spec(job_spec)


def test_trainers_on_vertex_get_no_pod_resources() -> None:
    examples = _importer(tfx.types.standard_artifacts.Examples, "examples")
    on_vertex = _cloud_trainer(examples, "Trainer_patch")
    in_pod = tfx.components.Trainer(examples=examples.outputs["result"], run_fn="trainer_module.image_trainer.run_fn"
                                    ).with_id("Trainer_image")
    applied = kubeflow.apply_resource_requests([examples, on_vertex, in_pod],
                                               kubeflow.KubeflowConfig(trainer_gpu_count=1))
    assert applied == ["Trainer_image"]
    assert on_vertex.platform_config is None


def test_accelerators_on_the_pod_of_a_trainer_on_vertex_are_refused() -> None:
    examples = _importer(tfx.types.standard_artifacts.Examples, "examples")
    on_vertex = _cloud_trainer(examples, "Trainer_patch")
    kubeflow_checks.check_kubeflow_compatibility(_pipeline([examples, on_vertex]))
    on_vertex.with_platform_config(kubeflow.ResourceRequest(gpu_count=1).to_resource_spec())
    with pytest.raises(ValueError, match="Trainer_patch: trains in a Vertex AI job.*would stay idle"):
        kubeflow_checks.check_kubeflow_compatibility(_pipeline([examples, on_vertex]))


def _spec(executor: dict, parameter: dict, schema_version: str = "2.1.0") -> dict:
    """A one-task PipelineSpec as TFX's v2 compiler lays it out."""
    return {
        "schemaVersion": schema_version,
        "root": {"dag": {"tasks": {"Trainer_image": {
            "componentRef": {"name": "Trainer_image"},
            "inputs": {"parameters": {"run_fn": {"runtimeValue": parameter}}}}}}},
        "components": {"Trainer_image": {"executorLabel": "Trainer_image_executor",
                                         "inputDefinitions": {"parameters": {"run_fn": {"parameterType": "STRING"}}}}},
        "deploymentSpec": {"executors": {"Trainer_image_executor": executor}},
    }


CONTAINER = {"container": {"image": "registry/mammo-tfx:1", "args": ["--executor_class_path", "x.Executor"]}}
CUSTOM_JOB = {"customJob": {"customJob": {"jobSpec": {"workerPoolSpecs": [{"replicaCount": "1"}]}}}}
RESOLVER = {"resolver": {"outputArtifactQueries": {"model": {"filter": "schema_title=\"tfx.Model\""}}}}
CONSTANT = {"constant": "trainer_module.image_trainer.run_fn"}


def test_a_container_spec_in_schema_2_1_passes_for_both_trainer_services() -> None:
    for service in (kubeflow.TrainerService.POD, kubeflow.TrainerService.VERTEX):
        kubeflow_checks.check_compiled_spec(_spec(CONTAINER, CONSTANT), service)


def test_a_custom_job_is_refused_unless_the_trainers_train_on_vertex() -> None:
    with pytest.raises(ValueError) as error:
        kubeflow_checks.check_compiled_spec(_spec(CUSTOM_JOB, CONSTANT), kubeflow.TrainerService.POD)
    assert str(error.value) == (
        "the compiled pipeline would be refused by open-source Kubeflow Pipelines 2.x and Vertex AI Pipelines:\n"
        "  task Trainer_image has a customJob executor: open-source Kubeflow Pipelines refuses customJob executors "
        "(Google Cloud only); they are allowed only with kubeflow.trainer_service vertex, for Vertex AI Pipelines")
    kubeflow_checks.check_compiled_spec(_spec(CUSTOM_JOB, CONSTANT), kubeflow.TrainerService.VERTEX)


def test_a_resolver_task_is_refused_for_either_target() -> None:
    with pytest.raises(ValueError, match="task Trainer_image has a resolver executor: open-source Kubeflow "
                                         "Pipelines compiles only container and importer executors"):
        kubeflow_checks.check_compiled_spec(_spec(RESOLVER, CONSTANT), kubeflow.TrainerService.POD)
    with pytest.raises(ValueError, match="task Trainer_image has a resolver executor: the pipeline for Vertex AI "
                                         "Pipelines uses only container, importer, customJob executors"):
        kubeflow_checks.check_compiled_spec(_spec(RESOLVER, CONSTANT), kubeflow.TrainerService.VERTEX)


def test_schema_2_0_parameters_are_refused() -> None:
    legacy = {"constantValue": {"stringValue": "trainer_module.image_trainer.run_fn"}}
    with pytest.raises(ValueError) as error:
        kubeflow_checks.check_compiled_spec(_spec(CONTAINER, legacy, schema_version="2.0.0"),
                                            kubeflow.TrainerService.POD)
    message = str(error.value)
    assert "schema version 2.0.0; the parameter form of schema 2.1.0 is required" in message
    assert ("task Trainer_image, parameter run_fn: runtimeValue.constantValue is the schema 2.0 form; the KFP "
            "driver reads runtimeValue.constant (schema 2.1)") in message
