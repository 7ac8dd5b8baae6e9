"""End-to-end test of the PatchSampler executor with Beam's DirectRunner on a tiny Examples artifact."""
from __future__ import annotations

import json
import logging
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components.patch_sampler import PatchSampler
from components.patch_sampler import executor as patch_executor
from mammo_tfx import names
from mammo_tfx.patches import PatchSamplingOptions
from mammo_tfx.patches.box_sums import pad_for_patches
from mammo_tfx.lesion_classes import (BACKGROUND, CALC_BENIGN, CALC_MALIGNANT, CLASS_NAMES,
                                       MASS_BENIGN, MASS_MALIGNANT)
from mammo_tfx.patches.regions import breast_mask
from pipeline.config import BeamConfig
from pipeline.progress import SUMMARISERS

HEIGHT, WIDTH = 96, 80
PATCH = 16
OPTIONS = PatchSamplingOptions(patch_size=PATCH, n_lesion_patches=3, n_background_patches=4,
                               n_hard_negatives=1, max_tries=100)


def _scan(seed: int, lesions: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Textured half-ellipse breast on black, and a class-coded mask of square lesions
    (top, left, side, class); lesions are drawn brighter, as masses and calcifications are."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    breast = ((rows - HEIGHT / 2) / (HEIGHT * 0.45)) ** 2 + (cols / (WIDTH * 0.8)) ** 2 < 1
    texture = np.random.default_rng(seed).normal(0, 2000, (HEIGHT, WIDTH))
    image = np.where(breast, 20000 + texture, 0)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for top, left, side, code in lesions:
        mask[top:top + side, left:left + side] = code
        image[top:top + side, left:left + side] += 15000
    return image.clip(0, 65535).astype(np.uint16), mask


def _scan_example(image_key: str, image_png: bytes, mask: np.ndarray, mask_complete: int,
                  dataset: str = "cbis-ddsm") -> bytes:
    def bytes_feature(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int_feature(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image_png": bytes_feature(image_png),
        "mask_png": bytes_feature(tf.io.encode_png(mask[..., None]).numpy()),
        "image_key": bytes_feature(image_key.encode()),
        "dataset": bytes_feature(dataset.encode()),
        "label": int_feature(int(bool(np.isin(mask, [CALC_MALIGNANT, MASS_MALIGNANT]).any()))),
        "mask_complete": int_feature(mask_complete),
    })).SerializeToString()


def _png16(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image[..., None]).numpy()


def _write_split(examples_uri: str, split: str, records: list[bytes]) -> None:
    split_dir = os.path.join(examples_uri, f"Split-{split}")
    os.makedirs(split_dir)
    path = os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)


def _read_split(uri: str, split: str) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(os.path.join(uri, f"Split-{split}", "data_tfrecord-*.gz"))
    assert files, f"no patch files for split {split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(record.numpy()) for record in dataset]


def _feature(example: tf.train.Example, key: str):
    feature = example.features.feature[key]
    return (feature.bytes_list.value or feature.int64_list.value or feature.float_list.value)[0]


def _locate(patch: np.ndarray, image: np.ndarray) -> tuple[int, int]:
    """Centre of the (textured, hence unique) patch inside the zero-padded scan."""
    windows = np.lib.stride_tricks.sliding_window_view(pad_for_patches(image, PATCH), patch.shape)
    matches = np.argwhere(np.all(windows == patch, axis=(2, 3)))
    matches = matches[(matches[:, 0] < HEIGHT) & (matches[:, 1] < WIDTH)]
    assert len(matches) == 1
    return int(matches[0, 0]), int(matches[0, 1])


def _padded_window(array: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    return pad_for_patches(array, PATCH)[centre[0]:centre[0] + PATCH, centre[1]:centre[1] + PATCH]


def _run_executor(tmp_path, examples: types.Artifact, splits: list[str]) -> types.Artifact:
    patches = standard_artifacts.Examples()
    patches.uri = str(tmp_path / "patches")
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=BeamConfig(direct_running_mode="in_memory", direct_num_workers=1).pipeline_args(),
        tmp_dir=str(tmp_path / "tmp"), unique_id="1")
    patch_executor.Executor(context).Do(
        {patch_executor.EXAMPLES_KEY: [examples]}, {patch_executor.PATCHES_KEY: [patches]},
        {patch_executor.SAMPLING_OPTIONS_KEY: OPTIONS.to_json(),
         patch_executor.SPLITS_KEY: json.dumps(splits)})
    return patches


@pytest.fixture(name="scans")
def fixture_scans() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "scan-a": _scan(1, [(38, 18, 10, MASS_MALIGNANT), (70, 30, 4, CALC_BENIGN)]),
        "scan-b": _scan(2, [(30, 25, 8, MASS_BENIGN)]),
        "scan-d": _scan(3, [(50, 15, 5, CALC_MALIGNANT)]),
    }


@pytest.mark.e2e
def test_executor_writes_patch_examples_and_counts(tmp_path, scans, caplog) -> None:
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    train = [
        _scan_example("scan-a", _png16(scans["scan-a"][0]), scans["scan-a"][1], 1),
        # A lesion without location elsewhere in scan-b: lesion patches only.
        _scan_example("scan-b", _png16(scans["scan-b"][0]), scans["scan-b"][1], 0, "inbreast"),
        _scan_example("scan-c", b"not a png", np.zeros((HEIGHT, WIDTH), np.uint8), 1),
    ]
    _write_split(examples.uri, "train", train)
    _write_split(examples.uri, "eval",
                 [_scan_example("scan-d", _png16(scans["scan-d"][0]), scans["scan-d"][1], 1)])
    # The executor logs through absl, whose level a CLI run earlier in the same process may have raised to ERROR.
    caplog.set_level(logging.WARNING, logger="absl")
    patches = _run_executor(tmp_path, examples, ["train", "eval"])

    expected = {
        "train": {"background": 4, "calc_malignant": 0, "calc_benign": 3, "mass_malignant": 3,
                  "mass_benign": 3, "scans": 2, "failed_scans": 1, "incomplete_mask_scans": 1},
        "eval": {"background": 4, "calc_malignant": 3, "calc_benign": 0, "mass_malignant": 0,
                 "mass_benign": 0, "scans": 1, "failed_scans": 0, "incomplete_mask_scans": 0},
    }
    assert "scan scan-c: image_png is not a readable PNG" in caplog.text
    with open(os.path.join(patches.uri, names.PATCH_COUNTS_FILE)) as handle:
        assert json.load(handle) == expected
    assert artifact_utils.decode_split_names(patches.split_names) == ["train", "eval"]
    assert patches.get_int_custom_property("train_mass_benign") == 3
    assert patches.get_int_custom_property("train_failed_scans") == 1
    assert patches.get_int_custom_property("train_incomplete_mask_scans") == 1  # scan-b: mask_complete 0
    assert patches.get_int_custom_property("eval_background") == 4

    for split in ("train", "eval"):
        written = _read_split(patches.uri, split)
        per_class = {name: 0 for name in CLASS_NAMES.values()}
        for example in written:
            patch_class = _feature(example, "patch_class")
            per_class[CLASS_NAMES[patch_class]] += 1
            assert _feature(example, "label") == int(patch_class in (CALC_MALIGNANT, MASS_MALIGNANT))
            image, mask = scans[_feature(example, "source_image_key").decode()]
            pixels = tf.io.decode_png(_feature(example, "image_png"), dtype=tf.uint16).numpy()
            assert pixels.shape == (PATCH, PATCH, 1)
            centre = _locate(pixels[..., 0], image)
            overlap = _feature(example, "overlap")
            # Every lesion of these scans has its own class, so a class code picks one lesion.
            ratios = {}
            for code in set(np.unique(mask)) - {BACKGROUND}:
                inside = np.count_nonzero(_padded_window(mask == code, centre))
                ratios[code] = max(inside / np.count_nonzero(mask == code), inside / PATCH ** 2)
            if patch_class == BACKGROUND:
                assert _feature(example, "source_image_key") != b"scan-b"  # incomplete mask
                assert breast_mask(image, OPTIONS.breast_threshold)[centre]
                union = np.count_nonzero(_padded_window(mask, centre)) / PATCH ** 2
                assert max([union, *ratios.values()]) <= OPTIONS.neg_cutoff
                assert overlap == pytest.approx(max([union, *ratios.values()]), abs=1e-6)
            else:
                assert overlap == pytest.approx(ratios[patch_class], abs=1e-6)
                assert overlap > OPTIONS.min_pos_cutoff
        assert per_class == {name: expected[split][name] for name in CLASS_NAMES.values()}


@pytest.mark.e2e
def test_patch_files_and_their_order_follow_the_order_keys_not_the_arrival_order(tmp_path, monkeypatch) -> None:
    import apache_beam as beam

    monkeypatch.setattr(patch_executor, "PATCHES_PER_FILE", 3)
    keyed = [(patch_executor.order_key(7, f"scan-{scan}", index), f"{scan}/{index}".encode())
             for scan in range(3) for index in range(3)]

    def written(name: str, arrival: list) -> list[list[bytes]]:
        with beam.Pipeline() as pipeline:
            _ = pipeline | beam.Create(arrival) | patch_executor.WritePatchFiles(str(tmp_path / name))
        files = sorted(tf.io.gfile.glob(str(tmp_path / name / "data_tfrecord-*.gz")))
        assert [os.path.basename(path) for path in files] == [f"data_tfrecord-0000{i}-of-00003.gz" for i in range(3)]
        return [[record.numpy() for record in tf.data.TFRecordDataset(path, compression_type="GZIP")]
                for path in files]

    in_order = written("in_order", keyed)
    assert written("reversed", keyed[::-1]) == in_order
    by_key = dict((value, key) for key, value in keyed)
    for index, records in enumerate(in_order):
        keys = [by_key[record] for record in records]
        assert keys == sorted(keys) and all(key % 3 == index for key in keys)
    assert sorted(record for records in in_order for record in records) == sorted(value for _, value in keyed)
    # Another seed, another order.
    assert patch_executor.order_key(8, "scan-0", 0) != patch_executor.order_key(7, "scan-0", 0)
    # No patches: one empty file, so the split exists for the Trainer's reader.
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create([]) | patch_executor.WritePatchFiles(str(tmp_path / "none"))
    assert [os.path.basename(path) for path in tf.io.gfile.glob(str(tmp_path / "none" / "*"))] == [
        "data_tfrecord-00000-of-00001.gz"]


def test_component_serialises_its_parameters() -> None:
    examples = types.Channel(type=standard_artifacts.Examples)
    options = PatchSamplingOptions(patch_size=56)
    sampler = PatchSampler(examples=examples, sampling_options=options, splits=["train"])
    assert PatchSamplingOptions.from_json(sampler.exec_properties["sampling_options"]) == options
    assert json.loads(sampler.exec_properties["splits"]) == ["train"]
    assert sampler.outputs["patches"].type == standard_artifacts.Examples
    with pytest.raises(ValueError, match="unknown PatchSamplingOptions key"):
        PatchSampler(examples=examples, sampling_options='{"patch": 3}')
    with pytest.raises(ValueError, match="splits"):
        PatchSampler(examples=examples, splits="train")


@pytest.mark.e2e
def test_missing_split_or_an_all_failing_split_stops_the_run(tmp_path) -> None:
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    _write_split(examples.uri, "train",
                 [_scan_example("bad", b"not a png", np.zeros((4, 4), np.uint8), 1)])
    with pytest.raises(ValueError, match=r"splits \['eval'\] are not in the input Examples"):
        _run_executor(tmp_path, examples, ["train", "eval"])
    # The cause is in the message itself: the per-scan warnings are hidden from the console.
    with pytest.raises(RuntimeError, match="all 1 scans of split 'train'.*\n  1 x failed: image_png is not a readable "
                                           "PNG .*: bad$"):
        _run_executor(tmp_path, examples, ["train"])


@pytest.mark.e2e
def test_progress_line_flags_a_split_without_lesion_patches(tmp_path) -> None:
    counts = {split: patch_executor.complete_tally({"background": 4, "scans": 2}) for split in ("train", "eval")}
    counts["eval"]["mass_benign"] = 3
    counts["train"]["incomplete_mask_scans"] = 2
    with open(tmp_path / names.PATCH_COUNTS_FILE, "w") as handle:
        json.dump(counts, handle)
    line = SUMMARISERS["PatchSampler"]({"patches": metadata_store_pb2.Artifact(uri=str(tmp_path))})
    assert line.startswith("train: background 4 calc_malignant 0")
    assert line.count("(NO lesion patches)") == 1 and line.index("(NO lesion patches)") < line.index("eval:")
    assert line.count("(2 scans with incomplete masks)") == 1 and line.index("incomplete") < line.index("eval:")
    assert "incomplete_mask_scans" not in line  # a scan count, not a patch class
