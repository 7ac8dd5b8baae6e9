"""Compiling the real mammo-tfx pipeline for Kubeflow Pipelines v2: strict spec validation, task graph, image,
resources, and no reference to this machine. Compiling runs no step, so these tests stay fast and offline."""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest
import yaml
from google.protobuf import json_format
from kfp import components as kfp_components
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.utils import name_utils

from pipeline import kubeflow, kubeflow_checks
from pipeline.config import PipelineConfig, load_config
from pipeline.paths import REPO_ROOT, SETUP_FILE
from pipeline.pipeline import IMAGE_TRAINER_ID, PATCH_TRAINER_ID, create_pipeline
from trainer_module.hparams import CLOUD_TRAINING_KEY_PREFIX, ImageHParams, PatchHParams, hparams_from_custom_config

IMAGE = "europe-docker.pkg.dev/mammo-project/mammo/mammo-tfx:2024-06-01"
PIPELINE_ROOT = "gs://mammo-bucket/pipeline-root"
MANIFEST_DIR = "gs://mammo-bucket/manifests/run-1"
# The production profile compiles only with a source of the patient-key salt (tests/test_kubeflow_secrets.py).
SALT_FILE = "gs://mammo-secrets/patient-salt"
SALT_FROM_BUCKET = [f"ingest.patient_salt_file={SALT_FILE}"]


@dataclass(frozen=True)
class Compiled:
    config: PipelineConfig
    json_path: Path
    yaml_path: Path
    json_job: Dict[str, Any]
    out_dir: Path
    working_dir: Path


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Any connection attempt fails the test: compiling must need no network."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"compiling tried to open a network connection: {args}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory, offline: None) -> Compiled:
    out_dir = tmp_path_factory.mktemp("kfp_out")
    working_dir = tmp_path_factory.mktemp("kfp_cwd")
    config = load_config("production", overrides=SALT_FROM_BUCKET)
    with pytest.MonkeyPatch.context() as patch:
        # From an empty working dir, a stray relative write (wheels, a "gs:" folder) shows up as a file there.
        patch.chdir(working_dir)
        json_job = kubeflow.compile_kfp(config, IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(out_dir / "pipeline.json"))
        kubeflow.compile_kfp(config, IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(out_dir / "pipeline.yaml"))
    return Compiled(config, out_dir / "pipeline.json", out_dir / "pipeline.yaml", json_job, out_dir, working_dir)


def _task_names(pipeline_job: Mapping[str, Any]) -> List[str]:
    return sorted(pipeline_job["pipelineSpec"]["root"]["dag"]["tasks"])


def _task_dependencies(pipeline_job: Mapping[str, Any]) -> Dict[str, Tuple[str, ...]]:
    """Task name -> names of the tasks it waits for, as compiled."""
    tasks = pipeline_job["pipelineSpec"]["root"]["dag"]["tasks"]
    return {name: tuple(sorted(task.get("dependentTasks", []))) for name, task in tasks.items()}


def _executor(pipeline_job: Mapping[str, Any], task_name: str) -> Dict[str, Any]:
    spec = pipeline_job["pipelineSpec"]
    component_name = spec["root"]["dag"]["tasks"][task_name]["componentRef"]["name"]
    return spec["deploymentSpec"]["executors"][spec["components"][component_name]["executorLabel"]]


def _container_task_names(pipeline_job: Mapping[str, Any]) -> List[str]:
    """Tasks that run a container (resolver tasks, which only query metadata, do not)."""
    return [name for name in _task_names(pipeline_job) if "container" in _executor(pipeline_job, name)]


def _task_container(pipeline_job: Mapping[str, Any], task_name: str) -> Dict[str, Any]:
    """The container spec (image, command, args, resources) that runs `task_name`."""
    return _executor(pipeline_job, task_name)["container"]


def _expected_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    return create_pipeline(config, MANIFEST_DIR, PIPELINE_ROOT)


def _strictly_parsed_job(job: Dict[str, Any]) -> pipeline_spec_pb2.PipelineJob:
    return json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob(), ignore_unknown_fields=False)


def test_json_is_a_strictly_valid_pipeline_job(compiled: Compiled) -> None:
    on_disk = json.loads(compiled.json_path.read_text())
    assert on_disk == compiled.json_job
    job = _strictly_parsed_job(on_disk)
    json_format.ParseDict(on_disk["pipelineSpec"], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    assert job.display_name == compiled.config.pipeline_name
    assert job.pipeline_spec["pipelineInfo"]["name"] == compiled.config.pipeline_name
    assert job.runtime_config.gcs_output_directory == PIPELINE_ROOT


def test_yaml_is_the_strictly_valid_pipeline_spec_and_kfp_loads_it(compiled: Compiled) -> None:
    spec_dict = yaml.safe_load(compiled.yaml_path.read_text())
    json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    assert spec_dict == compiled.json_job["pipelineSpec"]  # same pipeline, only the envelope differs
    assert spec_dict["defaultPipelineRoot"] == PIPELINE_ROOT  # the YAML alone tells KFP where outputs go

    component = kfp_components.load_component_from_file(str(compiled.yaml_path))
    assert component.name == compiled.config.pipeline_name
    assert sorted(component.pipeline_spec.root.dag.tasks) == _task_names(compiled.json_job)


def _node_of_task(task: str, node_ids: List[str]) -> str:
    """The pipeline node a compiled task belongs to: TFX's v2 compiler turns a Resolver node into one resolver
    task per input channel, named `<resolver id>-<channel>-resolver`."""
    return next((node for node in node_ids if task == node or task.startswith(node + "-")), task)


def test_every_component_is_a_task_waiting_for_its_upstream_components(compiled: Compiled) -> None:
    pipeline = _expected_pipeline(compiled.config)
    node_ids = [c.id for c in pipeline.components]
    expected = {c.id: set(u.id for u in c.upstream_nodes) for c in pipeline.components}
    compiled_graph: Dict[str, set] = {}
    for task, dependencies in _task_dependencies(compiled.json_job).items():
        compiled_graph.setdefault(_node_of_task(task, node_ids), set()).update(
            _node_of_task(d, node_ids) for d in dependencies)
    assert sorted(compiled_graph) == sorted(expected)
    assert compiled_graph == expected
    assert any(expected.values()), "the pipeline should have at least one dependency to check"


def test_every_step_runs_the_given_image_with_the_configured_beam_args(compiled: Compiled) -> None:
    # The DirectRunner's --setup_file names the project's setup.py: the image's copy in the compiled pipeline.
    image_setup_file = f"--setup_file={kubeflow.IMAGE_REPO_DIR}/setup.py"
    beam_args = [image_setup_file if arg == f"--setup_file={SETUP_FILE}" else arg
                 for arg in compiled.config.beam.pipeline_args()]
    assert image_setup_file in beam_args
    for name in _container_task_names(compiled.json_job):
        container = _task_container(compiled.json_job, name)
        assert container["image"] == IMAGE, name
        assert container["args"][-len(beam_args):] == beam_args, name


def test_the_manifest_dir_feeds_the_example_gen(compiled: Compiled) -> None:
    tasks = compiled.json_job["pipelineSpec"]["root"]["dag"]["tasks"]
    input_bases = [task["inputs"]["parameters"]["input_base"]["runtimeValue"]["constantValue"]["stringValue"]
                   for task in tasks.values() if "input_base" in task.get("inputs", {}).get("parameters", {})]
    assert input_bases == [MANIFEST_DIR]


def _path_like_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _path_like_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _path_like_strings(item)
    elif isinstance(value, str) and value.lstrip().startswith("{") and _json_object(value) is not None:
        # Execution properties that are protos travel as JSON text (e.g. the Pusher's push destination).
        yield from _path_like_strings(_json_object(value))
    elif isinstance(value, str) and (value.startswith("/") or "://" in value):
        yield value


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # e.g. KFP placeholders such as "{{$}}"
        return None


def test_every_path_is_in_the_bucket_or_the_image(compiled: Compiled) -> None:
    for path in (compiled.json_path, compiled.yaml_path):
        text = path.read_text()
        for local in ("/work/", "/tmp/", str(compiled.out_dir), str(compiled.working_dir), REPO_ROOT):
            assert local not in text, f"{path.name} mentions {local}"
    allowed = (PIPELINE_ROOT, MANIFEST_DIR, kubeflow.IMAGE_REPO_DIR + "/", SALT_FILE)
    paths = list(_path_like_strings(compiled.json_job))
    assert paths, "the compiled job should carry the pipeline root and manifest dir"
    assert [p for p in paths if not p.startswith(allowed)] == []
    assert kubeflow_checks.find_machine_paths(compiled.json_job, kubeflow.IMAGE_REPO_DIR) == []


def test_compiling_writes_only_the_package(compiled: Compiled) -> None:
    assert sorted(p.name for p in compiled.out_dir.iterdir()) == ["pipeline.json", "pipeline.yaml"]
    assert list(compiled.working_dir.iterdir()) == []


def test_resources_follow_the_configured_kubeflow_section(compiled: Compiled) -> None:
    """Trainer tasks carry resources exactly when the configuration asks for them; no other task does."""
    configured = compiled.config.kubeflow
    requested = kubeflow.trainer_resources(configured)
    for name in _container_task_names(compiled.json_job):
        resources = _task_container(compiled.json_job, name).get("resources")
        if name.startswith(kubeflow.TRAINER_ID_PREFIX) and not requested.is_empty():
            assert resources == json_format.MessageToDict(requested.to_resource_spec()), name
        else:
            assert resources is None, name


def test_trainer_tasks_request_the_configured_gpus(tmp_path: Path, offline: None) -> None:
    config = load_config("production")
    settings = kubeflow.KubeflowConfig(trainer_gpu_count=2, trainer_gpu_type="NVIDIA_TESLA_T4",
                                       trainer_cpu_limit=8, trainer_memory_limit_gb=30)
    job = kubeflow.compile_pipeline(_expected_pipeline(config), IMAGE, str(tmp_path / "pipeline.json"), kubeflow=settings)
    _strictly_parsed_job(job)

    trainers = [n for n in _task_names(job) if n.startswith(kubeflow.TRAINER_ID_PREFIX)]
    assert trainers
    for name in _container_task_names(job):
        resources = _task_container(job, name).get("resources")
        if name in trainers:
            assert resources == {"cpuLimit": 8.0, "memoryLimit": 30.0,
                                 "accelerator": {"type": "NVIDIA_TESLA_T4", "count": "2"}}, name
        else:
            assert resources is None, name


def test_any_component_can_request_resources_including_the_example_gen(tmp_path: Path, offline: None) -> None:
    """The mechanism is generic: TFX's step builder drops resources of a FileBasedExampleGen, compile puts them
    back; an ordinary component keeps them."""
    pipeline = _expected_pipeline(load_config("production"))
    example_gen_ids = kubeflow.request_resources(
        pipeline.components, "MammoExampleGen", kubeflow.ResourceRequest(cpu_limit=4, memory_limit_gb=26))
    statistics_ids = kubeflow.request_resources(
        pipeline.components, "StatisticsGen", kubeflow.ResourceRequest(memory_limit_gb=12))
    assert example_gen_ids == ["MammoExampleGen"] and statistics_ids == ["StatisticsGen"]

    job = kubeflow.compile_pipeline(pipeline, IMAGE, str(tmp_path / "pipeline.yaml"))
    json_format.ParseDict(yaml.safe_load((tmp_path / "pipeline.yaml").read_text()), pipeline_spec_pb2.PipelineSpec(),
                          ignore_unknown_fields=False)
    assert _task_container(job, "MammoExampleGen")["resources"] == {"cpuLimit": 4.0, "memoryLimit": 26.0}
    assert _task_container(job, "StatisticsGen")["resources"] == {"memoryLimit": 12.0}
    untouched: List[str] = [n for n in _container_task_names(job) if n not in ("MammoExampleGen", "StatisticsGen")]
    assert untouched and all("resources" not in _task_container(job, n) for n in untouched)


def test_local_paths_are_refused_before_compiling(tmp_path: Path) -> None:
    config = load_config("production", overrides=SALT_FROM_BUCKET)
    with pytest.raises(ValueError, match="manifest dir"):
        kubeflow.compile_kfp(config, IMAGE, PIPELINE_ROOT, str(tmp_path), str(tmp_path / "p.json"))
    with pytest.raises(ValueError, match="pipeline root"):
        kubeflow.compile_kfp(config, IMAGE, "file:///srv/root", MANIFEST_DIR, str(tmp_path / "p.json"))
    with pytest.raises(ValueError, match=r"\.json"):
        kubeflow.compile_kfp(config, IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(tmp_path / "p.txt"))
    assert list(tmp_path.iterdir()) == []


VERTEX_SETTINGS = ["kubeflow.trainer_service=vertex", "kubeflow.vertex_project=mammo-project",
                   "kubeflow.vertex_region=europe-west4", "kubeflow.vertex_machine_type=a2-highgpu-2g",
                   "kubeflow.vertex_accelerator_type=NVIDIA_TESLA_A100", "kubeflow.vertex_accelerator_count=2",
                   *SALT_FROM_BUCKET]
TRAINER_IDS = (PATCH_TRAINER_ID, IMAGE_TRAINER_ID)
CLOUD = tfx.extensions.google_cloud_ai_platform


@pytest.fixture(scope="module")
def compiled_for_vertex(tmp_path_factory: pytest.TempPathFactory, offline: None) -> Dict[str, Any]:
    """The production pipeline (which requests a GPU per Trainer pod) with both Trainers on Vertex AI."""
    config = load_config("production", overrides=VERTEX_SETTINGS)
    out = tmp_path_factory.mktemp("kfp_vertex") / "pipeline.json"
    return kubeflow.compile_kfp(config, IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(out))


def _executor_class(pipeline_job: Mapping[str, Any], task_name: str) -> str:
    args = _task_container(pipeline_job, task_name)["args"]
    return args[args.index("--executor_class_path") + 1]


def _custom_config(pipeline_job: Mapping[str, Any], task_name: str) -> Dict[str, Any]:
    parameters = pipeline_job["pipelineSpec"]["root"]["dag"]["tasks"][task_name]["inputs"]["parameters"]
    return json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])


def test_plain_trainers_train_in_their_pods(compiled: Compiled) -> None:
    for trainer in TRAINER_IDS:
        assert _executor_class(compiled.json_job, trainer) == name_utils.get_full_name(
            tfx.components.Trainer.EXECUTOR_SPEC.executor_class)
        custom_config = _custom_config(compiled.json_job, trainer)
        assert not [key for key in custom_config if key.startswith(CLOUD_TRAINING_KEY_PREFIX)], trainer


def test_vertex_trainers_submit_the_configured_custom_job(compiled_for_vertex: Dict[str, Any]) -> None:
    _strictly_parsed_job(compiled_for_vertex)
    expected_job_spec = {"worker_pool_specs": [{
        "machine_spec": {"machine_type": "a2-highgpu-2g", "accelerator_type": "NVIDIA_TESLA_A100",
                         "accelerator_count": 2},
        "replica_count": 1,
        "container_spec": {"image_uri": IMAGE},
    }]}
    for trainer in TRAINER_IDS:
        assert _executor_class(compiled_for_vertex, trainer) == name_utils.get_full_name(
            CLOUD.Trainer.EXECUTOR_SPEC.executor_class) == \
            "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
        custom_config = _custom_config(compiled_for_vertex, trainer)
        assert custom_config[CLOUD.ENABLE_VERTEX_KEY] is True
        assert custom_config[CLOUD.VERTEX_REGION_KEY] == "europe-west4"
        assert custom_config[CLOUD.TRAINING_ARGS_KEY] == {"project": "mammo-project", "job_spec": expected_job_spec}
        # The pod only waits for the job: production's GPU request for the Trainer pods is not applied.
        assert "resources" not in _task_container(compiled_for_vertex, trainer), trainer


def test_vertex_changes_only_the_trainer_steps(compiled: Compiled, compiled_for_vertex: Dict[str, Any]) -> None:
    assert _task_dependencies(compiled_for_vertex) == _task_dependencies(compiled.json_job)
    for name in _container_task_names(compiled.json_job):
        if name not in TRAINER_IDS:
            assert _task_container(compiled_for_vertex, name) == _task_container(compiled.json_job, name), name


def test_the_run_fns_accept_the_custom_config_the_vertex_job_hands_them(compiled_for_vertex: Dict[str, Any]) -> None:
    """The extension passes its own keys on to the run_fn inside the job, whose custom_config check is strict."""
    config = load_config("production", overrides=VERTEX_SETTINGS)
    for trainer, hparams_class, expected in ((PATCH_TRAINER_ID, PatchHParams, config.patch_training),
                                             (IMAGE_TRAINER_ID, ImageHParams, config.image_training)):
        custom_config = _custom_config(compiled_for_vertex, trainer)
        assert [key for key in custom_config if key.startswith(CLOUD_TRAINING_KEY_PREFIX)], trainer
        assert hparams_from_custom_config(hparams_class, custom_config) == expected


def test_the_vertex_job_can_run_another_image_as_another_service_account_on_spot_vms(
        tmp_path: Path, offline: None) -> None:
    config = load_config("production", overrides=VERTEX_SETTINGS + [
        "kubeflow.vertex_image=europe-docker.pkg.dev/mammo-project/mammo/mammo-tfx-cuda:2024-06-01",
        "kubeflow.vertex_service_account=mammo-training@mammo-project.iam.gserviceaccount.com",
        "kubeflow.vertex_spot=true"])
    job = kubeflow.compile_kfp(config, IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(tmp_path / "pipeline.yaml"))
    job_spec = _custom_config(job, PATCH_TRAINER_ID)[CLOUD.TRAINING_ARGS_KEY]["job_spec"]
    assert job_spec["service_account"] == "mammo-training@mammo-project.iam.gserviceaccount.com"
    assert job_spec["scheduling"] == {"strategy": "SPOT"}
    assert job_spec["worker_pool_specs"][0]["container_spec"] == {
        "image_uri": "europe-docker.pkg.dev/mammo-project/mammo/mammo-tfx-cuda:2024-06-01"}
    assert _task_container(job, PATCH_TRAINER_ID)["image"] == IMAGE  # the waiting pod runs the pipeline's image


def test_an_unknown_accelerator_type_fails_the_compile(tmp_path: Path) -> None:
    config = load_config("production", overrides=VERTEX_SETTINGS + ["kubeflow.vertex_accelerator_type=NVIDIA_T5"])
    with pytest.raises(ValueError, match="'NVIDIA_T5' is not a Vertex AI accelerator type; known: .*NVIDIA_L4"):
        kubeflow.compile_kfp(config, IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(tmp_path / "pipeline.json"))
    assert list(tmp_path.iterdir()) == []
