"""Does the demo learn? Test-split AUC of the whole-image model that `mammo-tfx demo` trains, over seeds.

For each seed it runs the whole demo (`mammo-tfx demo --seed S`, so the synthetic phantoms differ per seed, with
the Trainers' and the patch sampler's seeds set to S too) in a fresh temporary folder, timed end to end like
`make demo`. It then loads the whole-image SavedModel the run pushed (or, when the gate did not bless it, the
one the image Trainer exported; both found through the run's ML Metadata, not by guessing paths), feeds the TEST
split of the run's ExampleGen output through its `serving_examples` signature and computes ROC AUC (sklearn) of
`probability` (4-flip average) and `probability_single` (no flip) against the image label: over the synthetic
datasets together, per dataset, and for the real DICOMs of the `folder` dataset apart (their labels are per case,
not per breast, so they are not part of the synthetic figure). A dataset whose test split holds one class only
has no AUC ("n/a").

Usage:
    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/demo_auc_benchmark.py [--seeds 0 1 2] [--keep DIR]
        [--set KEY=VALUE ...]   (passed to `mammo-tfx demo`, e.g. --set image_training.dropout=0.2)
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import glob  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC = "synthetic"
REAL_FOLDER = "folder"
EXAMPLES_PER_CALL = 16


@dataclasses.dataclass(frozen=True)
class Scores:
    """Test-split predictions of one run: label, dataset, 4-flip and single-view probabilities per image."""

    labels: np.ndarray
    datasets: np.ndarray
    flip: np.ndarray
    single: np.ndarray
    pushed: bool = False  # the model came from the Pusher (blessed by the gate), not only from the Trainer

    def subset(self, name: str) -> "Scores":
        if name == SYNTHETIC:
            keep = self.datasets != REAL_FOLDER
        else:
            keep = self.datasets == name
        return Scores(self.labels[keep], self.datasets[keep], self.flip[keep], self.single[keep], self.pushed)


@dataclasses.dataclass(frozen=True)
class SeedResult:
    seed: int
    wall_s: float
    scores: Scores


def run_demo(seed: int, out_dir: str, overrides: Sequence[str]) -> float:
    """Runs `mammo-tfx demo` in a subprocess (as `make demo` does) and returns its wall time in seconds."""
    command = [os.path.join(os.path.dirname(sys.executable), "mammo-tfx"), "demo", "--out", out_dir,
               "--seed", str(seed),
               # One seed drives everything that is random in the run: phantoms, patch positions, training.
               "--set", f"patches.seed={seed}", "--set", f"patch_training.seed={seed}",
               "--set", f"image_training.seed={seed}"]
    for override in overrides:
        command += ["--set", override]
    log_path = os.path.join(out_dir + ".log")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        # The run folder is temporary: put the end of the log into the error so the cause is not lost with it.
        with open(log_path) as log:
            tail = "".join(log.readlines()[-40:])
        raise RuntimeError(f"demo for seed {seed} failed (exit {completed.returncode}); end of its log:\n{tail}")
    return wall


def _output_uri(metadata_path: str, node_id: str, key: str) -> str:
    from pipeline.outputs import latest_output_uri, open_store

    uri = latest_output_uri(open_store(metadata_path), node_id, key)
    if uri is None:
        raise RuntimeError(f"{metadata_path}: no {key!r} output of {node_id}")
    return uri


def model_under_test(metadata_path: str) -> tuple[str, bool]:
    """The pushed model when the gate blessed and the Pusher pushed it, else the image Trainer's export (the same
    SavedModel: the Pusher copies it), so that a model the gate rejected is measured too."""
    from pipeline.outputs import collect_outputs
    from pipeline.pipeline import IMAGE_TRAINER_ID

    pushed = collect_outputs(metadata_path).pushed_uri
    if pushed:
        return pushed, True
    return os.path.join(_output_uri(metadata_path, IMAGE_TRAINER_ID, "model"), "Format-Serving"), False


def test_scores(run_dir: str) -> Scores:
    """Feeds the run's test-split examples through the exported whole-image model's `serving_examples`."""
    import tensorflow as tf

    from mammo_tfx import names

    metadata_path = os.path.join(run_dir, "metadata.sqlite")
    model_dir, pushed = model_under_test(metadata_path)
    examples_uri = _output_uri(metadata_path, "MammoExampleGen", "examples")
    files = sorted(glob.glob(os.path.join(examples_uri, "Split-test", "*.gz")))
    if not files:
        raise RuntimeError(f"no test-split TFRecords under {examples_uri}")
    serve = tf.saved_model.load(model_dir).signatures[names.EXAMPLES_SIGNATURE]
    labels: List[int] = []
    datasets: List[str] = []
    flip: List[float] = []
    single: List[float] = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(EXAMPLES_PER_CALL):
        for serialized in batch.numpy():
            features = tf.train.Example.FromString(serialized).features.feature
            labels.append(int(features[names.LABEL].int64_list.value[0]))
            datasets.append(features[names.DATASET].bytes_list.value[0].decode())
        outputs = serve(**{names.EXAMPLES_INPUT: batch})
        flip.extend(outputs[names.PROBABILITY].numpy().tolist())
        single.extend(outputs[names.PROBABILITY_SINGLE].numpy().tolist())
    return Scores(np.array(labels), np.array(datasets), np.array(flip), np.array(single), pushed)


def auc(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
    from sklearn.metrics import roc_auc_score

    if len(set(labels.tolist())) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown_table(results: Sequence[SeedResult]) -> str:
    names = [SYNTHETIC] + sorted({d for r in results for d in r.scores.datasets.tolist()} - {REAL_FOLDER})
    if any(REAL_FOLDER in r.scores.datasets.tolist() for r in results):
        names.append(REAL_FOLDER)
    lines = ["| seed | wall time (s) | model | subset | test images (malignant) | AUC 4-flip | AUC single |",
             "| ---: | ---: | --- | --- | ---: | ---: | ---: |"]
    for result in results:
        for name in names:
            part = result.scores.subset(name)
            label = "all synthetic" if name == SYNTHETIC else name
            model = "pushed" if result.scores.pushed else "exported (not pushed)"
            lines.append(f"| {result.seed} | {result.wall_s:.0f} | {model} | {label} | {len(part.labels)} "
                         f"({int(part.labels.sum())}) | {_fmt(auc(part.labels, part.flip))} | "
                         f"{_fmt(auc(part.labels, part.single))} |")
    synthetic_flip = [auc(r.scores.subset(SYNTHETIC).labels, r.scores.subset(SYNTHETIC).flip) for r in results]
    synthetic_single = [auc(r.scores.subset(SYNTHETIC).labels, r.scores.subset(SYNTHETIC).single) for r in results]
    valid_flip = [v for v in synthetic_flip if v is not None]
    valid_single = [v for v in synthetic_single if v is not None]
    if valid_flip:
        lines.append(f"| mean | {np.mean([r.wall_s for r in results]):.0f} | | all synthetic | | "
                     f"{np.mean(valid_flip):.3f} (min {min(valid_flip):.3f}) | "
                     f"{np.mean(valid_single):.3f} (min {min(valid_single):.3f}) |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep", help="keep each seed's run in DIR/seed-S instead of a deleted temporary folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration override passed to `mammo-tfx demo` (repeatable)")
    args = parser.parse_args(argv)

    results: List[SeedResult] = []
    for seed in args.seeds:
        parent = args.keep or tempfile.mkdtemp(prefix="demo-auc-")
        os.makedirs(parent, exist_ok=True)
        run_dir = os.path.join(parent, f"seed-{seed}")
        try:
            wall = run_demo(seed, run_dir, args.set)
            scores = test_scores(run_dir)
        finally:
            if not args.keep:
                shutil.rmtree(parent, ignore_errors=True)
        result = SeedResult(seed, wall, scores)
        results.append(result)
        synthetic = scores.subset(SYNTHETIC)
        print(f"seed {seed}: {wall:.0f} s, synthetic test AUC 4-flip {_fmt(auc(synthetic.labels, synthetic.flip))}, "
              f"single {_fmt(auc(synthetic.labels, synthetic.single))}", flush=True)
    print()
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
