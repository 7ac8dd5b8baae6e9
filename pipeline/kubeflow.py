"""Compiles the one pipeline definition for Kubeflow Pipelines v2 (open-source KFP) and Vertex AI Pipelines.

Compiling only writes a file: nothing runs and nothing is staged, so it needs no network and no cluster. The
output describes containers of the project image (kfp/Dockerfile): every step runs TFX's v2 container entrypoint
in that image, so the project's packages must be importable there and every path in the output must be readable
from a pod, i.e. a bucket path (pipeline root, manifest dir) or a path inside the image (the repo copy).

Per-step resources (GPUs for the Trainers) are KFP-only settings: the LocalDagRunner refuses a component whose
platform config is not a Docker config, so they are attached here, on the pipeline built for Kubeflow, and never
in `pipeline.pipeline.create_pipeline` itself. Likewise training on Vertex AI (`kubeflow.trainer_service`
'vertex'): only this compile asks `create_pipeline` for TFX's Google Cloud Trainer extension. What must hold
before and after compiling is checked in pipeline/kubeflow_checks.py.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import yaml
from google.protobuf import json_format
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, base_node, executor_spec
from tfx.dsl.io import fileio

from components.mammo_example_gen.component import MammoExampleGen
from pipeline.config import KubeflowConfig, PipelineConfig, TrainerService
from pipeline.kubeflow_checks import (ResourceSpec, check_kubeflow_compatibility, check_vertex_job_spec,
                                      find_machine_paths, require_remote_uri)
from pipeline.kubeflow_secrets import SaltSecretMount, prepare_patient_salt, salt_platform_spec
from pipeline.paths import REPO_ROOT
from pipeline.pipeline import create_pipeline
from pipeline.sources import DataSource, write_manifest

# Where kfp/Dockerfile puts the repository inside the image. Files of the repo that a step reads at run time
# (schemas/schema.pbtxt for ImportSchemaGen) are addressed there instead of at this machine's checkout.
IMAGE_REPO_DIR = "/opt/mammo-tfx"

# Components whose id starts with this get `KubeflowConfig`'s trainer resources (e.g. "Trainer_patch").
TRAINER_ID_PREFIX = "Trainer"

_PACKAGE_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class ResourceRequest:
    """Container resources of one KFP step. Zero means "leave it to the cluster's default".

    cpu_limit: cores; memory_limit_gb: gigabytes (10^9 bytes, the unit of KFP's ResourceSpec.memory_limit);
    gpu_type: the accelerator name the backend understands: a Kubernetes resource name such as
    `nvidia.com/gpu` on open-source KFP, a Vertex accelerator type such as `NVIDIA_TESLA_T4` on Vertex AI.
    The values come from `KubeflowConfig`, which refuses negative or incomplete requests.
    """

    cpu_limit: float = 0.0
    memory_limit_gb: float = 0.0
    gpu_count: int = 0
    gpu_type: str = "nvidia.com/gpu"

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
    """Applies the configured Trainer resources to every `Trainer*` component that trains in its own pod; returns
    the ids that got them.

    A Trainer of TFX's Google Cloud extension gets none: its pod only submits a Vertex AI CustomJob and waits for
    it, and the job's machine spec (`vertex_training_config`) carries the GPUs.
    """
    in_pod = [c for c in components if not isinstance(c, tfx.extensions.google_cloud_ai_platform.Trainer)]
    return request_resources(in_pod, TRAINER_ID_PREFIX, trainer_resources(kubeflow))


def vertex_training_config(kubeflow: KubeflowConfig, image: str) -> Dict[str, Any]:
    """The custom_config keys with which TFX's Google Cloud Trainer extension runs a Trainer as a Vertex AI
    CustomJob: one worker pool of `vertex_worker_count` machines of `vertex_machine_type` with the configured
    accelerators (Spot VMs with `vertex_spot`), running `vertex_image` or else `image`, the pipeline's. The
    extension replaces the container's command with TFX's executor entrypoint, so that image needs TFX and the
    project, as every step's does.
    """
    machine_spec: Dict[str, Any] = {"machine_type": kubeflow.vertex_machine_type}
    if kubeflow.vertex_accelerator_count:
        machine_spec.update(accelerator_type=kubeflow.vertex_accelerator_type,
                            accelerator_count=kubeflow.vertex_accelerator_count)
    job_spec: Dict[str, Any] = {"worker_pool_specs": [{
        "machine_spec": machine_spec,
        "replica_count": kubeflow.vertex_worker_count,
        "container_spec": {"image_uri": kubeflow.vertex_image or image},
    }]}
    if kubeflow.vertex_service_account:
        job_spec["service_account"] = kubeflow.vertex_service_account
    if kubeflow.vertex_spot:
        job_spec["scheduling"] = {"strategy": "SPOT"}
    check_vertex_job_spec(job_spec)
    cloud = tfx.extensions.google_cloud_ai_platform
    return {
        cloud.ENABLE_VERTEX_KEY: True,
        cloud.VERTEX_REGION_KEY: kubeflow.vertex_region,
        # The extension takes the project out of the training args and submits the rest as the CustomJob.
        cloud.TRAINING_ARGS_KEY: {"project": kubeflow.vertex_project, "job_spec": job_spec},
    }


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


def _write_package(pipeline_job: Mapping[str, Any], out_path: str,
                   platform_spec: Optional[Mapping[str, Any]] = None) -> None:
    """`.yaml`/`.yml`: the PipelineSpec document that open-source KFP uploads, then the PlatformSpec document if
    there is one (as KFP's own compiler writes them); `.json`: the whole PipelineJob, which has no place for a
    PlatformSpec."""
    parent = os.path.dirname(out_path)
    if parent and not fileio.exists(parent):
        fileio.makedirs(parent)
    if out_path.endswith((".yaml", ".yml")):
        spec = _pipeline_spec(pipeline_job)
        header = (f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
                  f"# Compiled from the mammo-tfx TFX pipeline by pipeline/kubeflow.py ({spec.get('sdkVersion')})\n")
        with fileio.open(out_path, "w") as f:
            f.write(header + yaml.safe_dump(spec, sort_keys=True))
            if platform_spec:
                f.write("---\n" + yaml.safe_dump(dict(platform_spec), sort_keys=True))
    else:
        if platform_spec:
            raise ValueError(f"{out_path}: a PipelineJob (.json) cannot carry a platform spec; write .yaml")
        with fileio.open(out_path, "w") as f:
            f.write(json.dumps(pipeline_job, sort_keys=True, indent=1))


def compile_pipeline(
    pipeline: tfx.dsl.Pipeline,
    image: str,
    out_path: str,
    kubeflow: Optional[KubeflowConfig] = None,
    image_repo_dir: str = IMAGE_REPO_DIR,
    salt_secret: Optional[SaltSecretMount] = None,
) -> Dict[str, Any]:
    """Compiles a built pipeline (its components are changed for Kubeflow: do not run it locally afterwards).

    Applies the Trainer resource requests, points repo paths (exec properties, Beam args) at the image's copy,
    checks KFP v2 compatibility, compiles with KubeflowV2DagRunner and writes `out_path` (see `compile_kfp`).
    salt_secret: the Kubernetes Secret that the MammoExampleGen step gets the patient-key salt from (written as
    the YAML's platform spec, pipeline/kubeflow_secrets.py).
    Returns the PipelineJob dict.
    """
    if not out_path.endswith(_PACKAGE_SUFFIXES):
        raise ValueError(f"out_path {out_path!r} must end in .json (Vertex PipelineJob) or .yaml/.yml (KFP upload)")
    if not image:
        raise ValueError("an image is required: the steps run the project's code, which the TFX image lacks")
    require_remote_uri("pipeline root", pipeline.pipeline_info.pipeline_root)
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

    leaked = find_machine_paths(pipeline_job, image_repo_dir)
    if leaked:
        raise ValueError(f"the compiled pipeline refers to paths of this machine, which pods cannot read: {leaked}")
    platform_spec = salt_platform_spec(pipeline_job, MammoExampleGen.__name__, salt_secret) if salt_secret else None
    _write_package(pipeline_job, out_path, platform_spec)
    return pipeline_job


def write_bucket_manifest(sources: Sequence[DataSource], manifest_dir: str) -> str:
    """Writes `<manifest_dir>/sources.json` for a cluster run: the manifest dir and every dataset root must be bucket
    URIs (the ExampleGen pod reads them). The fingerprint is read from the bucket listing: no local copy of the
    data is needed. Returns the manifest's URI."""
    require_remote_uri("manifest dir", manifest_dir)
    for source in sources:
        require_remote_uri(f"{source.dataset} dataset root", source.path)
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
    kubeflow: where the Trainers train and on what (their pods' resource requests, or the Vertex AI jobs they
        submit), and the Secret holding the patient-key salt; defaults to `config.kubeflow`.
    Returns the PipelineJob as a dict.
    """
    require_remote_uri("manifest dir", manifest_dir)
    require_remote_uri("pipeline root", pipeline_root)
    if kubeflow is None:
        kubeflow = config.kubeflow
    cloud_training = (vertex_training_config(kubeflow, image) if kubeflow.trainer_service == TrainerService.VERTEX
                      else None)
    config, salt_secret = prepare_patient_salt(config, kubeflow, out_path)
    pipeline = create_pipeline(config, manifest_dir, pipeline_root, metadata_path=None, cloud_training=cloud_training)
    return compile_pipeline(pipeline, image, out_path, kubeflow=kubeflow, salt_secret=salt_secret)
