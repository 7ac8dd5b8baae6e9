"""Executes a compiled KFP v2 PipelineSpec on this machine, task by task, the way KFP's driver and launcher run
each task of a run. A test helper: no engine runs here, and this is not one (no caching, no retries, no MLMD).

The contract followed, per task, as read in the sources of kubeflow/pipelines (backend/src/v2) and kfp 2.9:
- order: a task starts after its `dependentTasks` and the producers of its input artifacts
  (backend/src/v2/compiler/argocompiler/dag.go builds the same graph);
- executor kinds: only `container` runs here; a `resolver` or `customJob` task is refused, as open-source KFP's
  Argo compiler refuses it (dag.go, `task()`);
- inputs (backend/src/v2/driver/driver.go and resolve.go, `resolveInputs`): each parameter from the task's
  `runtimeValue.constant` (schema 2.1; schema 2.0's `constantValue` is refused); each artifact is the producer
  task's output artifact, with the type of the producer's output definition and the metadata its executor
  returned, and a runtime name (TFX's entrypoint hashes the name into the artifact id);
- outputs (backend/src/v2/driver/driver.go, `provisionOutputs`): one artifact per output definition at
  `<pipeline root>/<pipeline name>/<run id>/<task>/<output key>`, its folder created
  (backend/src/v2/component/launcher_v2.go, `prepareOutputFolders`); the output file
  `<pipeline root>/<pipeline name>/<run id>/<task>/executor_output.json`;
- command (launcher_v2.go, `execute`): the container's command and args with the ExecutorInput JSON in place of
  `{{$}}` (kfp/dsl/placeholders.py, `ExecutorInputPlaceholder`); the `lifecycle.preCacheCheck` hook (TFX's
  ExampleGen driver, which writes span, version and fingerprint into the output file) first; each argument at
  most 128 KiB (Linux's MAX_ARG_STRLEN, which a real container start would hit);
- afterwards (launcher_v2.go, `uploadOutputArtifacts` and `mergeRuntimeArtifacts`): the ExecutorOutput is read
  back from the output file and the metadata of each returned artifact merged into the recorded output, which is
  what consumers see.

Both the driver hook and the executor are TFX's own modules
(`tfx.orchestration.kubeflow.v2.file_based_example_gen.driver`,
`tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`); they are run in this process, through the
same `_parse_flags` and `main` that `python -m <module>` in the container calls, to spare a TensorFlow start per
task. The image's paths and bucket URIs in the spec are mapped to folders of this machine (`path_map`).
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"
MAX_ARGUMENT_BYTES = 128 * 1024
# `python -m <module>`: the module's `_parse_flags(argv)` and `main(...)` are what absl's app.run calls.
_PYTHON_MODULE_COMMAND = ("python", "-m")


def read_pipeline_spec(path: str) -> pipeline_spec_pb2.PipelineSpec:
    """The PipelineSpec of a compiled `.yaml` (KFP upload form) or `.json` (PipelineJob), strictly parsed."""
    import yaml

    with open(path) as handle:
        document = yaml.safe_load(handle) if path.endswith((".yaml", ".yml")) else json.load(handle)["pipelineSpec"]
    return json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)


@dataclass
class TaskRun:
    """What one task got and returned."""

    name: str
    executor_input: pipeline_spec_pb2.ExecutorInput
    executor_output: pipeline_spec_pb2.ExecutorOutput
    # What the preCacheCheck hook wrote into the output file (the executor reads its parameters), if it ran.
    driver_output: Optional[pipeline_spec_pb2.ExecutorOutput]


@dataclass
class PipelineRun:
    run_id: str
    tasks: Dict[str, TaskRun] = field(default_factory=dict)
    # (task, output key) -> the artifact its consumers get.
    outputs: Dict[Tuple[str, str], pipeline_spec_pb2.RuntimeArtifact] = field(default_factory=dict)

    def output(self, task: str, key: str) -> pipeline_spec_pb2.RuntimeArtifact:
        return self.outputs[(task, key)]

    def metadata(self, task: str, key: str) -> dict:
        return json_format.MessageToDict(self.output(task, key).metadata)


def task_order(spec: pipeline_spec_pb2.PipelineSpec) -> List[str]:
    """Root DAG tasks in dependency order (ties by name), from `dependentTasks` and artifact producers."""
    tasks = spec.root.dag.tasks
    upstream = {name: set(task.dependent_tasks) | {a.task_output_artifact.producer_task
                                                   for a in task.inputs.artifacts.values()
                                                   if a.HasField("task_output_artifact")}
                for name, task in tasks.items()}
    order: List[str] = []
    done: Set[str] = set()
    while len(order) < len(tasks):
        ready = sorted(name for name in tasks if name not in done and upstream[name] <= done)
        if not ready:
            raise ValueError(f"the task graph has a cycle among {sorted(set(tasks) - done)}")
        order.append(ready[0])
        done.add(ready[0])
    return order


def upstream_closure(spec: pipeline_spec_pb2.PipelineSpec, targets: Sequence[str]) -> Set[str]:
    """`targets` and every task they wait for, transitively."""
    tasks = spec.root.dag.tasks
    found: Set[str] = set()
    pending = list(targets)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        task = tasks[name]
        pending.extend(task.dependent_tasks)
        pending.extend(a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()
                       if a.HasField("task_output_artifact"))
    return found


class KfpTaskRunner:
    """Runs the tasks of one compiled PipelineSpec; each `run` is one pipeline run under the same root."""

    def __init__(self, spec: pipeline_spec_pb2.PipelineSpec, pipeline_root: str,
                 path_map: Sequence[Tuple[str, str]]) -> None:
        """pipeline_root: the local folder output URIs go under. path_map: (prefix in the spec, local prefix)
        pairs applied to every parameter and argument, e.g. the bucket root and the image's repo copy."""
        self.spec = spec
        self.pipeline_root = pipeline_root
        self.path_map = list(path_map)
        deployment = pipeline_spec_pb2.PipelineDeploymentConfig()
        json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec), deployment)
        self.executors = deployment.executors
        self._artifact_count = 0

    def run(self, run_id: str, only: Optional[Set[str]] = None) -> PipelineRun:
        """Runs every task (or those in `only`, which must hold their upstream tasks) in dependency order."""
        run = PipelineRun(run_id)
        for name in task_order(self.spec):
            if only is None or name in only:
                run.tasks[name] = self._run_task(run, name)
        return run

    def _map_paths(self, text: str) -> str:
        for remote, local in self.path_map:
            text = text.replace(remote, local)
        return text

    def _executor(self, task_name: str) -> pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec:
        component = self.spec.components[self.spec.root.dag.tasks[task_name].component_ref.name]
        executor = self.executors[component.executor_label]
        kind = executor.WhichOneof("spec")
        if kind != "container":
            raise ValueError(f"task {task_name}: a {kind} executor, which open-source KFP does not run")
        return executor.container

    def _runtime_artifact(self, artifact_type: pipeline_spec_pb2.ArtifactTypeSchema, uri: str
                          ) -> pipeline_spec_pb2.RuntimeArtifact:
        self._artifact_count += 1
        artifact = pipeline_spec_pb2.RuntimeArtifact(name=f"artifacts/{self._artifact_count}", uri=uri)
        artifact.type.CopyFrom(artifact_type)
        return artifact

    def _executor_input(self, run: PipelineRun, task_name: str) -> pipeline_spec_pb2.ExecutorInput:
        task = self.spec.root.dag.tasks[task_name]
        component = self.spec.components[task.component_ref.name]
        executor_input = pipeline_spec_pb2.ExecutorInput()
        for name, parameter in task.inputs.parameters.items():
            if not parameter.runtime_value.HasField("constant"):
                raise ValueError(f"task {task_name}, parameter {name}: only runtimeValue.constant (schema 2.1) "
                                 "is resolved here")
            value = struct_pb2.Value()
            value.CopyFrom(parameter.runtime_value.constant)
            if value.HasField("string_value"):
                value.string_value = self._map_paths(value.string_value)
            executor_input.inputs.parameter_values[name].CopyFrom(value)
        for name, channel in task.inputs.artifacts.items():
            source = channel.task_output_artifact
            if (source.producer_task, source.output_artifact_key) not in run.outputs:
                raise ValueError(f"task {task_name}, input {name}: producer task {source.producer_task} has not "
                                 f"run (output {source.output_artifact_key})")
            executor_input.inputs.artifacts[name].artifacts.add().CopyFrom(
                run.outputs[(source.producer_task, source.output_artifact_key)])
        task_root = os.path.join(self.pipeline_root, self.spec.pipeline_info.name, run.run_id, task_name)
        for key, definition in component.output_definitions.artifacts.items():
            uri = os.path.join(task_root, key)
            os.makedirs(uri, exist_ok=True)
            executor_input.outputs.artifacts[key].artifacts.add().CopyFrom(
                self._runtime_artifact(definition.artifact_type, uri))
        if component.output_definitions.parameters:
            raise ValueError(f"task {task_name}: output parameters are not handled here")
        executor_input.outputs.output_file = os.path.join(task_root, "executor_output.json")
        return executor_input

    def _arguments(self, task_name: str, args: Sequence[str], executor_input_json: str) -> List[str]:
        resolved = [self._map_paths(arg).replace(EXECUTOR_INPUT_PLACEHOLDER, executor_input_json) for arg in args]
        for arg in resolved:
            if len(arg.encode()) > MAX_ARGUMENT_BYTES:
                raise ValueError(f"task {task_name}: a command-line argument of {len(arg.encode())} bytes exceeds "
                                 f"the {MAX_ARGUMENT_BYTES} bytes Linux allows one argument")
        return resolved

    def _call(self, task_name: str, command: Sequence[str], args: List[str]) -> None:
        if tuple(command[:2]) != _PYTHON_MODULE_COMMAND or len(command) != 3:
            raise ValueError(f"task {task_name}: command {list(command)} is not `python -m <module>`")
        module = importlib.import_module(command[2])
        module.main(module._parse_flags(args))  # pylint: disable=protected-access

    def _run_task(self, run: PipelineRun, task_name: str) -> TaskRun:
        container = self._executor(task_name)
        executor_input = self._executor_input(run, task_name)
        executor_input_json = json_format.MessageToJson(executor_input)
        hook = container.lifecycle.pre_cache_check
        driver_output = None
        if hook.command:
            self._call(task_name, hook.command, self._arguments(task_name, hook.args, executor_input_json))
            driver_output = _read_executor_output(executor_input.outputs.output_file)
        self._call(task_name, container.command, self._arguments(task_name, container.args, executor_input_json))
        executor_output = _read_executor_output(executor_input.outputs.output_file)
        for key, recorded in executor_input.outputs.artifacts.items():
            output = pipeline_spec_pb2.RuntimeArtifact()
            output.CopyFrom(recorded.artifacts[0])
            returned = executor_output.artifacts.get(key)
            if returned is not None and returned.artifacts:
                output.metadata.update(json_format.MessageToDict(returned.artifacts[0].metadata))
            run.outputs[(task_name, key)] = output
        return TaskRun(task_name, executor_input, executor_output, driver_output)


def _read_executor_output(path: str) -> pipeline_spec_pb2.ExecutorOutput:
    executor_output = pipeline_spec_pb2.ExecutorOutput()
    with open(path) as handle:
        json_format.Parse(handle.read(), executor_output, ignore_unknown_fields=False)
    return executor_output


def map_of(pairs: Mapping[str, str]) -> List[Tuple[str, str]]:
    """Path-map pairs, longest prefix first so that a nested prefix wins over its parent."""
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))
