"""One typed configuration for the whole pipeline, with named profiles.

A profile is a complete `PipelineConfig`; users change it with a YAML file and/or `--set section.key=value`
overrides (the rule of mammo_tfx/options.py: unknown keys are errors, values are checked against the field
types). The profiles below hold every value in which a profile differs from the defaults, which are the seed
method's values (production); docs/training.md says why the demo and test values are what they are.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import yaml

from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.monitoring.options import DriftOptions
from mammo_tfx.options import override
from mammo_tfx.patches.options import PatchSamplingOptions
from mammo_tfx.serving.limits import RequestLimits
from mammo_tfx.serving.request_log import RequestLogOptions
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.screening import BREAST_UNIT
from pipeline.paths import SETUP_FILE
from trainer_module.hparams import (AugmentationConfig, ImageHParams, PatchHParams, TopBlockSpec, TrainingStep,
                                    TrainScope)
from trainer_module.preprocessing import TransformOptions

# How a Kubeflow ExampleGen pod gets the patient-key salt from its Kubernetes Secret.
SALT_AS_ENV = "env"    # as the variable MAMMO_TFX_PATIENT_SALT
SALT_AS_FILE = "file"  # as a file of a mounted volume (ingest.patient_salt_file points at it)


@dataclass(frozen=True)
class SplitConfig:
    """Relative sizes of the patient-grouped splits (hash buckets)."""

    train: int = 8
    eval: int = 1
    test: int = 1

    def buckets(self) -> List[Tuple[str, int]]:
        return [("train", self.train), ("eval", self.eval), ("test", self.test)]


# Beam flags that say how workers get the code. TFX's Beam executors read them too: with none of them they pack
# TFX's own source into a throw-away sdist for every Beam component run (about 50 MB left in the temp dir and a
# few seconds each). The DirectRunner needs no packing (it runs in this environment); a remote runner needs this
# project's code too, which that sdist lacks.
DEPENDENCY_FLAGS = ("--setup_file", "--extra_package", "--extra_packages", "--requirements_file",
                    "--sdk_container_image", "--worker_harness_container_image")
# Portable runners (Flink, Spark) can instead run workers in a given environment (a worker pool of the image).
WORKER_ENVIRONMENT_FLAGS = DEPENDENCY_FLAGS + ("--environment_type",)


def _names_flag(args: Tuple[str, ...], flags: Tuple[str, ...]) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in args for flag in flags)


@dataclass(frozen=True)
class BeamConfig:
    """Where Beam runs. `runner` DirectRunner is the embedded default; other runners take `extra_args`, which must
    say how their workers get the project (e.g. `--sdk_container_image` of the image built from kfp/Dockerfile)."""

    runner: str = "DirectRunner"
    direct_running_mode: str = "multi_processing"
    direct_num_workers: int = 2
    extra_args: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.runner != "DirectRunner" and not _names_flag(self.extra_args, WORKER_ENVIRONMENT_FLAGS):
            raise ValueError(
                f"beam.runner {self.runner} runs on remote workers, which need this project's code and its "
                f"dependencies: add one of {list(WORKER_ENVIRONMENT_FLAGS)} to beam.extra_args, e.g. "
                "--sdk_container_image=<the image built from kfp/Dockerfile> (see kfp/README.md)")

    def pipeline_args(self) -> List[str]:
        args = [f"--runner={self.runner}"]
        if self.runner == "DirectRunner":
            args += [f"--direct_running_mode={self.direct_running_mode}",
                     f"--direct_num_workers={self.direct_num_workers}"]
            if not _names_flag(self.extra_args, DEPENDENCY_FLAGS):
                # Stages nothing here (the DirectRunner ignores it); it names what a worker would need and keeps
                # TFX from building its sdist.
                args.append(f"--setup_file={SETUP_FILE}")
        return args + list(self.extra_args)


class TrainerService(str, enum.Enum):
    """Where the Trainer steps of a Kubeflow run train."""

    POD = "pod"        # in the step's own pod, with the trainer_* resource requests
    VERTEX = "vertex"  # in a Vertex AI CustomJob that the step's pod submits and waits for


@dataclass(frozen=True)
class KubeflowConfig:
    """Kubeflow-only settings: where and on what the Trainer steps train. The LocalDagRunner ignores them.

    trainer_*: resource requests of the Trainer pods (trainer_service `pod`). Zero values request nothing, leaving
    the cluster's defaults. gpu_type: `nvidia.com/gpu` on open-source KFP, e.g. `NVIDIA_TESLA_T4` on Vertex AI.
    vertex_*: the Vertex AI CustomJob of each Trainer (trainer_service `vertex`, kfp/README.md "Training on Vertex
    AI"): machine type such as `a2-highgpu-1g`, accelerator type such as `NVIDIA_TESLA_A100`; `vertex_image` ""
    runs the image the pipeline is compiled with; `vertex_service_account` "" runs as Vertex AI's default;
    `vertex_spot` runs on Spot VMs, which are cheaper and can be preempted.
    patient_salt_secret / patient_salt_secret_key: the Kubernetes Secret (in the run's namespace) and its key
    that hold the patient-key salt; mounted into the ExampleGen step only, as `patient_salt_as` says: `env` (the
    variable MAMMO_TFX_PATIENT_SALT) or `file` (a read-only volume; the compile points ingest.patient_salt_file
    at it). "" mounts nothing (docs/patient-salt.md).
    """

    trainer_gpu_count: int = 0
    trainer_gpu_type: str = "nvidia.com/gpu"
    trainer_cpu_limit: float = 0.0
    trainer_memory_limit_gb: float = 0.0
    trainer_service: TrainerService = TrainerService.POD
    vertex_project: str = ""
    vertex_region: str = ""
    vertex_machine_type: str = ""
    vertex_accelerator_type: str = ""
    vertex_accelerator_count: int = 0
    vertex_worker_count: int = 1
    vertex_image: str = ""
    vertex_service_account: str = ""
    vertex_spot: bool = False
    patient_salt_secret: str = ""
    patient_salt_secret_key: str = "salt"
    patient_salt_as: str = SALT_AS_ENV

    def __post_init__(self) -> None:
        if self.patient_salt_as not in (SALT_AS_ENV, SALT_AS_FILE):
            raise ValueError(f"kubeflow.patient_salt_as must be {SALT_AS_ENV} or {SALT_AS_FILE}, got "
                             f"{self.patient_salt_as}")
        if self.patient_salt_secret and not self.patient_salt_secret_key:
            raise ValueError(f"kubeflow.patient_salt_secret {self.patient_salt_secret} needs the key that holds the "
                             "salt in kubeflow.patient_salt_secret_key")
        if self.trainer_gpu_count < 0 or self.trainer_cpu_limit < 0 or self.trainer_memory_limit_gb < 0:
            raise ValueError(f"Kubeflow resource requests must not be negative: {self}")
        if self.trainer_gpu_count and not self.trainer_gpu_type:
            raise ValueError(f"{self.trainer_gpu_count} GPUs requested without a trainer_gpu_type")
        services = [service.value for service in TrainerService]
        if self.trainer_service not in services:
            raise ValueError(f"kubeflow.trainer_service must be one of {services}, got {self.trainer_service!r}")
        # A plain string (a KubeflowConfig built in code) becomes the enum, as YAML and --set values do.
        object.__setattr__(self, "trainer_service", TrainerService(self.trainer_service))
        if self.vertex_accelerator_count < 0:
            raise ValueError(
                f"kubeflow.vertex_accelerator_count must not be negative, got {self.vertex_accelerator_count}")
        if bool(self.vertex_accelerator_count) != bool(self.vertex_accelerator_type):
            raise ValueError("kubeflow.vertex_accelerator_type and kubeflow.vertex_accelerator_count go together (a "
                             f"type and a count of at least 1), got {self.vertex_accelerator_type!r} and "
                             f"{self.vertex_accelerator_count}")
        if self.vertex_worker_count < 1:
            raise ValueError(f"kubeflow.vertex_worker_count must be at least 1, got {self.vertex_worker_count}")
        if self.vertex_worker_count > 1:
            # Several machines would each run the whole schedule and export: that needs MultiWorkerMirroredStrategy,
            # per-worker input sharding and chief-only writes, none of which trainer_module/runtime.py has.
            raise ValueError(
                f"kubeflow.vertex_worker_count {self.vertex_worker_count}: training on more than one machine needs "
                "multi-worker distribution, which the trainers do not support; use one machine with several GPUs "
                "(kubeflow.vertex_accelerator_count), which the trainers use with MirroredStrategy")
        if self.trainer_service == TrainerService.VERTEX:
            missing = [f"kubeflow.{name}" for name in ("vertex_project", "vertex_region", "vertex_machine_type")
                       if not getattr(self, name)]
            if missing:
                raise ValueError(f"kubeflow.trainer_service 'vertex' needs {missing}")


@dataclass(frozen=True)
class ReproducibilityConfig:
    """What makes two runs on the same data give the same model (docs/training.md, "Reproducible training").

    seed: every random choice after ingestion (the patients' splits are hashes, not draws) follows it: patch
    sampling, weight initialisation, shuffling, augmentation and dropout in both Trainers.
    deterministic_ops: TensorFlow's op determinism while training, so that the seed alone fixes the weights; off
    trains faster (mostly on a GPU) and a rerun then differs within run-to-run noise. The seed applies either way.
    """

    seed: int = 12345
    deterministic_ops: bool = True


@dataclass(frozen=True)
class PipelineConfig:
    profile: str
    pipeline_name: str = "mammo-tfx"  # Kubeflow's rule: lower case and hyphens
    ingest: IngestOptions = field(default_factory=IngestOptions)
    splits: SplitConfig = field(default_factory=SplitConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    kubeflow: KubeflowConfig = field(default_factory=KubeflowConfig)
    transform: TransformOptions = field(default_factory=TransformOptions)
    patches: PatchSamplingOptions = field(default_factory=PatchSamplingOptions)
    patch_training: PatchHParams = field(default_factory=PatchHParams)
    image_training: ImageHParams = field(default_factory=ImageHParams)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # Input limits: `serving.image` is enforced in the exported graph (and by the built-in server), the rest by the
    # built-in server (`mammo-tfx serve`).
    serving: RequestLimits = field(default_factory=RequestLimits)
    # Drift thresholds of the ExampleValidator and `mammo-tfx monitor`, and whether a drift stops a run.
    monitoring: DriftOptions = field(default_factory=DriftOptions)
    # Request logs of `mammo-tfx serve` (off unless --request-log-dir is given): sampling, file size, rotation.
    request_log: RequestLogOptions = field(default_factory=RequestLogOptions)
    reproducibility: ReproducibilityConfig = field(default_factory=ReproducibilityConfig)
    # A whole-image model to fine-tune (the CLI's --base-model): a pushed model's base folder (its newest version), a
    # version folder or a bare export. Set, the run trains no patch stage: the whole-image Trainer starts from it, the
    # gate compares with it and the Pusher adds a version beside it (pipeline/pipeline.py). "" trains from scratch.
    base_model: str = ""
    enable_cache: bool = True

    def __post_init__(self) -> None:
        # Values several stages must agree on are set once (DERIVED_KEYS): the Trainers follow ingestion and sampling,
        # and sampling and the Trainers follow `reproducibility`.
        seed, deterministic_ops = self.reproducibility.seed, self.reproducibility.deterministic_ops
        object.__setattr__(self, "patches", dataclasses.replace(self.patches, seed=seed))
        object.__setattr__(self, "image_training", dataclasses.replace(
            self.image_training, image_size=(self.ingest.height, self.ingest.width),
            resize_mode=self.ingest.resize_mode, seed=seed, deterministic_ops=deterministic_ops))
        object.__setattr__(self, "patch_training", dataclasses.replace(
            self.patch_training, patch_size=self.patches.patch_size, seed=seed, deterministic_ops=deterministic_ops))
        object.__setattr__(self, "evaluation", dataclasses.replace(
            self.evaluation, external_datasets=self.ingest.external_datasets))

    @property
    def fine_tunes(self) -> bool:
        """Whether the run fine-tunes `base_model` instead of training both stages."""
        return bool(self.base_model)

    def for_patient_salt(self, fingerprint: str) -> PipelineConfig:
        """This configuration for the salt of `fingerprint`, unless a fingerprint is configured already (the
        ExampleGen then refuses any other salt)."""
        if self.ingest.patient_salt_fingerprint:
            return self
        return dataclasses.replace(self, ingest=dataclasses.replace(self.ingest, patient_salt_fingerprint=fingerprint))

    def to_dict(self) -> Dict[str, Any]:
        """The configuration as recorded outside ingestion (the model card shipped beside the served model).

        The patient-key salt is a secret (with it, keys of known patient ids can be recomputed) and no part of a
        configuration: its file path and fingerprint are recorded, never its value.
        """
        values = dataclasses.asdict(self)
        values["ingest"] = self.ingest.to_dict()
        return values


def _demo() -> PipelineConfig:
    # 288x224 is the seed's geometry at 1/4 scale (56-pixel patches); the small backbone keeps it to minutes on CPU
    # (docs/training.md, "Demo profile").
    return PipelineConfig(
        profile="demo",
        ingest=IngestOptions(height=288, width=224),
        splits=SplitConfig(train=6, eval=2, test=2),
        patches=PatchSamplingOptions(patch_size=56),
        # A random-init trunk: every step trains all layers, the rate falls so BatchNorm statistics catch up.
        patch_training=PatchHParams(
            backbone="small", small_backbone_widths=(16, 32, 64),
            head_border_cells=2,  # pool only the 3x3 cells that see no padding (heatmap AUC 0.75 -> 0.91)
            schedule=(TrainingStep(TrainScope.ALL, 1e-3, 12),
                      TrainingStep(TrainScope.ALL, 3e-4, 4),
                      TrainingStep(TrainScope.ALL, 1e-4, 2)),
            steps_per_epoch=30, shuffle_buffer=512),
        # Narrow top blocks need thousands of updates: the frozen-trunk step trains on cached trunk features.
        image_training=ImageHParams(
            batch_size=8, weight_decay=1e-4,
            top_block=TopBlockSpec(depths=(32, 32), repetitions=(1, 1)),
            schedule=(TrainingStep(TrainScope.NEW_LAYERS, 1e-3, 30, steps_per_epoch=130),
                      TrainingStep(TrainScope.ALL, 1e-4, 3)),
            steps_per_epoch=20, shuffle_buffer=64, cache_trunk_features=True),
        # Demo test splits are small: no bootstrap intervals (minutes of TFMA time), smaller slices still count.
        evaluation=EvaluationConfig(compute_confidence_intervals=False, min_slice_size=10, min_examples_per_class=3),
    )


def _production() -> PipelineConfig:
    # The defaults are the seed's hyper-parameters. Steps per epoch cover a CBIS-DDSM-sized training split (about
    # 2,500 scans: ~55,000 S10 patches at batch 32; 2,500 scans at batch 4); set them to your data.
    return PipelineConfig(
        profile="production",
        ingest=IngestOptions(height=1152, width=896),
        kubeflow=KubeflowConfig(trainer_gpu_count=1, trainer_cpu_limit=8.0, trainer_memory_limit_gb=32.0),
        patch_training=PatchHParams(steps_per_epoch=1700, mixed_precision=True, backbone_weights="imagenet"),
        image_training=ImageHParams(steps_per_epoch=600, mixed_precision=True),
        # A woman is recalled per breast: the gate judges breasts (mean of their views' calibrated scores).
        evaluation=EvaluationConfig(gate_unit=BREAST_UNIT),
    )


def _production_smoke() -> PipelineConfig:
    # The production run end to end on a CPU in minutes: every production value (1152x896, ResNet50 on 224-pixel
    # S10 patches, [512-512-1024]x2 top blocks, the schedules' scopes and rates, the breast gate unit) follows
    # `_production`; only step counts and data sizes are cut (docs/training.md, "Production-smoke profile").
    production = _production()

    def one_epoch_per_step(schedule: Tuple[TrainingStep, ...]) -> Tuple[TrainingStep, ...]:
        return tuple(dataclasses.replace(step, epochs=1, steps_per_epoch=None) for step in schedule)

    def smoke_training(hparams: Any, batch_size: int) -> Any:
        return dataclasses.replace(
            hparams, schedule=one_epoch_per_step(hparams.schedule), steps_per_epoch=1, validation_steps=1,
            batch_size=batch_size, early_stopping_patience=None, shuffle_buffer=16,
            # Keras emulates float16 on a CPU: a ResNet50 step runs many times slower than in float32. A GPU run
            # (the production profile) keeps it.
            mixed_precision=False)

    return dataclasses.replace(
        production,
        profile="production-smoke",
        # A handful of patients: the few CBIS-DDSM training patients hash to train or eval (its Test patients are
        # always test), so eval needs a large share of the buckets to hold images of both classes.
        splits=SplitConfig(train=1, eval=1, test=1),
        patch_training=dataclasses.replace(
            # A random-init trunk: the smoke runs offline from a fresh clone (no ImageNet file to read); the e2e
            # test passes a stand-in weights file with --set patch_training.backbone_weights=<file>.
            # Batch 8 instead of 32: a ResNet50 step on 32 patches costs tens of seconds on two CPU cores.
            smoke_training(production.patch_training, batch_size=8), backbone_weights=None),
        # Batch 1 instead of 4: one 1152x896 image through ResNet50 is already a ~20 s training step on a CPU.
        image_training=smoke_training(production.image_training, batch_size=1),
        # A model trained for a few steps cannot reach the production AUC bounds: the bounds are 0 so the gate
        # (breast unit, as production) runs and blesses, and the Pusher pushes. Tiny splits: every slice counts,
        # no TFMA confidence intervals, a few bootstrap resamples.
        evaluation=dataclasses.replace(
            production.evaluation, min_overall_auc=0.0, min_dataset_auc={}, min_slice_size=1,
            min_examples_per_class=1, insufficient_blocks_blessing=False, compute_confidence_intervals=False,
            bootstrap_samples=20),
    )

def _finetune() -> PipelineConfig:
    # The seed's transfer to a new site: the whole-image model, all layers trainable from the first step, at the
    # paper's all-layers rate, with affine augmentation on (a site's data is small); the Transform mean is the new
    # train split's. The gate blesses only a model that beats the base model on the site's test split.
    production = _production()
    return dataclasses.replace(
        production,
        profile="finetune",
        image_training=dataclasses.replace(
            production.image_training, schedule=(TrainingStep(TrainScope.ALL, 1e-5, 20),),
            augmentation=AugmentationConfig(horizontal_flip=True, vertical_flip=True, rotation_degrees=25.0,
                                            zoom_range=(0.9, 1.1))),
        evaluation=dataclasses.replace(production.evaluation, must_beat_baseline=True),
    )


def _test() -> PipelineConfig:
    # A few steps of tiny models on 64x48 scans and 32-pixel patches: the test profile checks mechanics.
    return PipelineConfig(
        profile="test",
        ingest=IngestOptions(height=64, width=48),
        splits=SplitConfig(train=6, eval=2, test=2),
        beam=BeamConfig(direct_running_mode="in_memory", direct_num_workers=1),
        # The seed's S1 set (one centred patch per lesion), with two background patches.
        patches=PatchSamplingOptions(patch_size=32, n_lesion_patches=1, n_background_patches=2, n_hard_negatives=0,
                                     centre_first_lesion_patch=True),
        patch_training=PatchHParams(
            backbone="small", small_backbone_widths=(4, 8, 8), batch_size=8,
            schedule=(TrainingStep(TrainScope.NEW_LAYERS, 1e-2, 1),
                      TrainingStep(TrainScope.TOP_OF_TRUNK, 1e-2, 1),
                      TrainingStep(TrainScope.ALL, 1e-3, 1)),
            steps_per_epoch=2, shuffle_buffer=16),
        image_training=ImageHParams(
            top_block=TopBlockSpec(depths=(8, 8), repetitions=(1, 1)),
            schedule=(TrainingStep(TrainScope.NEW_LAYERS, 1e-2, 1),
                      TrainingStep(TrainScope.ALL, 1e-3, 1)),
            steps_per_epoch=2, early_stopping_patience=None, shuffle_buffer=16),
        # The tiny model learns little in a few steps; the test profile checks mechanics, and the gate tests check
        # blessing with models of known quality.
        evaluation=EvaluationConfig(compute_confidence_intervals=False, min_overall_auc=0.0, min_dataset_auc={},
                                    min_slice_size=1, min_examples_per_class=1, insufficient_blocks_blessing=False),
    )


# Keys that follow other keys; overriding them directly is an error that names the key to set instead.
DERIVED_KEYS = {
    "profile": "the profile chosen (load_config's profile, the CLI's --profile)",
    "image_training.image_size": "ingest.height / ingest.width",
    "image_training.resize_mode": "ingest.resize_mode",
    "patch_training.patch_size": "patches.patch_size",
    "evaluation.external_datasets": "ingest.external_datasets (the CLI's --external)",
    "patches.seed": "reproducibility.seed",
    "patch_training.seed": "reproducibility.seed",
    "image_training.seed": "reproducibility.seed",
    "patch_training.deterministic_ops": "reproducibility.deterministic_ops",
    "image_training.deterministic_ops": "reproducibility.deterministic_ops",
}

PROFILES: Dict[str, Callable[[], PipelineConfig]] = {
    "demo": _demo, "production": _production, "production-smoke": _production_smoke, "finetune": _finetune,
    "test": _test}


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
    """Profile, then the YAML file, then `--set` overrides. The patient-key salt is never part of it: the ExampleGen
    reads it where it runs (mammo_tfx/ingest/salt.py)."""
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile}; the profiles are {', '.join(PROFILES)}")
    config = PROFILES[profile]()
    if config_file:
        with open(config_file) as f:
            from_file = yaml.safe_load(f) or {}
        if not isinstance(from_file, Mapping):
            raise ValueError(f"{config_file}: expected a mapping of configuration sections")
        config = override(config, from_file, DERIVED_KEYS)
    if overrides:
        config = override(config, parse_set_overrides(overrides), DERIVED_KEYS)
    return config
