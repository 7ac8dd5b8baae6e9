"""Trainer overheads, each measured against the bare model in one run.

1. Training throughput of both stages with the Trainer's own input pipeline
   (`trainer_module.inputs.tfrecord_input_fn`: GZIP TFRecords -> parse -> Transform layer -> checks -> augmentation
   -> batch-balance weights) against the same model fed the same batches from tensors already in memory (so only
   the input pipeline differs). Stage 1: patches/s of the demo patch classifier on the run's PatchSampler records;
   stage 2: images/s of the demo whole-image classifier on the run's ExampleGen records. Goal: ratio >= 0.9.
2. Inference latency of the exported `serving_default` signature (PNG bytes in: decode, Transform layer, 4 flips,
   model) on one 1152x896 16-bit PNG, with the PRODUCTION architecture (ResNet50 trunk + resnet [512-512-1024]x2
   top blocks, random weights, built with trainer_module's builders and exported with trainer_module.export),
   against the bare Keras model's forward pass (a tf.function) on the same already-normalised 4-flip batch.
   Goal: ratio <= 1.1.

It needs one finished demo run (the Transform graph and the TFRecords): `mammo-tfx demo --out DIR` first.

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/trainer_benchmark.py --run-dir DIR
        [--steps 40] [--repeats 3] [--latency-calls 5] [--skip-latency]
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import glob  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable, Iterator, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from mammo_tfx import names  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.outputs import latest_output_uri, open_store  # noqa: E402
from trainer_module import inputs  # noqa: E402
from trainer_module.backbones import TRUNK_NAME  # noqa: E402
from trainer_module.hparams import ImageHParams, PatchHParams, TrainingStep, TrainScope  # noqa: E402
from trainer_module.patch_model import build_patch_model  # noqa: E402
from trainer_module.schedule import compile_for_step  # noqa: E402
from trainer_module.whole_image_model import build_whole_image_model  # noqa: E402


@dataclasses.dataclass(frozen=True)
class RunArtifacts:
    transform_graph: str
    examples: str
    patches: str


def find_artifacts(run_dir: str) -> RunArtifacts:
    """The run's Transform graph and record folders, from its ML Metadata."""
    store = open_store(os.path.join(run_dir, "metadata.sqlite"))
    found = {}
    for name, node, key in (("transform_graph", "Transform", "transform_graph"),
                            ("examples", "MammoExampleGen", "examples"), ("patches", "PatchSampler", "patches")):
        uri = latest_output_uri(store, node, key)
        if uri is None:
            raise RuntimeError(f"{run_dir}: no {key!r} output of {node}; run `mammo-tfx demo --out {run_dir}` first")
        found[name] = uri
    return RunArtifacts(**found)


def _train_seconds(model: tf_keras.Model, batches: Iterator, steps: int) -> float:
    """Seconds for `steps` training steps on batches drawn from one long-lived iterator, as in a Trainer epoch
    (a `fit` call keeps one iterator for all its epochs; a new one per timing would time only the first pass)."""
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*next(batches))
    return time.perf_counter() - start


def count_records(files: Sequence[str]) -> int:
    return int(tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(0, lambda count, _: count + 1))


def in_memory_copy(dataset: tf.data.Dataset, batches: int) -> tf.data.Dataset:
    """The first `batches` batches of `dataset` held as tensors, replayed forever (no reading, no decoding)."""
    held = [tuple(tf.constant(part) for part in batch) for batch in dataset.take(batches)]
    if len(held) < batches:
        raise RuntimeError(f"the input pipeline gave {len(held)} batches, {batches} needed")
    stacked = tuple(tf.stack([batch[i] for batch in held]) for i in range(len(held[0])))
    return tf.data.Dataset.from_tensor_slices(stacked).repeat().prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class Throughput:
    stage: str
    unit: str
    batch_size: int
    steps: int
    pipeline_s: List[float]
    memory_s: List[float]

    def rate(self, seconds: Sequence[float]) -> float:
        # Median over the alternating repeats: the machine is shared, single repeats can be hit by other load.
        return self.steps * self.batch_size / statistics.median(seconds)

    @property
    def ratio(self) -> float:
        return self.rate(self.pipeline_s) / self.rate(self.memory_s)


def measure_training(stage: str, unit: str, model: tf_keras.Model, pipeline: tf.data.Dataset, batch_size: int,
                     steps: int, repeats: int, warmup_batches: int) -> Throughput:
    """Alternates input-pipeline and in-memory runs of `steps` steps on one compiled model."""
    memory = in_memory_copy(pipeline, steps)
    compile_for_step(model, TrainingStep(TrainScope.ALL, 1e-4, 1), lambda: ["accuracy"])
    pipeline_batches, memory_batches = iter(pipeline), iter(memory)
    # Warm-up: one pass over the training split, as the first epoch of a Trainer does (shuffle buffer filled,
    # tf.data autotuning settled), then a few steps on each source to trace the train function.
    for _ in range(warmup_batches):
        next(pipeline_batches)
    _train_seconds(model, pipeline_batches, max(2, steps // 4))
    _train_seconds(model, memory_batches, max(2, steps // 4))
    pipeline_s, memory_s = [], []
    for _ in range(repeats):
        pipeline_s.append(_train_seconds(model, pipeline_batches, steps))
        memory_s.append(_train_seconds(model, memory_batches, steps))
    return Throughput(stage, unit, batch_size, steps, pipeline_s, memory_s)


def _train_split_throughput(stage: str, unit: str, model, examples_uri: str, spec, hparams,
                            tf_transform_output, steps: int, repeats: int) -> Throughput:
    """Throughput of `model` on the train split under `examples_uri`: the Trainer's input function vs memory."""
    files = sorted(glob.glob(os.path.join(examples_uri, "Split-train", "*.gz")))
    pipeline = inputs.tfrecord_input_fn(files, tf_transform_output, spec, hparams, training=True)
    return measure_training(stage, unit, model, pipeline, hparams.batch_size, steps, repeats,
                            -(-count_records(files) // hparams.batch_size))


def training_throughput(artifacts: RunArtifacts, steps: int, repeats: int) -> List[Throughput]:
    tf_transform_output = tft.TFTransformOutput(artifacts.transform_graph)
    patch = load_config("demo").patch_training
    patch_model = build_patch_model(patch)
    image = load_config("demo").image_training
    image_model = build_whole_image_model(patch_model.get_layer(TRUNK_NAME), image)
    return [
        _train_split_throughput("1 (patches, demo)", "patches/s", patch_model, artifacts.patches,
                                inputs.patch_example_spec(patch.patch_size), patch, tf_transform_output, steps,
                                repeats),
        _train_split_throughput("2 (whole images, demo)", "images/s", image_model, artifacts.examples,
                                inputs.whole_image_example_spec(image.image_size), image, tf_transform_output, steps,
                                repeats),
    ]


@dataclasses.dataclass(frozen=True)
class Latency:
    serving_s: List[float]
    bare_s: List[float]
    max_abs_difference: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.serving_s) / statistics.median(self.bare_s)


def _timed_calls(call: Callable[[], object], calls: int) -> List[float]:
    call()  # warm-up (tracing, first-touch allocations)
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def production_png(rows: int, cols: int) -> bytes:
    """A 16-bit greyscale PNG at the production working size (smooth blobs + noise: PNG-compressible like a scan)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:rows, 0:cols]
    breast = np.exp(-(((x / cols) ** 2) / 0.4 + (((y - rows / 2) / rows) ** 2) / 0.2))
    pixels = np.clip(breast * 40000 + rng.normal(0, 800, (rows, cols)), 0, 65535).astype(np.uint16)
    return tf.io.encode_png(pixels[..., None]).numpy()


def serving_latency(artifacts: RunArtifacts, calls: int) -> Tuple[Latency, Tuple[int, int]]:
    from mammo_tfx.evaluation.screening import ScreeningOptions
    from trainer_module.export import export_whole_image_model
    from trainer_module.inputs import transform_images
    from trainer_module.whole_image_model import MALIGNANT_IMAGE_CLASS

    patch = PatchHParams()
    image = ImageHParams()
    rows, cols = image.image_size
    tf_transform_output = tft.TFTransformOutput(artifacts.transform_graph)
    patch_model = build_patch_model(patch)
    model = build_whole_image_model(patch_model.get_layer(TRUNK_NAME), image)
    heatmap_patch_model = build_patch_model(patch)
    png = production_png(rows, cols)
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as export_dir:
        # The export calibrates on the run's eval split (scored once more at this working size).
        export_whole_image_model(model, heatmap_patch_model, image, patch, tf_transform_output, export_dir,
                                 [os.path.join(artifacts.examples, "Split-eval", "*.gz")], ScreeningOptions())
        serve = tf.saved_model.load(export_dir).signatures[names.DEFAULT_SIGNATURE]
        request = tf.constant([png])

        # The bare model gets the input already decoded and normalised by the same Transform layer.
        tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()[names.IMAGE_PNG]
        raw = tf.constant([[png]]) if list(getattr(raw_spec, "shape", [])) == [1] else tf.constant([png])
        normalised = transform_images(tft_layer, raw)
        flips = tf.concat([normalised, tf.reverse(normalised, [2]), tf.reverse(normalised, [1]),
                           tf.reverse(normalised, [1, 2])], axis=0)
        forward = tf.function(lambda batch: model(batch, training=False))

        served = serve(**{names.IMAGE_BYTES_INPUT: request})
        bare = tf.reduce_mean(forward(flips)[:, MALIGNANT_IMAGE_CLASS])
        difference = abs(float(served[names.PROBABILITY][0]) - float(bare))
        serving_s = _timed_calls(lambda: serve(**{names.IMAGE_BYTES_INPUT: request})[names.PROBABILITY].numpy(), calls)
        bare_s = _timed_calls(lambda: forward(flips).numpy(), calls)
    return Latency(serving_s, bare_s, difference), (rows, cols)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="output folder of a finished `mammo-tfx demo` run")
    parser.add_argument("--steps", type=int, default=40, help="training steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per input source (alternating)")
    parser.add_argument("--latency-calls", type=int, default=5)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)

    tf.random.set_seed(0)
    artifacts = find_artifacts(os.path.abspath(args.run_dir))
    print(f"{os.cpu_count()} CPU cores; TensorFlow {tf.__version__}", flush=True)
    print("\n### Training throughput: Trainer input pipeline vs in-memory tensors\n")
    print("| stage | batch | steps x repeats | input pipeline | in memory | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for result in training_throughput(artifacts, args.steps, args.repeats):
        print(f"| {result.stage} | {result.batch_size} | {result.steps} x {len(result.pipeline_s)} | "
              f"{result.rate(result.pipeline_s):.1f} {result.unit} | "
              f"{result.rate(result.memory_s):.1f} {result.unit} | {result.ratio:.2f} |", flush=True)
    if not args.skip_latency:
        latency, (rows, cols) = serving_latency(artifacts, args.latency_calls)
        print(f"\n### Inference latency, production architecture (ResNet50 + [512-512-1024]x2), one {rows}x{cols} "
              "16-bit PNG, 4 flips\n")
        print("| path | median (s) | min (s) | max (s) |")
        print("| --- | ---: | ---: | ---: |")
        for name, seconds in (("`serving_default` (PNG bytes in)", latency.serving_s),
                              ("bare Keras forward (4-flip batch)", latency.bare_s)):
            print(f"| {name} | {statistics.median(seconds):.3f} | {min(seconds):.3f} | {max(seconds):.3f} |")
        print(f"\nratio serving / bare: {latency.ratio:.2f}; |probability difference| {latency.max_abs_difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
