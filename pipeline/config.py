"""One typed configuration for the whole pipeline, with named profiles.

A profile is a complete `PipelineConfig`; users change it with a YAML file and/or `--set section.key=value`
overrides. Unknown keys are errors, values are checked against the field types.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import yaml

from mammo_tfx.ingest.options import IngestOptions

PATIENT_SALT_ENV = "MAMMO_TFX_PATIENT_SALT"


@dataclass(frozen=True)
class SplitConfig:
    """Relative sizes of the patient-grouped splits (hash buckets)."""

    train: int = 8
    eval: int = 1
    test: int = 1

    def buckets(self) -> List[Tuple[str, int]]:
        return [("train", self.train), ("eval", self.eval), ("test", self.test)]


@dataclass(frozen=True)
class BeamConfig:
    """Where Beam runs. `runner` DirectRunner is the embedded default; other runners take `extra_args`."""

    runner: str = "DirectRunner"
    direct_running_mode: str = "multi_processing"
    direct_num_workers: int = 2
    extra_args: Tuple[str, ...] = ()

    def pipeline_args(self) -> List[str]:
        args = [f"--runner={self.runner}"]
        if self.runner == "DirectRunner":
            args += [f"--direct_running_mode={self.direct_running_mode}",
                     f"--direct_num_workers={self.direct_num_workers}"]
        return args + list(self.extra_args)


@dataclass(frozen=True)
class KubeflowConfig:
    """Kubeflow-only settings (resource requests of the Trainer steps). Zero values request nothing, leaving the
    cluster's defaults. gpu_type: `nvidia.com/gpu` on open-source KFP, e.g. `NVIDIA_TESLA_T4` on Vertex AI."""

    trainer_gpu_count: int = 0
    trainer_gpu_type: str = "nvidia.com/gpu"
    trainer_cpu_limit: float = 0.0
    trainer_memory_limit_gb: float = 0.0

    def __post_init__(self) -> None:
        if self.trainer_gpu_count < 0 or self.trainer_cpu_limit < 0 or self.trainer_memory_limit_gb < 0:
            raise ValueError(f"Kubeflow resource requests must not be negative: {self}")
        if self.trainer_gpu_count and not self.trainer_gpu_type:
            raise ValueError(f"{self.trainer_gpu_count} GPUs requested without a trainer_gpu_type")


@dataclass(frozen=True)
class PipelineConfig:
    profile: str
    pipeline_name: str = "mammo-tfx"  # Kubeflow's rule: lower case and hyphens
    ingest: IngestOptions = field(default_factory=IngestOptions)
    splits: SplitConfig = field(default_factory=SplitConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    kubeflow: KubeflowConfig = field(default_factory=KubeflowConfig)
    enable_cache: bool = True

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _demo() -> PipelineConfig:
    return PipelineConfig(
        profile="demo",
        ingest=IngestOptions(height=576, width=448),
        splits=SplitConfig(train=6, eval=2, test=2),
    )


def _production() -> PipelineConfig:
    return PipelineConfig(
        profile="production",
        ingest=IngestOptions(height=1152, width=896),
        kubeflow=KubeflowConfig(trainer_gpu_count=1, trainer_cpu_limit=8.0, trainer_memory_limit_gb=32.0),
    )


def _test() -> PipelineConfig:
    return PipelineConfig(
        profile="test",
        ingest=IngestOptions(height=144, width=112),
        splits=SplitConfig(train=6, eval=2, test=2),
        beam=BeamConfig(direct_running_mode="in_memory", direct_num_workers=1),
        enable_cache=True,
    )


PROFILES: Dict[str, Callable[[], PipelineConfig]] = {"demo": _demo, "production": _production, "test": _test}


def _coerce(value: Any, current: Any, path: str) -> Any:
    """Checks/converts an override value to the type of the field it replaces."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected true/false, got {value!r}")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{path}: expected a number, got {value!r}")
    if isinstance(current, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{path}: expected a string, got {value!r}")
    if isinstance(current, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise ValueError(f"{path}: expected a list, got {value!r}")
    if current is None:
        return value
    raise ValueError(f"{path}: cannot override a value of type {type(current).__name__}")


def _apply(obj: Any, changes: Mapping[str, Any], prefix: str = "") -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    updates = {}
    for key, value in changes.items():
        path = f"{prefix}{key}"
        if key not in names or key == "profile":
            raise KeyError(f"unknown configuration key {path!r}; known: {sorted(n for n in names if n != 'profile')}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"{path}: expected a mapping of its keys, got {value!r}")
            updates[key] = _apply(current, value, path + ".")
        else:
            updates[key] = _coerce(value, current, path)
    return dataclasses.replace(obj, **updates)


def parse_set_overrides(assignments: List[str]) -> Dict[str, Any]:
    """`["ingest.height=576", "beam.direct_num_workers=1"]` -> nested dict; values are parsed as YAML scalars."""
    nested: Dict[str, Any] = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        dotted, raw = assignment.split("=", 1)
        node = nested
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return nested


def load_config(
    profile: str, config_file: Optional[str] = None, overrides: Optional[List[str]] = None
) -> PipelineConfig:
    """Profile, then the YAML file, then `--set` overrides, then the patient salt from the environment."""
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    config = PROFILES[profile]()
    if config_file:
        with open(config_file) as f:
            from_file = yaml.safe_load(f) or {}
        if not isinstance(from_file, Mapping):
            raise ValueError(f"{config_file}: expected a mapping of configuration sections")
        config = _apply(config, from_file)
    if overrides:
        config = _apply(config, parse_set_overrides(overrides))
    salt = os.environ.get(PATIENT_SALT_ENV)
    if salt:
        # The salt is a secret: it comes from the environment rather than a file checked into a repository.
        config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, patient_salt=salt))
    return config
