"""Wall time of the demo pipeline on this machine: a cold run, a cached re-run, and cold runs with 1 and 2 Beam
workers, in one script so the figures come from the same machine state.

Usage: .venv/bin/python benchmarks/pipeline_benchmark.py [--profile demo] [--out /tmp/pipeline-bench]
Each run is a separate `mammo-tfx run` process on the same generated data (the demo's synthetic datasets).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Tuple  # noqa: E402

BEAM_STEPS = ("MammoExampleGen", "StatisticsGen", "Transform", "PatchSampler", "Evaluator")


def generate_data(root: str, seed: int) -> List[str]:
    from mammo_tfx import synth
    from mammo_tfx.cli import DEMO_LAYOUT_PATIENTS

    sources = []
    for layout, patients in DEMO_LAYOUT_PATIENTS.items():
        target = os.path.join(root, layout)
        if not os.path.isdir(target):
            synth.generate(layout, target, patients=patients, seed=seed)
        sources.append(f"{layout}={target}")
    return sources


def timed_run(profile: str, sources: List[str], out_dir: str, workers: int) -> Tuple[float, Dict[str, Tuple[str, float]]]:
    command = [sys.executable, "-m", "mammo_tfx.cli", "run", "--profile", profile, "--out", out_dir,
               "--set", f"beam.direct_num_workers={workers}"]
    for source in sources:
        command += ["--data", source]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    # The run's final table: component, status, seconds, summary.
    steps = {}
    for line in completed.stdout.splitlines():
        match = re.match(r"^(\S+)\s+(ran|cached)\s+(\d+)\b", line)
        if match:
            steps[match.group(1)] = (match.group(2), float(match.group(3)))
    return seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--out", default="/tmp/mammo-pipeline-benchmark")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    sources = generate_data(os.path.join(args.out, "data"), args.seed)

    results = {}
    results["cold, 2 workers"] = timed_run(args.profile, sources, os.path.join(args.out, "run-2"), 2)
    results["cached re-run"] = timed_run(args.profile, sources, os.path.join(args.out, "run-2"), 2)
    results["cold, 1 worker"] = timed_run(args.profile, sources, os.path.join(args.out, "run-1"), 1)

    cold = results["cold, 2 workers"][0]
    print(f"profile {args.profile}, {os.cpu_count()} cores\n")
    print("| run | wall time (s) | vs cold | Beam steps (s) | Trainers (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (seconds, steps) in results.items():
        beam = sum(s for node, (status, s) in steps.items() if node in BEAM_STEPS and status == "ran")
        trainers = sum(s for node, (status, s) in steps.items() if node.startswith("Trainer") and status == "ran")
        print(f"| {name} | {seconds:.0f} | {seconds / cold:.2f}x | {beam:.0f} | {trainers:.0f} |")
    one, two = results["cold, 1 worker"][1], results["cold, 2 workers"][1]
    print("\n| Beam step | 1 worker (s) | 2 workers (s) |")
    print("| --- | ---: | ---: |")
    for node in BEAM_STEPS:
        if node in one and node in two:
            print(f"| {node} | {one[node][1]:.0f} | {two[node][1]:.0f} |")


if __name__ == "__main__":
    main()
