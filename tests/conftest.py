"""Shared test fixtures and helpers: a tiny DICOM writer, small ingestion options, a GCS emulator, MammoExampleGen's
executor on Beam, and the trainer tests' toy data (Examples artifacts, a real Transform graph, an untrained export)."""
from __future__ import annotations

import dataclasses
import glob
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import portpicker
import pydicom
import pytest
import tensorflow as tf
import tf_keras
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.mammo_example_gen import executor as example_gen_executor
from components.mammo_example_gen.artifacts import QuarantineReport
from mammo_tfx import names
from mammo_tfx.evaluation.calibration import ScreeningRecord
from mammo_tfx.evaluation.screening import ScreeningOptions
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import QuarantineEntry, ScanRecord
from mammo_tfx.ingest.splits import SplitNeeds
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import WHOLE_IMAGE_KIND, ModelInfo, ServingGeometry
from pipeline.config import BeamConfig, SplitConfig, load_config
from pipeline.pipeline import output_config
from pipeline.sources import DataSource, write_manifest
from trainer_module.backbones import TRUNK_NAME
from trainer_module.export import export_whole_image_model
from trainer_module.patch_model import PATCH_HEAD_NAME, build_patch_model
from trainer_module.preprocessing import preprocessing_fn
from trainer_module.whole_image_model import IMAGE_HEAD_NAME, build_whole_image_model

DicomWriter = Callable[..., Path]


def write_dicom_file(path: Path, pixels: np.ndarray, bits_stored: int | None = None,
                     photometric: str = "MONOCHROME2", **tags: object) -> Path:
    """A minimal single-frame greyscale DICOM of `pixels` (uint8/uint16/int16); extra tags by keyword."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TEST-PATIENT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def rewrite_dicom_tags(path: Path, **tags: object) -> Path:
    """Rewrite header elements of a saved DICOM by keyword, pixel data untouched (e.g. a header that lies)."""
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


@pytest.fixture
def write_dicom() -> DicomWriter:
    """write_dicom(path, pixels, bits_stored=None, photometric="MONOCHROME2", **tags) -> path."""
    return write_dicom_file


@pytest.fixture
def small_options() -> IngestOptions:
    """Tiny working size so ingestion tests stay fast."""
    return IngestOptions(height=64, width=48)


@dataclass(frozen=True)
class GcsEmulator:
    """A GCS-API server on localhost (gcp-storage-emulator, in memory); STORAGE_EMULATOR_HOST points at it."""

    host: str

    def client(self):
        from google.cloud import storage as gcs  # anonymous: STORAGE_EMULATOR_HOST makes the client need no credentials
        return gcs.Client()

    def upload_tree(self, local_dir: Path, bucket: str, prefix: str) -> str:
        """Copies every file under local_dir to gs://bucket/prefix/ (creating the bucket); returns that URI."""
        client = self.client()
        target = client.lookup_bucket(bucket) or client.create_bucket(bucket)
        for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            target.blob(f"{prefix}/{path.relative_to(local_dir).as_posix()}").upload_from_filename(str(path))
        return f"gs://{bucket}/{prefix}"


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """Starts the emulator on a free port for the session; its env var is in os.environ, so Beam's worker
    processes inherit it."""
    port = portpicker.pick_unused_port()
    server = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--in-memory", "--quiet"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the GCS emulator did not start on port {port}") from None
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
            yield GcsEmulator(host=f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)


EXAMPLE_GEN_OPTIONS = IngestOptions(height=96, width=80)
EXAMPLE_GEN_SPLITS = SplitConfig(train=6, eval=2, test=2)


def run_executor(sources: list[DataSource], out_dir: str, options: IngestOptions = EXAMPLE_GEN_OPTIONS,
                 splits: SplitConfig = EXAMPLE_GEN_SPLITS, reports_dir: str | None = None,
                 split_needs: SplitNeeds | None = None,
                 ) -> tuple[standard_artifacts.Examples, QuarantineReport]:
    """MammoExampleGen's executor on the in-memory DirectRunner over `sources`; its two output artifacts.
    `split_needs`: the minimums of the split assignment and the check of the ingested splits (none by default)."""
    manifest_dir = os.path.join(out_dir, "manifest")
    write_manifest(sources, manifest_dir)
    examples, quarantine = standard_artifacts.Examples(), QuarantineReport()
    examples.uri, quarantine.uri = os.path.join(out_dir, "examples"), os.path.join(out_dir, "quarantine")
    os.makedirs(quarantine.uri)
    exec_properties = {
        "input_base": manifest_dir,
        "input_config": proto_utils.proto_to_json(example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="all", pattern=names.SOURCES_MANIFEST_FILE)])),
        "output_config": proto_utils.proto_to_json(output_config(splits)),
        "custom_config": proto_utils.proto_to_json(example_gen_executor.encode_custom_config(options)),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        example_gen_executor.REPORTS_DIR_KEY: reports_dir,
        example_gen_executor.SPLIT_NEEDS_KEY: split_needs.to_json() if split_needs else None,
    }
    beam_args = BeamConfig(direct_running_mode="in_memory", direct_num_workers=1).pipeline_args()
    context = example_gen_executor.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=os.path.join(out_dir, "tmp"))
    example_gen_executor.Executor(context).Do(
        {}, {"examples": [examples], "quarantine": [quarantine]}, exec_properties)
    return examples, quarantine


# The trainer tests' toy problem: malignant whole images carry one bright square at a random place; patch classes
# are told apart by a per-class brightness of a centred disc (background has none). Both are learnable in a few
# optimiser steps by tiny models.
IMAGE_ROWS, IMAGE_COLS = 64, 48
PATCH_SIZE = 32
# Same raw shapes as schemas/schema.pbtxt (image_png and label have shape [1]).
RAW_FEATURE_SPEC = {
    names.IMAGE_PNG: tf.io.FixedLenFeature([1], tf.string),
    names.LABEL: tf.io.FixedLenFeature([1], tf.int64),
}


def user_console(*cli_args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`mammo-tfx ARGS` in a child process, its console captured as a user sees it: without the settings that quiet
    TensorFlow and Python warnings for the test session (the Makefile's TF_CPP_MIN_LOG_LEVEL, PYTHONWARNINGS)."""
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    return subprocess.run([sys.executable, "-m", "mammo_tfx.cli", *cli_args], capture_output=True, text=True,
                          env={**env, "COLUMNS": "100"}, timeout=timeout)


def encode_png16(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(pixels.astype(np.uint16)[..., None])).numpy()


def toy_whole_image(rng: np.random.Generator, malignant: bool,
                    rows: int = IMAGE_ROWS, cols: int = IMAGE_COLS) -> np.ndarray:
    image = rng.normal(12000, 1500, (rows, cols)).clip(0, 65535)
    if malignant:
        top, left = rng.integers(0, rows - 12), rng.integers(0, cols - 12)
        image[top:top + 12, left:left + 12] = 60000
    return image.astype(np.uint16)


def toy_patch(rng: np.random.Generator, patch_class: int, size: int = PATCH_SIZE) -> np.ndarray:
    patch = rng.normal(10000, 1000, (size, size))
    if patch_class > 0:
        rows, cols = np.mgrid[:size, :size]
        disc = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (size / 3) ** 2
        patch[disc] = 10000 + 12000 * patch_class
    return patch.clip(0, 65535).astype(np.uint16)


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def whole_image_example(pixels: np.ndarray, label: int, breast_key: str = "breast-0",
                        exam_key: str = "exam-0") -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_PNG: _bytes_feature(encode_png16(pixels)),
        names.LABEL: _int_feature(label),
        names.DATASET: _bytes_feature(b"cbis-ddsm"),
        names.BREAST_KEY: _bytes_feature(breast_key.encode()),
        names.EXAM_KEY: _bytes_feature(exam_key.encode()),
    }))


def patch_example(pixels: np.ndarray, patch_class: int) -> tf.train.Example:
    malignant = patch_class in (1, 3)
    return tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_PNG: _bytes_feature(encode_png16(pixels)),
        names.PATCH_CLASS: _int_feature(patch_class),
        names.LABEL: _int_feature(int(malignant)),
        names.SOURCE_IMAGE_KEY: _bytes_feature(b"0" * 32),
        names.DATASET: _bytes_feature(b"cbis-ddsm"),
    }))


def write_split(examples_uri: str, split: str, examples: Iterable[tf.train.Example]) -> str:
    """Writes one split as TFX does: <uri>/Split-<split>/data_tfrecord-00000-of-00001.gz (GZIP)."""
    split_dir = os.path.join(examples_uri, f"Split-{split}")
    os.makedirs(split_dir, exist_ok=True)
    path = os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return path


def whole_image_examples(count: int, seed: int, rows: int = IMAGE_ROWS,
                         cols: int = IMAGE_COLS) -> list[tf.train.Example]:
    """Labels alternate; images i and i + 2 are two views of one breast (so a breast has one label), and the
    four images from 4k are one exam of a benign and a malignant breast."""
    rng = np.random.default_rng(seed)
    return [whole_image_example(toy_whole_image(rng, i % 2 == 1, rows, cols), i % 2,
                                breast_key=f"s{seed}-b{i // 4}-{i % 2}", exam_key=f"s{seed}-e{i // 4}")
            for i in range(count)]


def patch_examples(count: int, seed: int, size: int = PATCH_SIZE) -> list[tf.train.Example]:
    rng = np.random.default_rng(seed)
    return [patch_example(toy_patch(rng, i % 5, size), i % 5) for i in range(count)]


def build_transform_output(output_dir: str, examples: list[tf.train.Example]) -> tft.TFTransformOutput:
    """Analyzes `examples` with the real preprocessing_fn (featurewise mean) and writes the
    transform graph as the Transform component would."""
    raw = [{names.IMAGE_PNG: [e.features.feature[names.IMAGE_PNG].bytes_list.value[0]],
            names.LABEL: [e.features.feature[names.LABEL].int64_list.value[0]]} for e in examples]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_FEATURE_SPEC))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(dir=output_dir), force_tf_compat_v1=False):
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    # The Transform component also records the raw schema next to the graph.
    metadata_io.write_metadata(metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(output_dir)


def _shrink_head(dense_layer, scale: float = 0.01) -> None:
    """Untrained trunks on 0..255-scale pixels give logits in the hundreds, i.e. probabilities of exactly 0 or
    1; a smaller output kernel keeps them inside (0, 1), so comparing predictions means something."""
    kernel, bias = dense_layer.get_weights()
    dense_layer.set_weights([kernel * scale, bias])


def whole_image_info(record: Optional[ScreeningRecord]) -> ModelInfo:
    """The model info of a whole-image export of the test profile recording `record` (None: no record)."""
    config = load_config("test")
    return ModelInfo(kind=WHOLE_IMAGE_KIND, patch_hparams=config.patch_training.to_dict(), image_limits=ImageLimits(),
                     image_hparams=config.image_training.to_dict(),
                     geometry=ServingGeometry(tuple(config.image_training.image_size), 8, 16),
                     screening=None if record is None else record.to_dict())


def export_untrained_whole_image_model(work_dir: str, export_dir: str, working_size: tuple[int, int],
                                       image_limits: ImageLimits = ImageLimits(),
                                       eval_examples: Optional[list[tf.train.Example]] = None,
                                       resize_mode: str = names.STRETCH,
                                       image_head_scale: float = 0.01) -> tf_keras.Model:
    """trainer_module's real whole-image export of tiny untrained models over a real Transform graph (analysed on
    8 toy images at `working_size`, a multiple of the tiny trunk's stride 8): the serving graph in seconds. It
    calibrates on `eval_examples` (default: those 8 images), written as the eval split under <work_dir>/examples;
    its signatures bring images to the working size as ingestion's `resize_mode` does. `image_head_scale` 0 gives a
    model that scores every image the same. Returns the exported whole-image model."""
    transform_dir = os.path.join(work_dir, "transform_graph")
    os.makedirs(transform_dir)
    examples = whole_image_examples(8, 1, *working_size)
    tf_transform_output = build_transform_output(transform_dir, examples)
    eval_file = write_split(os.path.join(work_dir, "examples"), "eval",
                            examples if eval_examples is None else eval_examples)
    tf.random.set_seed(7)
    patch_hparams = load_config("test").patch_training
    image_hparams = dataclasses.replace(load_config("test").image_training, image_size=working_size,
                                        resize_mode=resize_mode)
    trunk = build_patch_model(patch_hparams).get_layer(TRUNK_NAME)
    whole_image_model = build_whole_image_model(trunk, image_hparams)
    patch_model = build_patch_model(patch_hparams)
    _shrink_head(whole_image_model.get_layer(IMAGE_HEAD_NAME), image_head_scale)
    _shrink_head(patch_model.get_layer(PATCH_HEAD_NAME))
    export_whole_image_model(whole_image_model, patch_model, image_hparams, patch_hparams, tf_transform_output,
                             export_dir, [eval_file], ScreeningOptions(), image_limits)
    return whole_image_model


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of the toy Examples artifacts (whole images and patches) and of the transform graph."""
    root = str(tmp_path_factory.mktemp("trainer_data"))
    images_uri, patches_uri = os.path.join(root, "images"), os.path.join(root, "patches")
    train_images = whole_image_examples(48, seed=1)
    write_split(images_uri, "train", train_images)
    write_split(images_uri, "eval", whole_image_examples(16, seed=2))
    write_split(patches_uri, "train", patch_examples(80, seed=3))
    write_split(patches_uri, "eval", patch_examples(20, seed=4))
    transform_dir = os.path.join(root, "transform_graph")
    os.makedirs(transform_dir)
    build_transform_output(transform_dir, train_images)
    return {"images": images_uri, "patches": patches_uri, "transform_graph": transform_dir}


# Reading ingestion results back, shared by the layout and ExampleGen tests.
def read_split(examples_uri, split):
    files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()) for r in records]


def feature(example, key):
    values = example.features.feature[key]
    return values.bytes_list.value[0].decode() if values.bytes_list.value else values.int64_list.value[0]


def phantom(rows: int, cols: int, side: str = "L", bits: int = 12) -> np.ndarray:
    """A bright half-disc 'breast' against the given image edge."""
    r, c = np.mgrid[0:rows, 0:cols]
    edge = 0 if side == "L" else cols - 1
    inside = ((r - rows / 2) / (rows * 0.45)) ** 2 + ((c - edge) / (cols * 0.7)) ** 2 <= 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    return (inside * (2 ** bits - 1) * 0.8).astype(dtype)


def ingest(layout: str, root: Path, options: IngestOptions) -> dict[str, object]:
    """record id -> example features dict or QuarantineEntry, for every listed item."""
    results = {}
    for item in list_records(layout, str(root), options):
        result = item if isinstance(item, QuarantineEntry) else process_record(item, options)
        key = item.record_id if isinstance(item, ScanRecord) else item.record
        assert key not in results, f"record {key} listed twice"
        results[key] = result if isinstance(result, QuarantineEntry) else result.features.feature
    return results


def mask_of(features) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(features["mask_png"].bytes_list.value[0])))


def value(features, key):
    feature = features[key]
    if feature.bytes_list.value:
        return feature.bytes_list.value[0].decode()
    if feature.int64_list.value:
        values = list(feature.int64_list.value)
        return values[0] if len(values) == 1 else values
    return list(feature.float_list.value)


# --- Screening units: per-image scores of synthetic exams and unit evaluation documents written by the real writer.

def screening_images(rng: np.random.Generator, breasts_per_dataset: dict[str, int], views_showing: int,
                     separation: float = 2.0, malignant_fraction: float = 0.3) -> list:
    """ScoredUnits of synthetic exams (2 breasts x CC/MLO each, in exam order) with `probability`-like scores.

    A malignant breast's lesion shows in `views_showing` (1 or 2) of its views: those images are labelled 1 and score
    `separation` higher on the logit scale; the others score like normal images. With 2 the breast mean averages
    two noisy positive views (breast AUC above image AUC); with 1 it dilutes the one positive view with a normal
    one (breast AUC below image AUC)."""
    from mammo_tfx.evaluation.screening import ScoredUnit

    images = []
    for dataset, count in breasts_per_dataset.items():
        for breast in range(count):
            patient = breast // 2
            malignant = rng.random() < malignant_fraction
            for view_index, view in enumerate(("CC", "MLO")):
                label = int(malignant and view_index < views_showing)
                logit = rng.normal(separation * label - 0.5, 1.0)
                images.append(ScoredUnit(
                    key=f"{dataset}-{breast}-{view}", label=label, score=float(1.0 / (1.0 + np.exp(-logit))),
                    breast_key=f"{dataset}-b{breast}", exam_key=f"{dataset}-e{patient}",
                    slices={names.DATASET: dataset, names.VIEW: view, names.LATERALITY: "LR"[breast % 2]}))
    return images


def unit_evaluation_document(directory: str, models: dict[str, list], thresholds: dict[str, float] | None = None,
                             bootstrap_samples: int = 40, rule: str = "mean"):
    """Figures per model, unit and slice (overall and per dataset) computed with mammo_tfx.evaluation.screening
    from scored images, written by unit_results.write_unit_evaluation into `directory` and read back.
    `thresholds` (unit -> threshold) give every model's operating figures; ECE "after" is that of the scores,
    "before" that of their square root (a monotone, worse-calibrated score the synthetic model would have had)."""
    from mammo_tfx.evaluation import screening
    from mammo_tfx.evaluation.unit_results import (ModelUnits, UnitEvaluation, UnitFigures, read_unit_evaluation,
                                                   write_unit_evaluation)

    thresholds = thresholds or {}
    documents = {}
    for name, images in models.items():
        units = screening.all_units(images, screening.BreastRule(rule))
        figures: dict = {}
        for unit, members in units.items():
            groups = {(): members}
            for dataset in sorted({member.slices[names.DATASET] for member in members}):
                groups[((names.DATASET, dataset),)] = [m for m in members if m.slices[names.DATASET] == dataset]
            figures[unit] = {}
            for key, group in groups.items():
                labels, scores = screening.unit_arrays(group)
                threshold = thresholds.get(unit)
                figures[unit][key] = UnitFigures(
                    slice=key, count=len(group), positives=int(labels.sum()), negatives=int((labels == 0).sum()),
                    auc=screening.auc(labels, scores),
                    auc_interval=screening.bootstrap_auc_interval(labels, scores, bootstrap_samples, seed=0),
                    operating=None if threshold is None else
                    screening.operating_figures(labels, scores, threshold).to_dict())
        labels, scores = screening.unit_arrays(units[screening.IMAGE_UNIT])
        documents[name] = ModelUnits(
            predictions_file=f"{name}_{names.PREDICTIONS_FILE}", thresholds=dict(thresholds),
            ece={"before": screening.expected_calibration_error(labels, np.sqrt(scores)),
                 "after": screening.expected_calibration_error(labels, scores)},
            figures=figures, roc={unit: screening.roc_points(*screening.unit_arrays(members))
                                  for unit, members in units.items()})
    os.makedirs(directory, exist_ok=True)
    write_unit_evaluation(UnitEvaluation(uri=directory, split="test", breast_rule=rule,
                                         bootstrap_samples=bootstrap_samples, models=documents), directory)
    return read_unit_evaluation(directory)


# `make test` runs the suite on two pytest-xdist workers, a file per work unit in collection order
# (`--dist loadfile --no-loadscope-reorder`). These modules take most of the suite's time, so they are collected
# first: one worker starts the production smoke run while the other starts the pipeline runs and then takes the
# rest, and neither waits alone at the end.
LONGEST_MODULES_FIRST = ("test_production_smoke.py", "test_pipeline_resume.py", "test_pipeline_local.py",
                         "test_trainer_resume.py", "test_trainer_run_fn.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_MODULES_FIRST.index(name) if name in LONGEST_MODULES_FIRST else len(LONGEST_MODULES_FIRST)

    items.sort(key=rank)  # stable: every module keeps its own order
