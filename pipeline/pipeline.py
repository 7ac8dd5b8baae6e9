"""The mammo-tfx pipeline, defined once; runners (pipeline/runners.py) only choose where it runs."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, List, Mapping, Optional, Tuple

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2
from tfx_bsl.public.proto import slicing_spec_pb2

from components.drift_validator.component import DriftValidator
from components.mammo_example_gen.component import MammoExampleGen
from components.mammo_example_gen.executor import encode_custom_config
from components.patch_sampler.component import PatchSampler
from mammo_tfx import names
from mammo_tfx.ingest.splits import EVAL_SPLIT, TEST_SPLIT, TRAIN_SPLIT, SplitNeeds
from mammo_tfx.serving.repository import ModelFolder, find_model_folder
from pipeline.config import PipelineConfig, SplitConfig
from pipeline.evaluation import create_evaluation_components
from pipeline.paths import SCHEMA_FILE
from trainer_module.hparams import CHECKPOINTS_CONFIG_KEY, IMAGE_LIMITS_CONFIG_KEY, SCREENING_CONFIG_KEY

# Code runs from import paths of the installed project rather than `module_file`, which TFX would package and
# upload at compile time (impossible without network, and unnecessary: the project is installed in the image).
PREPROCESSING_FN = "trainer_module.preprocessing.preprocessing_fn"
PATCH_RUN_FN = "trainer_module.patch_trainer.run_fn"
IMAGE_RUN_FN = "trainer_module.image_trainer.run_fn"
PATCH_TRAINER_ID = "Trainer_patch"
IMAGE_TRAINER_ID = "Trainer_image"
# Under the pipeline root, beside (not inside) the artifact folders that TFX removes when an execution fails.
REPORTS_FOLDER = "reports"
CHECKPOINTS_FOLDER = "checkpoints"
EXAMPLE_VALIDATOR_ID = "ExampleValidator"
FINETUNE_PROFILE = "finetune"


def reports_dir(pipeline_root: str, component_id: str) -> str:
    """Where a component keeps the reports of its executions; one subfolder per execution."""
    return os.path.join(pipeline_root, REPORTS_FOLDER, component_id)


def checkpoints_dir(pipeline_root: str, component_id: str) -> str:
    """Where a Trainer keeps its epoch checkpoints, so that a re-run of a killed Trainer resumes (one subfolder per
    training inputs and hparams, trainer_module/checkpoints.py)."""
    return os.path.join(pipeline_root, CHECKPOINTS_FOLDER, component_id)


def output_config(splits: SplitConfig) -> example_gen_pb2.Output:
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
            for name, buckets in splits.buckets()
        ])
    )


def split_needs(config: PipelineConfig) -> SplitNeeds:
    """What the stages below need of each split, as they are wired: both Trainers train on `train` and validate on
    `eval`, the whole-image export calibrates on `eval`, the Evaluator and the gate judge `test` (their AUCs need both
    classes), and the patch stage draws lesion patches from `train` and validates on patches of `eval`. A fine-tune
    run has no patch stage: labels are enough."""
    fine_tunes = config.fine_tunes
    return SplitNeeds(
        examples=tuple(name for name, _ in config.splits.buckets()),
        both_classes=(EVAL_SPLIT, TEST_SPLIT),
        located_lesions=() if fine_tunes else (TRAIN_SPLIT,),
        patches=() if fine_tunes else (EVAL_SPLIT,),
        uses={TRAIN_SPLIT: "the whole-image Trainer learns from it" if fine_tunes else "the Trainers learn from it",
              EVAL_SPLIT: "the Trainers validate on it, the export calibrates on it",
              TEST_SPLIT: "the Evaluator and the gate judge the model on it"})


def resolve_base_model(config: PipelineConfig) -> ModelFolder:
    """The model a fine-tune run starts from, resolved once when the pipeline is built (a base folder's newest
    version then), so the Trainer, the baseline and the Pusher agree on one version."""
    if not config.base_model:
        raise ValueError(f"the {config.profile} profile fine-tunes a model: name it with --base-model (a pushed "
                         "model's base folder, a version folder or a whole-image export)")
    found = find_model_folder(config.base_model)
    if found is None:
        raise ValueError(f"the base model {config.base_model} holds no model: expected a pushed model's base folder "
                         "with a complete version, a version folder or a whole-image export (saved_model.pb)")
    return found


def push_directories(config: PipelineConfig, pipeline_root: str) -> Tuple[str, str]:
    """(where the baseline is read, where the Pusher writes). A fine-tune run compares with its base model and
    pushes beside it when it is a version of a base folder, else into the configured serving folder."""
    push_base_directory = config.evaluation.push_base_directory(pipeline_root)
    if not config.fine_tunes and config.profile != FINETUNE_PROFILE:
        return push_base_directory, push_base_directory
    base = resolve_base_model(config)
    return base.path, base.base_directory or push_base_directory


def statistics_options() -> tfdv.StatsOptions:
    """StatisticsGen's options: statistics over all examples and per dataset, site and device (a new device shows as
    its own slice, and a device's drift is not diluted by the others)."""
    return tfdv.StatsOptions(slicing_config=slicing_spec_pb2.SlicingConfig(slicing_specs=[
        slicing_spec_pb2.SlicingSpec(feature_keys=[feature]) for feature in names.STATISTICS_SLICE_FEATURES]))


def create_components(
    config: PipelineConfig,
    manifest_dir: str,
    pipeline_root: str,
    cloud_training: Optional[Mapping[str, Any]] = None,
) -> List[tfx.types.BaseNode]:
    """The pipeline's components. cloud_training: the custom_config keys of TFX's Google Cloud Trainer extension
    (pipeline/kubeflow.py builds them for a Kubeflow compile); given, both Trainers are that extension's Trainer,
    whose step submits the training as a Vertex AI CustomJob and waits for it, else TFX's Trainer, which trains
    in its own process."""
    example_gen = MammoExampleGen(
        input_base=manifest_dir,
        custom_config=encode_custom_config(config.ingest),
        output_config=output_config(config.splits),
        reports_dir=reports_dir(pipeline_root, MammoExampleGen.__name__),
        split_needs=split_needs(config),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  stats_options=statistics_options())
    schema_gen = tfx.components.ImportSchemaGen(schema_file=SCHEMA_FILE)
    # Schema anomalies, and drift from the data the model in service (the newest pushed version) was trained on.
    baseline_directory, push_base_directory = push_directories(config, pipeline_root)
    example_validator = DriftValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        options=config.monitoring, baseline_dir=push_base_directory,
        reports_dir=reports_dir(pipeline_root, EXAMPLE_VALIDATOR_ID)).with_id(EXAMPLE_VALIDATOR_ID)
    # Full-size float images are never written to disk (4 MB each at 1152x896): Transform only analyses the train
    # split (the featurewise mean) and the Trainers apply its graph in their input pipelines and in the export.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=config.transform.to_dict(),
        splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN_SPLIT]),
        materialize=False,
        disable_statistics=True,
    )
    # Training starts only after the validation: with monitoring.stop_run_on_drift a drift stops the run here.
    transform.add_upstream_node(example_validator)
    trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer if cloud_training else tfx.components.Trainer

    def trainer(component_id: str, run_fn: str, examples, hparams, **base_model) -> tfx.components.Trainer:
        return trainer_class(
            run_fn=run_fn,
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            **base_model,
            train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[EVAL_SPLIT]),
            # Each Trainer gets only the settings it reads, so that its cache key changes only when its output can:
            # the whole-image export enforces the serving image limits in its graph and calibrates its answer and
            # chooses its thresholds (evaluation.screening); the patch export is never served.
            custom_config={"hparams": hparams.to_dict(),
                           CHECKPOINTS_CONFIG_KEY: checkpoints_dir(pipeline_root, component_id),
                           **({IMAGE_LIMITS_CONFIG_KEY: config.serving.image.to_dict(),
                               SCREENING_CONFIG_KEY: config.evaluation.screening.to_dict()}
                              if run_fn == IMAGE_RUN_FN else {}),
                           **(cloud_training or {})},
        ).with_id(component_id)

    if config.fine_tunes:
        # No patch stage: the whole-image Trainer starts from the base model's export (its architecture, weights and
        # heatmap patch classifier), named by a versioned path so that a cached Trainer never hides a newer version.
        patch_stage: List[tfx.types.BaseNode] = []
        image_trainer = trainer(IMAGE_TRAINER_ID, IMAGE_RUN_FN, example_gen.outputs["examples"],
                                dataclasses.replace(config.image_training, init_from=baseline_directory))
    else:
        patch_sampler = PatchSampler(
            examples=example_gen.outputs["examples"], sampling_options=config.patches,
            splits=(TRAIN_SPLIT, EVAL_SPLIT), lesion_splits=(TRAIN_SPLIT,))
        patch_trainer = trainer(PATCH_TRAINER_ID, PATCH_RUN_FN, patch_sampler.outputs["patches"],
                                config.patch_training)
        patch_stage = [patch_sampler, patch_trainer]
        # Stage 2 takes stage 1's model as base_model, so a change to stage 2 re-uses the cached stage 1.
        image_trainer = trainer(IMAGE_TRAINER_ID, IMAGE_RUN_FN, example_gen.outputs["examples"],
                                config.image_training, base_model=patch_trainer.outputs["model"])
    # Only the whole-image model is evaluated and can be blessed, so only it can become the next run's baseline.
    evaluation = create_evaluation_components(
        config.evaluation, example_gen.outputs["examples"], image_trainer.outputs["model"], pipeline_root,
        profile=config.to_dict(), schema_channel=schema_gen.outputs["schema"],
        statistics_channel=statistics_gen.outputs["statistics"],
        baseline_directory=baseline_directory, push_base_directory=push_base_directory)
    return [example_gen, statistics_gen, schema_gen, example_validator, transform, *patch_stage, image_trainer,
            *evaluation]


def create_pipeline(
    config: PipelineConfig,
    manifest_dir: str,
    pipeline_root: str,
    metadata_path: Optional[str] = None,
    cloud_training: Optional[Mapping[str, Any]] = None,
) -> tfx.dsl.Pipeline:
    """cloud_training: see `create_components`; only the Kubeflow compile sets it."""
    metadata_config = (
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path) if metadata_path else None
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=create_components(config, manifest_dir, pipeline_root, cloud_training),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_config,
        beam_pipeline_args=config.beam.pipeline_args(),
    )
