"""PatchSampler executor: ExampleGen scans -> lesion/background patch examples (Beam).

Per split: read the GZIP TFRecords of scan examples, decode image and mask, sample patches with
`mammo_tfx.patches`, write patch examples as `Split-<name>/data_tfrecord-*.gz` (the standard
Examples layout, so the Trainer's data accessor reads them) and count patches per class. Which file a patch goes
to and where in it follows a hash of the sampling seed, its scan's image key and its index in the scan, never
Beam's bundles: the same scans give the same files in the same order (the Trainer's seeded shuffle then gives the
same batches), with the patches of one scan spread over the files. Counts
go to Beam metrics (namespace `patch_sampler`), to `patch_counts.json` at the artifact root, to
the log and to the artifact's custom properties (`<split>_<class name>` = patches of that class,
`<split>_scans`, `<split>_failed_scans`, `<split>_incomplete_mask_scans`: scans sampled without background patches
because their mask misses a lesion, e.g. every scan of a dataset without outlines such as RSNA). A scan that cannot
be decoded or sampled is logged and counted as failed and the run goes on; only a split in which every scan fails
stops the run.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from typing import Any, Iterator, Mapping

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf.message import DecodeError
from PIL import Image
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from mammo_tfx import names
from mammo_tfx.ingest.reasons import causes_block
from mammo_tfx.lesion_classes import BACKGROUND
from mammo_tfx.patches import CLASS_NAMES, Patch, PatchSamplingOptions, is_malignant
from mammo_tfx.patches import sample_scan_patches

EXAMPLES_KEY = "examples"
PATCHES_KEY = "patches"
SAMPLING_OPTIONS_KEY = "sampling_options"
SPLITS_KEY = "splits"
# Splits that must give lesion patches (JSON list): the patch classifier's training split; a split of no patch at all
# stops the run in any case, as nothing could train or validate on it.
LESION_SPLITS_KEY = "lesion_splits"

METRICS_NAMESPACE = "patch_sampler"
_TFRECORD_PREFIX = "data_tfrecord"
_TALLY_TAG = "tally"
_FAILURE_TAG = "failure"
# Reasons start with "scan <image key>: "; the key moves to the row's file column so equal causes group together.
_SCAN_PREFIX = re.compile(r"^scan (\S+): ")
# Tally keys besides the class names.
SCANS = "scans"
FAILED_SCANS = "failed_scans"
INCOMPLETE_MASK_SCANS = "incomplete_mask_scans"

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
# Patches per output file: a file's patches are sorted in memory by one worker (~100 KB each at 224 pixels).
PATCHES_PER_FILE = 1000


class ScanDecodeError(ValueError):
    """A scan example that cannot be turned into image + mask arrays."""


def _bytes_feature(example: tf.train.Example, key: str, image_key: str) -> bytes:
    feature = example.features.feature.get(key)
    if feature is None or not feature.bytes_list.value:
        raise ScanDecodeError(f"scan {image_key}: missing bytes feature '{key}'")
    return feature.bytes_list.value[0]


def _int_feature(example: tf.train.Example, key: str, image_key: str) -> int:
    feature = example.features.feature.get(key)
    if feature is None or not feature.int64_list.value:
        raise ScanDecodeError(f"scan {image_key}: missing int64 feature '{key}'")
    return int(feature.int64_list.value[0])


def _decode_png(data: bytes, allowed_modes: tuple[str, ...], dtype: type, what: str,
                image_key: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as png:
            mode = png.mode
            pixels = np.asarray(png)
    except Exception as error:  # PIL raises many types for corrupt data
        raise ScanDecodeError(f"scan {image_key}: {what} is not a readable PNG ({error})") from error
    if mode not in allowed_modes:
        raise ScanDecodeError(f"scan {image_key}: {what} has PNG mode {mode}, expected {allowed_modes}")
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > np.iinfo(dtype).max:
        raise ScanDecodeError(f"scan {image_key}: {what} values exceed {np.dtype(dtype).name}")
    return pixels.astype(dtype, copy=False)


def decode_scan(serialized: bytes) -> dict[str, Any]:
    """Scan example -> {'image', 'mask', 'image_key', 'dataset', 'mask_complete'}."""
    example = tf.train.Example.FromString(serialized)
    image_key = _bytes_feature(example, names.IMAGE_KEY, "<unknown>").decode("utf-8")
    image = _decode_png(_bytes_feature(example, names.IMAGE_PNG, image_key), _SIXTEEN_BIT_MODES,
                        np.uint16, names.IMAGE_PNG, image_key)
    mask = _decode_png(_bytes_feature(example, names.MASK_PNG, image_key), ("L",), np.uint8,
                       names.MASK_PNG, image_key)
    if image.shape != mask.shape:
        raise ScanDecodeError(
            f"scan {image_key}: {names.IMAGE_PNG} {image.shape} and {names.MASK_PNG} {mask.shape} differ in size")
    return {
        "image": image,
        "mask": mask,
        "image_key": image_key,
        "dataset": _bytes_feature(example, names.DATASET, image_key),
        "mask_complete": _int_feature(example, names.MASK_COMPLETE, image_key) != 0,
    }


def encode_png16(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def patch_example(patch: Patch, image_key: str, dataset: bytes) -> tf.train.Example:
    """The patch example the patch classifier trains on."""
    def int_feature(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def bytes_feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_PNG: bytes_feature(encode_png16(patch.pixels)),
        names.PATCH_CLASS: int_feature(patch.patch_class),
        names.LABEL: int_feature(int(is_malignant(patch.patch_class))),
        names.SOURCE_IMAGE_KEY: bytes_feature(image_key.encode("utf-8")),
        names.DATASET: bytes_feature(dataset),
        names.OVERLAP: tf.train.Feature(float_list=tf.train.FloatList(value=[patch.overlap])),
    }))


class SampleScanPatches(beam.DoFn):
    """Serialized scan -> serialized patch examples; tallies (name, count) go to the side output."""

    def __init__(self, options: PatchSamplingOptions, split: str) -> None:
        self._options = options
        self._split = split
        self._class_counters = {
            code: beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{split}_{name}")
            for code, name in CLASS_NAMES.items()}
        self._scans = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{split}_{SCANS}")
        self._failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{split}_{FAILED_SCANS}")
        self._incomplete = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"{split}_{INCOMPLETE_MASK_SCANS}")

    def process(self, serialized: bytes) -> Iterator[Any]:
        try:
            scan = decode_scan(serialized)
            patches = sample_scan_patches(scan["image"], scan["mask"], scan["image_key"],
                                          self._options, mask_complete=scan["mask_complete"])
        except (ValueError, DecodeError) as error:  # one bad scan must not sink the whole run
            logging.warning("PatchSampler split %s: skipped a scan: %s", self._split, error)
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(_TALLY_TAG, (FAILED_SCANS, 1))
            yield beam.pvalue.TaggedOutput(_FAILURE_TAG, failure_row(str(error)))
            return
        self._scans.inc()
        yield beam.pvalue.TaggedOutput(_TALLY_TAG, (SCANS, 1))
        if not scan["mask_complete"]:
            self._incomplete.inc()
            yield beam.pvalue.TaggedOutput(_TALLY_TAG, (INCOMPLETE_MASK_SCANS, 1))
        for index, patch in enumerate(patches):
            self._class_counters[patch.patch_class].inc()
            yield beam.pvalue.TaggedOutput(_TALLY_TAG, (CLASS_NAMES[patch.patch_class], 1))
            yield (order_key(self._options.seed, scan["image_key"], index),
                   patch_example(patch, scan["image_key"], scan["dataset"]).SerializeToString())


def order_key(seed: int, image_key: str, index: int) -> int:
    """Where a scan's `index`-th patch goes among the written patches: fixed by the seed and the patch's identity."""
    digest = hashlib.sha256(f"{seed}:{image_key}:{index}".encode("utf-8")).digest()
    return int.from_bytes(digest[:7], "little")  # 56 bits: Beam's integer coder takes signed 64-bit values


def file_count(patch_count: int) -> int:
    return max(1, math.ceil(patch_count / PATCHES_PER_FILE))


def write_patch_file(split_uri: str, index: int, files: int, keyed_patches: Any) -> str:
    """One output file: its patches in the order of their keys."""
    tf.io.gfile.makedirs(split_uri)
    path = os.path.join(split_uri, f"{_TFRECORD_PREFIX}-{index:05d}-of-{files:05d}.gz")
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for _, serialized in sorted(keyed_patches, key=lambda keyed: keyed[0]):
            writer.write(serialized)
    return path


@beam.ptransform_fn
def WritePatchFiles(keyed_patches: beam.PCollection, split_uri: str) -> beam.PCollection:  # noqa: N802 (Beam's naming)
    """(order key, serialized patch) -> `split_uri/data_tfrecord-NNNNN-of-MMMMM.gz`, each patch in the file and at the
    place its key says; a file per PATCHES_PER_FILE patches (one, possibly empty, for none)."""
    files = (keyed_patches
             | "Count" >> beam.combiners.Count.Globally()
             | "Files" >> beam.Map(file_count))
    assigned = keyed_patches | "AssignFile" >> beam.Map(
        lambda keyed, count: (keyed[0] % count, keyed), count=beam.pvalue.AsSingleton(files))
    # A marker for every file index, so that a split without patches still gets its (empty) file.
    markers = files | "EveryFile" >> beam.FlatMap(lambda count: [(index, None) for index in range(count)])
    return ((assigned, markers)
            | "AllFiles" >> beam.Flatten()
            | "GroupFile" >> beam.GroupByKey()
            | "Write" >> beam.Map(
                lambda grouped, count: write_patch_file(
                    split_uri, grouped[0], count, [item for item in grouped[1] if item is not None]),
                count=beam.pvalue.AsSingleton(files)))


def failure_row(reason: str) -> dict[str, str]:
    """A skipped scan as a row for `group_reasons` (status, reason, file = the scan's image key)."""
    match = _SCAN_PREFIX.match(reason)
    return {"status": "failed", "reason": reason[match.end():] if match else reason,
            "file": match.group(1) if match else ""}


def _write_json(content: Any, path: str) -> None:
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(content, indent=2, sort_keys=True))


def _failures_path(tally_dir: str, split: str) -> str:
    return os.path.join(tally_dir, f"{split}_failures.json")


def complete_tally(tally: Mapping[str, int]) -> dict[str, int]:
    """Every class and scan counter present (zeros for classes without patches)."""
    counters = [*CLASS_NAMES.values(), SCANS, FAILED_SCANS, INCOMPLETE_MASK_SCANS]
    return {name: int(tally.get(name, 0)) for name in counters}


def lesion_patches(split_counts: Mapping[str, int]) -> int:
    return sum(split_counts[name] for code, name in CLASS_NAMES.items() if code != BACKGROUND)


def check_patch_counts(counts: Mapping[str, Mapping[str, int]], lesion_splits: list, examples_uri: str) -> None:
    """Stops the run, before the patch Trainer, when a split gave no patches or a split in `lesion_splits` no lesion
    patches; a split without lesion patches that need not have them is logged (it still validates on background)."""
    causes = []
    for split, split_counts in counts.items():
        scans = f"{split_counts[SCANS]} scans of split '{split}'"
        if not sum(split_counts[name] for name in CLASS_NAMES.values()):
            causes.append(f"the {scans} gave no patches: none has a complete lesion mask or a located lesion")
        elif not lesion_patches(split_counts):
            if split in lesion_splits:
                causes.append(f"the {scans} gave no lesion patches: none holds a located lesion that is still "
                              "visible at the working size (ingest.height, ingest.width)")
            else:
                logging.warning("PatchSampler split %s: no lesion patches; the patch stage validates on background "
                                "patches only (its validation AUC is not meaningful)", split)
    if causes:
        raise RuntimeError(
            f"PatchSampler: the patch stage cannot train on the scans in {examples_uri}: " + "; ".join(causes)
            + ". Add patients of a dataset with lesion outlines (CBIS-DDSM, INbreast, MIAS, VinDr-Mammo); the minimum "
            "data of each profile: docs/troubleshooting.md.")


class Executor(base_beam_executor.BaseBeamExecutor):
    """Samples patches from every requested split of the input Examples."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        patches = artifact_utils.get_single_instance(output_dict[PATCHES_KEY])
        options = PatchSamplingOptions.from_json(exec_properties.get(SAMPLING_OPTIONS_KEY) or "{}")
        splits = json.loads(exec_properties.get(SPLITS_KEY) or '["train", "eval"]')
        available = artifact_utils.decode_split_names(examples.split_names)
        missing = [split for split in splits if split not in available]
        if missing:
            raise ValueError(
                f"PatchSampler: splits {missing} are not in the input Examples at {examples.uri} "
                f"(it has {available})")

        patches.split_names = artifact_utils.encode_split_names(list(splits))
        tally_dir = os.path.join(self._get_tmp_dir(), "patch_tallies")
        tf.io.gfile.makedirs(tally_dir)
        pipeline = self._make_beam_pipeline()
        for split in splits:
            scans = (pipeline
                     | f"Read[{split}]" >> beam.io.ReadFromTFRecord(
                         os.path.join(artifact_utils.get_split_uri([examples], split), "*"),
                         compression_type=beam.io.filesystem.CompressionTypes.GZIP))
            sampled = scans | f"Sample[{split}]" >> beam.ParDo(
                SampleScanPatches(options, split)).with_outputs(_TALLY_TAG, _FAILURE_TAG, main="patches")
            _ = sampled.patches | f"Write[{split}]" >> WritePatchFiles(artifact_utils.get_split_uri([patches], split))
            tally_path = os.path.join(tally_dir, f"{split}.json")
            _ = (sampled[_TALLY_TAG]
                 | f"SumTally[{split}]" >> beam.CombinePerKey(sum)
                 | f"TallyDict[{split}]" >> beam.combiners.ToDict()
                 | f"WriteTally[{split}]" >> beam.Map(_write_json, tally_path))
            _ = (sampled[_FAILURE_TAG]
                 | f"CollectFailures[{split}]" >> beam.combiners.ToList()
                 | f"WriteFailures[{split}]" >> beam.Map(_write_json, _failures_path(tally_dir, split)))
        pipeline.run().wait_until_finish()

        counts = {}
        for split in splits:
            with tf.io.gfile.GFile(os.path.join(tally_dir, f"{split}.json")) as handle:
                counts[split] = complete_tally(json.load(handle))
        self._publish(patches, counts)
        for split, split_counts in counts.items():
            if split_counts[FAILED_SCANS] and not split_counts[SCANS]:
                # Single bad scans are skipped, but a split where none decodes is a broken input
                # (e.g. a changed example format), not something to train on silently. The causes go into
                # the message: the per-scan warnings are hidden from the console unless --verbose.
                with tf.io.gfile.GFile(_failures_path(tally_dir, split)) as handle:
                    causes = causes_block(json.load(handle))
                raise RuntimeError(
                    f"PatchSampler: all {split_counts[FAILED_SCANS]} scans of split '{split}' in "
                    f"{examples.uri} failed to decode or sample (scans x reason):{causes}")
        check_patch_counts(counts, json.loads(exec_properties.get(LESION_SPLITS_KEY) or "[]"), examples.uri)

    @staticmethod
    def _publish(patches: types.Artifact, counts: Mapping[str, Mapping[str, int]]) -> None:
        _write_json(counts, os.path.join(patches.uri, names.PATCH_COUNTS_FILE))
        for split, split_counts in counts.items():
            for name, count in split_counts.items():
                patches.set_int_custom_property(f"{split}_{name}", count)
            logging.info("PatchSampler split %s: %s", split, json.dumps(split_counts, sort_keys=True))
            if split_counts[FAILED_SCANS]:
                logging.warning("PatchSampler split %s: %d scan(s) failed and were skipped",
                                split, split_counts[FAILED_SCANS])
            if split_counts[INCOMPLETE_MASK_SCANS]:
                logging.info("PatchSampler split %s: %d scan(s) with an incomplete mask gave no background patches "
                             "(and lesion patches only for located lesions)",
                             split, split_counts[INCOMPLETE_MASK_SCANS])

