"""Checks that a pipeline can run on Kubeflow Pipelines v2: before compiling (names, custom artifact types,
module files, bucket URIs, the Vertex AI job spec of Trainers that train there and no GPUs on their waiting pods)
and after (what the target engine accepts: executor kinds and parameter form; no path of this machine in the
compiled spec).

TFX itself checks some of these only at run time inside the step container (the import of custom artifact
classes), after the cluster has spent a pod on it.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Set

from google.cloud.aiplatform_v1.types.accelerator_type import AcceleratorType
from google.cloud.aiplatform_v1.types.custom_job import CustomJobSpec
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import base_node
from tfx.orchestration.kubeflow.v2 import compiler_utils
from tfx.types import artifact as tfx_artifact
from tfx.utils import import_utils, name_utils

from pipeline.config import TrainerService
from pipeline.paths import REPO_ROOT

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

# Kubeflow's rule for pipeline names (TFX's v2 pipeline builder enforces the same with a garbled message).
_PIPELINE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# TFX's v2 compiler encodes a custom artifact type as a KFP schema title "<module>.<Class>"; the step container
# imports the class back from exactly that string (kubeflow_v2_entrypoint_utils._retrieve_class_path).
_SCHEMA_TITLE_RE = re.compile(r"[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}")
# A URI with a scheme that pods can reach (gs://, s3://, minio://, hdfs://...); file:// is this machine.
_REMOTE_URI_RE = re.compile(r"(?!file://)[a-z][a-z0-9+.-]*://\S+")


def _artifact_types(component: base_node.BaseNode) -> Iterator[type]:
    for channel in list(component.inputs.values()) + list(component.outputs.values()):
        yield channel.type


def check_kubeflow_compatibility(pipeline: tfx.dsl.Pipeline) -> None:
    """Raises ValueError listing every reason the pipeline would fail to compile or to run on KFP v2."""
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
        platform_config = getattr(component, "platform_config", None)
        if (isinstance(component, tfx.extensions.google_cloud_ai_platform.Trainer)
                and isinstance(platform_config, ResourceSpec) and platform_config.HasField("accelerator")):
            problems.append(f"{component.id}: trains in a Vertex AI job, whose machine spec gets the accelerators; "
                            "accelerators requested for its pod, which only waits for the job, would stay idle")
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


def check_vertex_job_spec(job_spec: Mapping[str, Any]) -> None:
    """Raises ValueError unless `job_spec` is a Vertex AI CustomJobSpec (field names, accelerator types of the
    installed API version), so that a typo fails the compile rather than the Trainer step on the cluster."""
    known = [t.name for t in AcceleratorType if t != AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED]
    for pool in job_spec.get("worker_pool_specs", []):
        accelerator = pool.get("machine_spec", {}).get("accelerator_type")
        if accelerator and accelerator not in known:
            raise ValueError(f"kubeflow.vertex_accelerator_type {accelerator!r} is not a Vertex AI accelerator type; "
                             f"known: {known}")
    try:
        CustomJobSpec(job_spec)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the Trainers' Vertex AI job spec is not a CustomJobSpec ({error}): {dict(job_spec)}"
                         ) from None


def require_remote_uri(what: str, uri: str) -> None:
    """Raises ValueError unless `uri` is a bucket URI the pods can read."""
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
    image_repo_dir: str,
    prefixes: Optional[Sequence[str]] = None,
) -> List[str]:
    """Strings of the compiled job that mention a path under one of `prefixes` (default: this machine's checkout,
    working dir, home and temp dirs), other than paths inside the image's repo copy `image_repo_dir`.

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


# PipelineSpec schema 2.1: what the current KFP driver (backend/src/v2/driver/resolve.go) reads; 2.0's
# `runtimeValue.constantValue` and `inputDefinitions.parameters.*.type` are the deprecated forms.
PIPELINE_SCHEMA_VERSION = "2.1.0"
# Executor kinds each engine runs. Open-source KFP's Argo compiler (backend/src/v2/compiler/argocompiler/dag.go)
# compiles only container and importer executors; Vertex AI also runs `customJob` executors.
_OPEN_SOURCE_KFP_EXECUTORS = ("container", "importer")
_VERTEX_EXECUTORS = _OPEN_SOURCE_KFP_EXECUTORS + ("customJob",)


def check_compiled_spec(pipeline_spec: Mapping[str, Any], trainer_service: TrainerService) -> None:
    """Raises ValueError naming every task (and the rule it breaks) that the target engines would refuse.

    The targets: open-source KFP 2.x and Vertex AI Pipelines with `trainer_service` pod (the file must run on
    both), Vertex AI Pipelines with `trainer_service` vertex. The rules: executor kinds (open-source KFP runs only
    container and importer executors, so no `resolver`; `customJob` is Google Cloud's and only allowed for Vertex
    AI) and schema 2.1 parameters (`runtimeValue.constant`).
    """
    vertex_only = trainer_service == TrainerService.VERTEX
    allowed = _VERTEX_EXECUTORS if vertex_only else _OPEN_SOURCE_KFP_EXECUTORS
    engines = "Vertex AI Pipelines" if vertex_only else "open-source Kubeflow Pipelines 2.x and Vertex AI Pipelines"
    problems = []
    version = pipeline_spec.get("schemaVersion")
    if version != PIPELINE_SCHEMA_VERSION:
        problems.append(f"the pipeline spec has schema version {version}; the parameter form of schema "
                        f"{PIPELINE_SCHEMA_VERSION} is required (compile with use_pipeline_spec_2_1)")
    components = pipeline_spec.get("components", {})
    executors = pipeline_spec.get("deploymentSpec", {}).get("executors", {})
    for task_name, task in sorted(pipeline_spec.get("root", {}).get("dag", {}).get("tasks", {}).items()):
        component = components.get(task.get("componentRef", {}).get("name"), {})
        executor = executors.get(component.get("executorLabel"), {})
        for kind in sorted(set(executor) - set(allowed)):
            if kind == "customJob":
                rule = ("open-source Kubeflow Pipelines refuses customJob executors (Google Cloud only); they are "
                        "allowed only with kubeflow.trainer_service vertex, for Vertex AI Pipelines")
            elif vertex_only:
                rule = f"the pipeline for Vertex AI Pipelines uses only {', '.join(allowed)} executors"
            else:
                rule = ("open-source Kubeflow Pipelines compiles only container and importer executors, and the "
                        "file is for it as well as for Vertex AI Pipelines")
            problems.append(f"task {task_name} has a {kind} executor: {rule}")
        for name, parameter in sorted(task.get("inputs", {}).get("parameters", {}).items()):
            if "constantValue" in parameter.get("runtimeValue", {}):
                problems.append(f"task {task_name}, parameter {name}: runtimeValue.constantValue is the schema 2.0 "
                                "form; the KFP driver reads runtimeValue.constant (schema 2.1)")
        for name, definition in sorted(component.get("inputDefinitions", {}).get("parameters", {}).items()):
            if "parameterType" not in definition:
                problems.append(f"task {task_name}, input {name}: no parameterType (schema 2.1) in its component's "
                                "input definitions")
    if problems:
        raise ValueError(f"the compiled pipeline would be refused by {engines}:\n  " + "\n  ".join(problems))
