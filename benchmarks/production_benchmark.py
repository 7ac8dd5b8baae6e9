"""Training cost of the production architecture on CPU, and the accelerator batch sizes it implies.

Measured (CPU, float32, random weights, random inputs; each figure in a fresh subprocess):
1. seconds per training step and peak memory of both training stages at production geometry, at a few batch
   sizes, in each schedule scope where the cost differs: the patch classifier (ResNet50 on 224x224 patches,
   the S10 patches' stage) with the trunk frozen (`new_layers`) and with all layers trained, and the whole-image
   classifier (ResNet50 trunk + resnet [512-512-1024]x2 top blocks on 1152x896 images) with the trunk frozen and
   with all layers trained. Peak memory is the process's peak RSS (resource.getrusage ru_maxrss) minus its RSS
   before the model was built, so it is the model's: weights, optimizer state, gradients and activations.
2. seconds per image of evaluation at 1152x896 (the export's 4-flip mean, trainer_module.export.flip_tta).

Estimated (a memory model, not a GPU measurement): the largest batch per stage and scope that fits 16, 24, 40 and
80 GB of accelerator memory. Per scope, the memory is fixed + batch x per_sample:
- fixed = 4 bytes x (all weights + 3 x trainable weights: gradient and Adam's two moments), float32 master weights
  as under mixed precision;
- per_sample = the CPU peak memory's slope per batch element (float32 activations kept for the backward pass),
  halved for mixed precision (float16 activations), as the production profile trains;
- 10% of the accelerator's memory is kept free for cuDNN workspaces and the allocator's fragmentation.

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/production_benchmark.py [--json OUT.json]
        [--stages patch whole-image] [--patch-batches 4 8 16] [--image-batches 1 2] [--steps 1]
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

GB = 1e9
ACCELERATOR_MEMORY_GB = (16, 24, 40, 80)
SAFETY_MARGIN = 0.10
# Bytes per trainable weight beyond the weight itself: its gradient and Adam's first and second moments.
TRAINING_STATE_PER_WEIGHT = 3
MIXED_PRECISION_ACTIVATION_FACTOR = 0.5
PATCH_STAGE = "patch"
IMAGE_STAGE = "whole-image"
EVALUATION = "evaluation"
STAGE_LABELS = {PATCH_STAGE: "patch (ResNet50, 224x224x3)",
                IMAGE_STAGE: "whole image (ResNet50 + [512-512-1024]x2, 1152x896)"}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One subprocess's figures: a training configuration (stage, scope, batch) or the evaluation."""

    stage: str
    scope: str
    batch_size: int
    seconds_per_step: float
    peak_memory_bytes: int
    total_weights: int
    trainable_weights: int


def _build(stage: str):
    """The production model of `stage` (random weights) and the name of its backbone."""
    from trainer_module.backbones import TRUNK_NAME
    from trainer_module.hparams import ImageHParams, PatchHParams
    from trainer_module.patch_model import build_patch_model
    from trainer_module.whole_image_model import build_whole_image_model

    # The defaults are the production architecture and geometry (pipeline/config.py's production profile changes
    # only steps, mixed precision and the gate); the pipeline package is not imported, which saves each
    # subprocess TFX's import time.
    patch, image = PatchHParams(), ImageHParams()
    patch_model = build_patch_model(patch)
    if stage == PATCH_STAGE:
        return patch_model, patch.backbone
    return build_whole_image_model(patch_model.get_layer(TRUNK_NAME), image), patch.backbone


def _count(weights) -> int:
    return int(sum(int(w.shape.num_elements()) for w in weights))


def measure(stage: str, scope: str, batch_size: int, steps: int) -> Measurement:
    """Runs in a fresh process: builds the model, then one warm-up step (tracing) and `steps` timed steps."""
    import numpy as np
    import tensorflow as tf

    from trainer_module.backbones import backbone_spec
    from trainer_module.export import flip_tta
    from trainer_module.hparams import TrainingStep, TrainScope
    from trainer_module.schedule import compile_for_step, set_trainable_scope

    tf.random.set_seed(0)
    baseline = _rss_bytes()
    model, backbone = _build(IMAGE_STAGE if stage == EVALUATION else stage)
    rows, cols = model.input_shape[1:3]
    images = tf.random.normal((batch_size, rows, cols, 1))
    if stage == EVALUATION:
        score = tf.function(lambda batch: flip_tta(model, batch))
        timed = lambda: score(images)  # noqa: E731
    else:
        set_trainable_scope(model, TrainScope(scope), backbone_spec(backbone))
        compile_for_step(model, TrainingStep(TrainScope(scope), 1e-4, 1), lambda: [])
        classes = model.output_shape[-1]
        labels = tf.one_hot(np.arange(batch_size) % classes, classes)
        timed = lambda: model.train_on_batch(images, labels)  # noqa: E731
    timed()  # tracing and first-touch allocations
    start = time.perf_counter()
    for _ in range(steps):
        timed()
    seconds = (time.perf_counter() - start) / steps
    return Measurement(stage, scope, batch_size, seconds, _peak_rss_bytes() - baseline,
                       _count(model.weights), _count(model.trainable_weights) if stage != EVALUATION else 0)


def measure_in_subprocess(stage: str, scope: str, batch_size: int, steps: int) -> Measurement:
    """`measure` in a fresh interpreter, so each peak RSS belongs to one model and one batch size."""
    command = [sys.executable, os.path.abspath(__file__), "--measure", stage, scope, str(batch_size),
               "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """The memory model of one stage and scope, and the largest batch per accelerator size."""

    stage: str
    scope: str
    fixed_bytes: float
    per_sample_float32_bytes: float
    max_batch: Dict[int, int]


def plan(measurements: Sequence[Measurement]) -> BatchPlan:
    """Fits the per-sample slope of peak memory over batch size (least squares) and applies the memory model."""
    import numpy as np

    first = measurements[0]
    batches = np.array([m.batch_size for m in measurements], dtype=float)
    peaks = np.array([m.peak_memory_bytes for m in measurements], dtype=float)
    per_sample = float(np.polyfit(batches, peaks, 1)[0]) if len(set(batches)) > 1 else float(peaks[0] / batches[0])
    per_sample = max(per_sample, 1.0)
    fixed = 4.0 * (first.total_weights + TRAINING_STATE_PER_WEIGHT * first.trainable_weights)
    per_sample_mixed = per_sample * MIXED_PRECISION_ACTIVATION_FACTOR
    max_batch = {gb: max(int((gb * GB * (1 - SAFETY_MARGIN) - fixed) // per_sample_mixed), 0)
                 for gb in ACCELERATOR_MEMORY_GB}
    return BatchPlan(first.stage, first.scope, fixed, per_sample, max_batch)


def run(batches_per_stage: Dict[str, Sequence[int]], steps: int
        ) -> Tuple[List[Measurement], Measurement, List[BatchPlan]]:
    training: List[Measurement] = []
    plans: List[BatchPlan] = []
    for stage, batches in batches_per_stage.items():
        for scope in ("new_layers", "all"):
            group = []
            for batch in batches:
                found = measure_in_subprocess(stage, scope, batch, steps)
                print(f"  measured {stage} {scope} batch {batch}: {found.seconds_per_step:.1f} s/step, "
                      f"{found.peak_memory_bytes / GB:.2f} GB", flush=True)
                group.append(found)
            training += group
            plans.append(plan(group))
    evaluation = measure_in_subprocess(EVALUATION, "4 flips", 1, steps)
    return training, evaluation, plans


def print_tables(training: Sequence[Measurement], evaluation: Measurement, plans: Sequence[BatchPlan]) -> None:
    print("\n### Measured on CPU (float32): seconds per training step and peak memory\n")
    print("| stage | scope | weights (trainable) | batch | s/step | s/sample | peak memory (GB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for m in training:
        print(f"| {STAGE_LABELS[m.stage]} | {m.scope} | {m.total_weights / 1e6:.1f} M ({m.trainable_weights / 1e6:.1f} M)"
              f" | {m.batch_size} | {m.seconds_per_step:.2f} | {m.seconds_per_step / m.batch_size:.2f} | "
              f"{m.peak_memory_bytes / GB:.2f} |")
    print(f"\nEvaluation, one 1152x896 image, 4-flip mean: {evaluation.seconds_per_step:.2f} s per image, peak memory "
          f"{evaluation.peak_memory_bytes / GB:.2f} GB.")
    print("\n### Estimated GPU plan: largest batch per accelerator memory (mixed precision, 10% kept free)\n")
    sizes = " | ".join(f"{gb} GB" for gb in ACCELERATOR_MEMORY_GB)
    print(f"| stage | scope | fixed (GB) | per sample, fp32 measured (GB) | {sizes} |")
    print("| --- | --- | ---: | ---: |" + " ---: |" * len(ACCELERATOR_MEMORY_GB))
    for p in plans:
        batches = " | ".join(str(p.max_batch[gb]) for gb in ACCELERATOR_MEMORY_GB)
        print(f"| {STAGE_LABELS[p.stage]} | {p.scope} | {p.fixed_bytes / GB:.2f} | "
              f"{p.per_sample_float32_bytes / GB:.3f} | {batches} |")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch-batches", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--image-batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stages", nargs="+", choices=(PATCH_STAGE, IMAGE_STAGE), default=[PATCH_STAGE, IMAGE_STAGE])
    parser.add_argument("--steps", type=int, default=1, help="timed steps per measurement, after one warm-up step")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--measure", nargs=3, metavar=("STAGE", "SCOPE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        stage, scope, batch = args.measure
        print(json.dumps(dataclasses.asdict(measure(stage, scope, int(batch), args.steps))))
        return 0

    import tensorflow as tf
    print(f"{os.cpu_count()} CPU cores; TensorFlow {tf.__version__}; one subprocess per measurement", flush=True)
    start = time.perf_counter()
    batches = {PATCH_STAGE: args.patch_batches, IMAGE_STAGE: args.image_batches}
    training, evaluation, plans = run({stage: batches[stage] for stage in args.stages}, args.steps)
    print_tables(training, evaluation, plans)
    print(f"\nbenchmark wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu_cores": os.cpu_count(), "training": [dataclasses.asdict(m) for m in training],
                       "evaluation": dataclasses.asdict(evaluation), "plans": [dataclasses.asdict(p) for p in plans],
                       "accelerator_memory_gb": list(ACCELERATOR_MEMORY_GB), "safety_margin": SAFETY_MARGIN,
                       "mixed_precision_activation_factor": MIXED_PRECISION_ACTIVATION_FACTOR}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
