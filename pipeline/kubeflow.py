"""Compiles the one pipeline definition for Kubeflow Pipelines v2 (open-source KFP) and Vertex AI Pipelines.

Compiling only writes a file: nothing runs and nothing is staged, so it needs no network and no cluster. The
output describes containers of the project image (kfp/Dockerfile): every step runs TFX's v2 container entrypoint
in that image, so the project's packages must be importable there and every path in the output must be readable
from a pod, i.e. a bucket path (pipeline root, manifest dir) or a path inside the image (the repo copy).

Per-step resources (GPUs for the Trainers) are KFP-only settings: the LocalDagRunner refuses a component whose
platform config is not a Docker config, so they are attached here, on the pipeline built for Kubeflow, and never
in `pipeline.pipeline.create_pipeline` itself.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, base_node, executor_spec
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2 import compiler_utils
from tfx.types import artifact as tfx_artifact
from tfx.utils import import_utils, name_utils

from pipeline.config import KubeflowConfig, PipelineConfig
from pipeline.paths import REPO_ROOT
from pipeline.pipeline import create_pipeline
from pipeline.sources import DataSource, write_manifest

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

# Where kfp/Dockerfile puts the repository inside the image. Files of the repo that a step reads at run time
# (schemas/schema.pbtxt for ImportSchemaGen) are addressed there instead of at this machine's checkout.
IMAGE_REPO_DIR = "/opt/mammo-tfx"

# Components whose id starts with this get `KubeflowConfig`'s trainer resources (e.g. "Trainer_patch").
TRAINER_ID_PREFIX = "Trainer"

# Kubeflow's rule for pipeline names (TFX's v2 pipeline builder enforces the same with a garbled message).
_PIPELINE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# TFX's v2 compiler encodes a custom artifact type as a KFP schema title "<module>.<Class>"; the step container
# imports the class back from exactly that string (kubeflow_v2_entrypoint_utils._retrieve_class_path).
_SCHEMA_TITLE_RE = re.compile(r"[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}")
# A URI with a scheme that pods can reach (gs://, s3://, minio://, hdfs://...); file:// is this machine.
_REMOTE_URI_RE = re.compile(r"(?!file://)[a-z][a-z0-9+.-]*://\S+")
_PACKAGE_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class ResourceRequest:
    """Container resources of one KFP step. Zero means "leave it to the cluster's default".

    cpu_limit: cores; memory_limit_gb: gigabytes (10^9 bytes, the unit of KFP's ResourceSpec.memory_limit);
    gpu_type: the accelerator name the backend understands: a Kubernetes resource name such as
    `nvidia.com/gpu` on open-source KFP, a Vertex accelerator type such as `NVIDIA_TESLA_T4` on Vertex AI.
    """

    cpu_limit: float = 0.0
    memory_limit_gb: float = 0.0
    gpu_count: int = 0
    gpu_type: str = "nvidia.com/gpu"

    def __post_init__(self) -> None:
        if self.cpu_limit < 0 or self.memory_limit_gb < 0 or self.gpu_count < 0:
            raise ValueError(f"resource requests must not be negative: {self}")
        if self.gpu_count and not self.gpu_type:
            raise ValueError(f"{self.gpu_count} GPUs requested without a gpu_type")

    def is_empty(self) -> bool:
        return not (self.cpu_limit or self.memory_limit_gb or self.gpu_count)

    def to_resource_spec(self) -> ResourceSpec:
        spec = ResourceSpec()
        if self.cpu_limit:
            spec.cpu_limit = self.cpu_limit
        if self.memory_limit_gb:
            spec.memory_limit = self.memory_limit_gb
        if self.gpu_count:
            spec.accelerator.type = self.gpu_type
            spec.accelerator.count = self.gpu_count
        return spec


def trainer_resources(kubeflow: KubeflowConfig) -> ResourceRequest:
    return ResourceRequest(
        cpu_limit=kubeflow.trainer_cpu_limit,
        memory_limit_gb=kubeflow.trainer_memory_limit_gb,
        gpu_count=kubeflow.trainer_gpu_count,
        gpu_type=kubeflow.trainer_gpu_type,
    )


def request_resources(
    components: Iterable[base_node.BaseNode], id_prefix: str, request: ResourceRequest
) -> List[str]:
    """Attaches `request` to every component whose id starts with `id_prefix`; returns their ids.

    An empty request attaches nothing. The components must only be compiled for Kubeflow afterwards: the
    LocalDagRunner rejects this kind of platform config.
    """
    if request.is_empty():
        return []
    matched = []
    for component in components:
        if not component.id.startswith(id_prefix):
            continue
        if not isinstance(component, base_component.BaseComponent):
            raise ValueError(f"{component.id}: only components run in containers can request resources")
        existing = component.platform_config
        if existing is not None and not isinstance(existing, ResourceSpec):
            raise ValueError(f"{component.id} already carries a {type(existing).__name__} platform config")
        component.with_platform_config(request.to_resource_spec())
        matched.append(component.id)
    return matched


def apply_resource_requests(components: Iterable[base_node.BaseNode], kubeflow: KubeflowConfig) -> List[str]:
    """Applies the configured Trainer resources to every `Trainer*` component; returns the ids that got them."""
    return request_resources(components, TRAINER_ID_PREFIX, trainer_resources(kubeflow))


def _relocated(path: str, local_repo_dir: str, image_repo_dir: str) -> Optional[str]:
    """`path` inside this checkout -> the same file in the image's copy; None for any other path."""
    local_prefix = os.path.abspath(local_repo_dir).rstrip(os.sep) + os.sep
    if not path.startswith(local_prefix):
        return None
    return image_repo_dir.rstrip("/") + "/" + path[len(local_prefix):].replace(os.sep, "/")


def relocate_repo_paths(
    components: Iterable[base_node.BaseNode], local_repo_dir: str = REPO_ROOT, image_repo_dir: str = IMAGE_REPO_DIR
) -> Dict[str, str]:
    """Rewrites string exec properties that point into this checkout so they point into the image's copy.

    Returns {"<component id>.<property>": new path} for what was rewritten.
    """
    rewritten = {}
    for component in components:
        for key, value in component.exec_properties.items():
            relocated = _relocated(value, local_repo_dir, image_repo_dir) if isinstance(value, str) else None
            if relocated:
                component.exec_properties[key] = relocated
                rewritten[f"{component.id}.{key}"] = relocated
    return rewritten


def relocate_beam_args(
    pipeline: tfx.dsl.Pipeline, local_repo_dir: str = REPO_ROOT, image_repo_dir: str = IMAGE_REPO_DIR
) -> List[str]:
    """Rewrites `--flag=<path in this checkout>` Beam args (e.g. `--setup_file`) to the image's copy, in the
    pipeline's args and in the copies TFX made of them for each Beam component. Returns the rewritten args."""
    arg_lists = [pipeline.beam_pipeline_args] + [
        component.executor_spec.beam_pipeline_args for component in pipeline.components
        if isinstance(component.executor_spec, executor_spec.BeamExecutorSpec)]
    rewritten = []
    for args in arg_lists:
        for i, arg in enumerate(args):
            flag, _, value = arg.partition("=") if isinstance(arg, str) else ("", "", "")
            relocated = _relocated(value, local_repo_dir, image_repo_dir) if value else None
            if relocated:
                args[i] = f"{flag}={relocated}"
                rewritten.append(args[i])
    return rewritten


def _artifact_types(component: base_node.BaseNode) -> Iterator[type]:
    for channel in list(component.inputs.values()) + list(component.outputs.values()):
        yield channel.type


def check_kubeflow_compatibility(pipeline: tfx.dsl.Pipeline) -> None:
    """Raises ValueError listing every reason the pipeline would fail to compile or to run on KFP v2.

    TFX itself checks some of these only at run time inside the step container (the import of custom artifact
    classes), after the cluster has spent a pod on it.
    """
    problems = []
    name = pipeline.pipeline_info.pipeline_name
    if not _PIPELINE_NAME_RE.fullmatch(name):
        problems.append(f"pipeline name {name!r} must be lower case letters, digits and hyphens "
                        "(start with a letter or digit, at most 128 characters)")
    standard_types = set(compiler_utils.TITLE_TO_CLASS_PATH.values())
    checked: Set[type] = set()
    for component in pipeline.components:
        if component.exec_properties.get("module_file"):
            problems.append(f"{component.id}: module_file would be packaged into a wheel under the pipeline root at "
                            "compile time; pass an import path (run_fn=/preprocessing_fn=) of a module in the image")
        for artifact_type in _artifact_types(component):
            if artifact_type in checked or name_utils.get_full_name(artifact_type) in standard_types:
                continue
            checked.add(artifact_type)
            problems.extend(_custom_artifact_problems(artifact_type))
    if problems:
        raise ValueError("the pipeline cannot run on Kubeflow Pipelines v2:\n  " + "\n  ".join(problems))


def _custom_artifact_problems(artifact_type: type) -> List[str]:
    type_name = artifact_type.TYPE_NAME
    where = f"artifact class {name_utils.get_full_name(artifact_type)} (TYPE_NAME {type_name!r})"
    problems = []
    if not _SCHEMA_TITLE_RE.fullmatch(type_name):
        problems.append(f"{where}: TYPE_NAME must be '<package>.<Class>' (one dot, lower-case package of 3-21 "
                        "characters, class name starting upper-case): KFP v2 uses it as the artifact schema title")
    else:
        try:
            imported = import_utils.import_class_by_path(type_name)
        except (ImportError, AttributeError):
            imported = None
        if imported is not artifact_type:
            problems.append(f"{where}: the step container imports the class back from TYPE_NAME, but importing "
                            f"{type_name!r} does not give this class; export it under that name")
    if issubclass(artifact_type, tfx_artifact.Artifact) and artifact_type.PROPERTIES:
        problems.append(f"{where}: KFP v2 gives custom artifact types no PROPERTIES "
                        f"(found {sorted(artifact_type.PROPERTIES)}); use custom properties instead")
    return problems


def _require_remote_uri(what: str, uri: str) -> None:
    if not _REMOTE_URI_RE.fullmatch(uri):
        raise ValueError(f"{what} {uri!r} must be a bucket URI the pods can read (gs://..., s3://..., minio://...), "
                         "not a path on this machine")


def _machine_path_prefixes() -> List[str]:
    """Directories of this machine that must not leak into a compiled pipeline."""
    candidates = [REPO_ROOT, os.getcwd(), os.path.expanduser("~"), os.environ.get("TMPDIR", ""), "/tmp"]
    return sorted({os.path.abspath(c).rstrip("/") for c in candidates if c and os.path.abspath(c) != "/"})


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def find_machine_paths(
    pipeline_job: Mapping[str, Any],
    prefixes: Optional[Sequence[str]] = None,
    image_repo_dir: str = IMAGE_REPO_DIR,
) -> List[str]:
    """Strings of the compiled job that mention a path under one of `prefixes` (default: this machine's checkout,
    working dir, home and temp dirs), other than paths inside the image's repo copy.

    A prefix counts only where a path starts, so `gs://bucket/tmp/x` is not `/tmp`; paths inside embedded JSON
    strings are found too.
    """
    prefixes = list(prefixes) if prefixes is not None else _machine_path_prefixes()
    patterns = [re.compile(r"(?<![\w./:-])" + re.escape(p.rstrip("/")) + r"(?=/|$|[\"'\s,])") for p in prefixes]
    # Compiling inside the image (checkout == image copy, maybe also the working dir) must not flag the copy.
    image_prefix = image_repo_dir.rstrip("/") + "/"
    found = set()
    for text in _strings(pipeline_job):
        for pattern in patterns:
            if any(not text.startswith(image_prefix, m.start()) for m in pattern.finditer(text)):
                found.add(text)
    return sorted(found)


def _pipeline_spec(pipeline_job: Mapping[str, Any]) -> Dict[str, Any]:
    return pipeline_job["pipelineSpec"]


def _executor_container(pipeline_job: Mapping[str, Any], task_name: str) -> Dict[str, Any]:
    spec = _pipeline_spec(pipeline_job)
    component_name = spec["root"]["dag"]["tasks"][task_name]["componentRef"]["name"]
    executor_label = spec["components"][component_name]["executorLabel"]
    return spec["deploymentSpec"]["executors"][executor_label]["container"]


def _carry_over_resources(pipeline_job: Dict[str, Any], components: Iterable[base_node.BaseNode]) -> None:
    """Puts each component's ResourceSpec on its container where TFX's step builder left it out: the builder
    copies platform configs for ordinary components but not for FileBasedExampleGen (MammoExampleGen)."""
    for component in components:
        # Resolvers and importers are not containers and have no platform config.
        platform_config = getattr(component, "platform_config", None)
        if isinstance(platform_config, ResourceSpec):
            container = _executor_container(pipeline_job, component.id)
            container.setdefault("resources", json_format.MessageToDict(platform_config))


def _write_package(pipeline_job: Mapping[str, Any], out_path: str) -> None:
    """`.yaml`/`.yml`: the PipelineSpec document that open-source KFP uploads; `.json`: the whole PipelineJob."""
    parent = os.path.dirname(out_path)
    if parent and not fileio.exists(parent):
        fileio.makedirs(parent)
    if out_path.endswith((".yaml", ".yml")):
        spec = _pipeline_spec(pipeline_job)
        header = (f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
                  f"# Compiled from the mammo-tfx TFX pipeline by pipeline/kubeflow.py ({spec.get('sdkVersion')})\n")
        with fileio.open(out_path, "w") as f:
            f.write(header + yaml.safe_dump(spec, sort_keys=True))
    else:
        with fileio.open(out_path, "w") as f:
            f.write(json.dumps(pipeline_job, sort_keys=True, indent=1))


def compile_pipeline(
    pipeline: tfx.dsl.Pipeline,
    image: str,
    out_path: str,
    kubeflow: Optional[KubeflowConfig] = None,
    image_repo_dir: str = IMAGE_REPO_DIR,
) -> Dict[str, Any]:
    """Compiles a built pipeline (its components are changed for Kubeflow: do not run it locally afterwards).

    Applies the Trainer resource requests, points repo paths (exec properties, Beam args) at the image's copy,
    checks KFP v2 compatibility, compiles with KubeflowV2DagRunner and writes `out_path` (see `compile_kfp`).
    Returns the PipelineJob dict.
    """
    if not out_path.endswith(_PACKAGE_SUFFIXES):
        raise ValueError(f"out_path {out_path!r} must end in .json (Vertex PipelineJob) or .yaml/.yml (KFP upload)")
    if not image:
        raise ValueError("an image is required: the steps run the project's code, which the TFX image lacks")
    _require_remote_uri("pipeline root", pipeline.pipeline_info.pipeline_root)
    components = pipeline.components
    apply_resource_requests(components, kubeflow or KubeflowConfig())
    relocate_repo_paths(components, REPO_ROOT, image_repo_dir)
    relocate_beam_args(pipeline, REPO_ROOT, image_repo_dir)
    check_kubeflow_compatibility(pipeline)

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, display_name=pipeline.pipeline_info.pipeline_name))
    # write_out=False: the runner only compiles; the package is written below, after the fix-ups.
    pipeline_job = runner.run(pipeline, write_out=False)
    _carry_over_resources(pipeline_job, components)
    # TFX puts the pipeline root only in the PipelineJob's runtimeConfig, which the YAML form leaves out; as the
    # spec's default root (as kfp's own compiler writes it) it travels with the YAML to open-source KFP too.
    _pipeline_spec(pipeline_job)["defaultPipelineRoot"] = pipeline.pipeline_info.pipeline_root

    leaked = find_machine_paths(pipeline_job, image_repo_dir=image_repo_dir)
    if leaked:
        raise ValueError(f"the compiled pipeline refers to paths of this machine, which pods cannot read: {leaked}")
    _write_package(pipeline_job, out_path)
    return pipeline_job


def write_bucket_manifest(sources: Sequence[DataSource], manifest_dir: str) -> str:
    """Writes `<manifest_dir>/sources.json` for a cluster run: the manifest dir and every dataset root must be bucket
    URIs (the ExampleGen pod reads them). The fingerprint is read from the bucket listing: no local copy of the
    data is needed. Returns the manifest's URI."""
    _require_remote_uri("manifest dir", manifest_dir)
    for source in sources:
        _require_remote_uri(f"{source.dataset} dataset root", source.path)
    return write_manifest(sources, manifest_dir)


def compile_kfp(
    config: PipelineConfig,
    image: str,
    pipeline_root: str,
    manifest_dir: str,
    out_path: str,
    kubeflow: Optional[KubeflowConfig] = None,
) -> Dict[str, Any]:
    """Compiles the mammo-tfx pipeline for Kubeflow Pipelines v2 and writes it to `out_path`.

    image: the project image built from kfp/Dockerfile (every step runs in it).
    pipeline_root, manifest_dir: bucket URIs; the manifest dir holds `sources.json`, whose dataset roots must be
        bucket URIs too, since the ExampleGen pod reads them (`write_bucket_manifest` writes it).
    out_path: `.yaml`/`.yml` writes the PipelineSpec (upload to open-source KFP); `.json` writes the whole
        PipelineJob (Vertex AI `PipelineJob(template_path=...)`, or KFP's client, which accepts both).
    kubeflow: resource requests; defaults to `config.kubeflow`.
    Returns the PipelineJob as a dict.
    """
    _require_remote_uri("manifest dir", manifest_dir)
    _require_remote_uri("pipeline root", pipeline_root)
    if kubeflow is None:
        kubeflow = config.kubeflow
    pipeline = create_pipeline(config, manifest_dir, pipeline_root, metadata_path=None)
    return compile_pipeline(pipeline, image, out_path, kubeflow=kubeflow)


def task_names(pipeline_job: Mapping[str, Any]) -> List[str]:
    return sorted(_pipeline_spec(pipeline_job)["root"]["dag"]["tasks"])


def task_dependencies(pipeline_job: Mapping[str, Any]) -> Dict[str, Tuple[str, ...]]:
    """Task name -> names of the tasks it waits for, as compiled."""
    tasks = _pipeline_spec(pipeline_job)["root"]["dag"]["tasks"]
    return {name: tuple(sorted(task.get("dependentTasks", []))) for name, task in tasks.items()}


def container_task_names(pipeline_job: Mapping[str, Any]) -> List[str]:
    """Tasks that run a container (resolver tasks, which only query metadata, do not)."""
    spec = _pipeline_spec(pipeline_job)
    executors = spec["deploymentSpec"]["executors"]
    return sorted(
        name for name, task in spec["root"]["dag"]["tasks"].items()
        if "container" in executors[spec["components"][task["componentRef"]["name"]]["executorLabel"]])


def task_container(pipeline_job: Mapping[str, Any], task_name: str) -> Dict[str, Any]:
    """The container spec (image, command, args, resources) that runs `task_name`."""
    return _executor_container(pipeline_job, task_name)
