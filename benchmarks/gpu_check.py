"""GPU check: what one GPU does with the production models, measured in one command (docs/benchmarks.md, "GPU check").

On a machine with a GPU (a few minutes; the figures of the README's GPU plan come from its table):
1. training steps of both stages at production geometry (`production` profile: ResNet50 on 224-pixel patches at
   batch 32; ResNet50 + [512-512-1024]x2 top blocks on 1152x896 images at batch 4), all layers training, in float32
   and in mixed precision: steps/s, images/s and peak GPU memory (tf.config.experimental.get_memory_info);
2. from the same steps, whether the Trainer's tf.data input pipeline (`trainer_module.inputs.tfrecord_input_fn`:
   GZIP TFRecords -> PNG decode -> Transform layer -> checks -> augmentation -> balancing weights) keeps the GPU fed:
   the share of the wall time spent waiting for the next batch (input-bound above 10%);
3. one full evaluation pass of the whole-image model over an eval split as the export scores it (4 flips);
4. one training step under op determinism (`reproducibility.deterministic_ops`), naming the op if one has no
   deterministic GPU implementation.
The examples are synthetic 16-bit PNGs at the profile's geometry; the Transform graph is a real run's (the graph
does not depend on the image size): `--transform-graph DIR` or `--run-dir DIR` of any finished run
(`mammo-tfx demo --out DIR`).

Without a GPU it says so and exits 0. `--allow-cpu --geometry small --steps 2` runs the same code on a CPU with the
test profile's tiny models (what tests/test_gpu_check.py does).

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/gpu_check.py --run-dir DIR [--steps 20] [--eval-images 64]
        [--markdown OUT.md]
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# Geometry -> the profile whose architecture, sizes and batches are measured.
GEOMETRY_PROFILES = {"production": "production", "small": "test"}
# Above this share of the wall time spent waiting for batches, the GPU is input-bound.
INPUT_BOUND_SHARE = 0.10
WARMUP_STEPS = 2
PATCH_STAGE = "patch"
IMAGE_STAGE = "whole image"
NO_GPU_MESSAGE = ("No GPU is visible to TensorFlow on this machine: the GPU check has nothing to measure. Run it on "
                  "the GPU machine (or pass --allow-cpu to exercise it on a CPU).")


@dataclasses.dataclass(frozen=True)
class StepFigures:
    stage: str
    mixed_precision: bool
    batch_size: int
    steps: int
    seconds: float
    waiting_seconds: float
    peak_memory_bytes: Optional[int]

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    @property
    def images_per_second(self) -> float:
        return self.steps * self.batch_size / self.seconds

    @property
    def waiting_share(self) -> float:
        return self.waiting_seconds / self.seconds

    @property
    def input_bound(self) -> bool:
        return self.waiting_share > INPUT_BOUND_SHARE


@dataclasses.dataclass(frozen=True)
class EvaluationFigures:
    images: int
    seconds: float
    peak_memory_bytes: Optional[int]


@dataclasses.dataclass(frozen=True)
class Report:
    device: str
    geometry: str
    steps: List[StepFigures]
    evaluation: EvaluationFigures
    determinism: str  # "ok" or the error that op determinism raised


def gpu_devices() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def _device_name(gpus: list) -> str:
    import tensorflow as tf

    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{details.get('device_name', gpus[0].name)} (x{len(gpus)})"


def _reset_peak_memory(on_gpu: bool) -> None:
    import tensorflow as tf

    if on_gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")


def _peak_memory(on_gpu: bool) -> Optional[int]:
    import tensorflow as tf

    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"]) if on_gpu else None


def write_examples(path: str, label_key: str, rows: int, cols: int, count: int) -> str:
    """`count` examples of one synthetic 16-bit PNG at rows x cols (alternating labels) as a GZIP TFRecord file."""
    import tensorflow as tf

    from benchmarks.trainer_benchmark import production_png
    from mammo_tfx import names

    png = production_png(rows, cols)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for index in range(count):
            example = tf.train.Example(features=tf.train.Features(feature={
                names.IMAGE_PNG: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                label_key: tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 2])),
            }))
            writer.write(example.SerializeToString())
    return path


def _patch_model(hparams):
    from trainer_module.patch_model import build_patch_model

    # Random-init trunk: the check measures speed, and a GPU machine may have no ImageNet file at hand.
    return build_patch_model(dataclasses.replace(hparams, backbone_weights=None))


def _whole_image_model(patch_hparams, image_hparams):
    from trainer_module.backbones import TRUNK_NAME
    from trainer_module.whole_image_model import build_whole_image_model

    return build_whole_image_model(_patch_model(patch_hparams).get_layer(TRUNK_NAME), image_hparams)


def training_steps(stage: str, config, tf_transform_output, records: str, mixed_precision: bool, steps: int,
                   on_gpu: bool) -> StepFigures:
    """`steps` all-layers training steps fed by the Trainer's input pipeline, after WARMUP_STEPS untimed ones."""
    from trainer_module import inputs, runtime
    from trainer_module.hparams import TrainingStep, TrainScope
    from trainer_module.schedule import compile_for_step

    hparams = config.patch_training if stage == PATCH_STAGE else config.image_training
    hparams = dataclasses.replace(hparams, mixed_precision=mixed_precision)
    spec = (inputs.patch_example_spec(hparams.patch_size) if stage == PATCH_STAGE
            else inputs.whole_image_example_spec(hparams.image_size))
    dataset = inputs.tfrecord_input_fn([records], tf_transform_output, spec, hparams, training=True)
    _reset_peak_memory(on_gpu)
    with runtime.precision_policy(mixed_precision):
        model = (_patch_model(hparams) if stage == PATCH_STAGE
                 else _whole_image_model(config.patch_training, hparams))
        compile_for_step(model, TrainingStep(TrainScope.ALL, 1e-4, 1), lambda: [])
        batches = iter(dataset)
        for _ in range(WARMUP_STEPS):  # tracing, first allocations, tf.data autotuning
            model.train_on_batch(*next(batches))
        waiting = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            fetch = time.perf_counter()
            batch = next(batches)
            waiting += time.perf_counter() - fetch
            model.train_on_batch(*batch)  # returns the loss as a number: the step has finished on the device
        seconds = time.perf_counter() - start
    return StepFigures(stage, mixed_precision, hparams.batch_size, steps, seconds, waiting, _peak_memory(on_gpu))


def evaluation_pass(config, tf_transform_output, records: str, on_gpu: bool) -> EvaluationFigures:
    """One pass over the eval records as the export scores them: the whole-image model on 4 flips of each image."""
    import tensorflow as tf

    from mammo_tfx import names
    from trainer_module import inputs, runtime
    from trainer_module.export import flip_tta

    hparams = config.image_training
    spec = inputs.whole_image_example_spec(hparams.image_size)
    dataset = inputs.tfrecord_input_fn([records], tf_transform_output, spec, hparams, training=False)
    _reset_peak_memory(on_gpu)
    with runtime.precision_policy(hparams.mixed_precision):
        model = _whole_image_model(config.patch_training, hparams)
        score = tf.function(lambda images: flip_tta(model, images))
        score(next(iter(dataset))[0])  # tracing
        images = 0
        start = time.perf_counter()
        for batch_images, _ in dataset:
            score(batch_images)[names.SCORE].numpy()  # as a number: the batch has finished on the device
            images += int(batch_images.shape[0])
        seconds = time.perf_counter() - start
    return EvaluationFigures(images, seconds, _peak_memory(on_gpu))


def determinism_check(config, tf_transform_output, records: str) -> str:
    """One whole-image training step with op determinism on: "ok", or the error of the op that refuses."""
    import tensorflow as tf

    from trainer_module import runtime

    hparams = dataclasses.replace(config.image_training, deterministic_ops=True)
    try:
        with runtime.reproducible(hparams):
            training_steps(IMAGE_STAGE, dataclasses.replace(config, image_training=hparams), tf_transform_output,
                           records, hparams.mixed_precision, 1, on_gpu=False)
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as error:
        return f"raises: {error.message.splitlines()[0]}"
    return "ok"


def run_check(transform_graph: str, geometry: str, steps: int, eval_images: int, on_gpu: bool) -> Report:
    import tensorflow_transform as tft

    from mammo_tfx import names
    from pipeline.config import load_config

    config = load_config(GEOMETRY_PROFILES[geometry])
    tf_transform_output = tft.TFTransformOutput(transform_graph)
    rows, cols = config.image_training.image_size
    patch = config.patch_training.patch_size
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        # Enough distinct positions for the shuffle buffer and a few batches; the pipeline repeats them.
        patches = write_examples(os.path.join(work, "patches", "train.gz"), names.PATCH_CLASS, patch, patch,
                                 4 * config.patch_training.batch_size)
        images = write_examples(os.path.join(work, "images", "train.gz"), names.LABEL, rows, cols,
                                4 * config.image_training.batch_size)
        eval_records = write_examples(os.path.join(work, "images", "eval.gz"), names.LABEL, rows, cols, eval_images)
        figures = [training_steps(stage, config, tf_transform_output, records, mixed, steps, on_gpu)
                   for stage, records in ((PATCH_STAGE, patches), (IMAGE_STAGE, images))
                   for mixed in (False, True)]
        evaluation = evaluation_pass(config, tf_transform_output, eval_records, on_gpu)
        determinism = determinism_check(config, tf_transform_output, images)
    return Report(_device_name(gpu_devices() if on_gpu else []), geometry, figures, evaluation, determinism)


def _gigabytes(value: Optional[int], unit: str = "") -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f}{unit}"


def markdown(report: Report) -> str:
    lines = [f"### GPU check: {report.device}, {report.geometry} geometry", "",
             "| stage | precision | batch | steps/s | images/s | peak GPU memory (GB) | waiting for input | fed |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for step in report.steps:
        lines.append(
            f"| {step.stage} | {'mixed float16' if step.mixed_precision else 'float32'} | {step.batch_size} | "
            f"{step.steps_per_second:.2f} | {step.images_per_second:.1f} | {_gigabytes(step.peak_memory_bytes)} | "
            f"{100 * step.waiting_share:.0f}% | {'input-bound' if step.input_bound else 'yes'} |")
    evaluation = report.evaluation
    lines += ["", f"Evaluation pass (whole-image model, 4 flips, profile precision): {evaluation.images} images in "
              f"{evaluation.seconds:.1f} s = {evaluation.images / evaluation.seconds:.1f} images/s, peak GPU memory "
              f"{_gigabytes(evaluation.peak_memory_bytes, ' GB')}.",
              f"Op determinism (one whole-image step): {report.determinism}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run-dir", help="output folder of a finished run (its Transform graph is used)")
    source.add_argument("--transform-graph", help="a Transform component's output folder")
    parser.add_argument("--geometry", choices=sorted(GEOMETRY_PROFILES), default="production")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per stage and precision")
    parser.add_argument("--eval-images", type=int, default=64, help="images in the evaluation pass")
    parser.add_argument("--allow-cpu", action="store_true", help="run on a CPU when there is no GPU (for tests)")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)

    gpus = gpu_devices()
    if not gpus and not args.allow_cpu:
        print(NO_GPU_MESSAGE)
        return 0
    if args.run_dir:
        from benchmarks.trainer_benchmark import find_artifacts

        transform_graph = find_artifacts(os.path.abspath(args.run_dir)).transform_graph
    elif args.transform_graph:
        transform_graph = args.transform_graph
    else:
        parser.error("the check needs a Transform graph: --run-dir of a finished run (e.g. `mammo-tfx demo --out "
                     "DIR`) or --transform-graph")
    start = time.perf_counter()
    report = run_check(transform_graph, args.geometry, args.steps, args.eval_images, on_gpu=bool(gpus))
    table = markdown(report)
    print(table + f"\nGPU check wall time {time.perf_counter() - start:.0f} s")
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
