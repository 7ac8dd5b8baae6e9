"""A local run of the whole pipeline (BeamDagRunner, SQLite MLMD): outputs, no anomalies on clean data, and
schema violations reported by ExampleValidator."""
import os
import shutil

import pytest
import tensorflow as tf
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.types import artifact_utils, standard_artifacts

from mammo_tfx import names, synth
from mammo_tfx.evaluation.calibration import read_screening_record
from pipeline.config import load_config
from pipeline.outputs import collect_outputs, read_anomalies
from pipeline.paths import SCHEMA_FILE
from pipeline.runners import run_local
from pipeline.sources import DataSource
from tests.conftest import feature, read_split

pytestmark = pytest.mark.e2e  # the whole pipeline on the BeamDagRunner


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    for layout, patients in (("cbis-ddsm", 6), ("inbreast", 4), ("mias", 4)):
        synth.generate(layout, root / layout, patients=patients, seed=11, scale=0.25)
    sources = [DataSource.parse(f"{layout}={root / layout}") for layout in ("cbis-ddsm", "inbreast", "mias")]
    # The resume tests use the LocalDagRunner; this run covers the BeamDagRunner.
    layout, _ = run_local(load_config("test"), sources, str(tmp_path_factory.mktemp("run")), show_progress=False,
                          orchestrator="beam")
    return layout, collect_outputs(layout.metadata_path)


def test_run_writes_examples_statistics_and_no_anomalies_on_clean_data(local_run):
    layout, outputs = local_run
    for split in ("train", "eval", "test"):
        assert tf.io.gfile.glob(os.path.join(outputs.examples_uri, f"Split-{split}", "*.gz"))
        assert tf.io.gfile.exists(os.path.join(outputs.statistics_uri, f"Split-{split}", "FeatureStats.pb"))
    assert outputs.ingest_summary["ingested"] > 0
    assert outputs.ingest_summary["quarantined"] == 0
    assert set(outputs.anomalies) == {"train", "eval", "test"}
    assert all(found == [] for found in outputs.anomalies.values()), outputs.anomalies


def _split_counts(examples: list) -> dict:
    """What a screening record counts of a split: images, breasts, exams and each unit's malignant ones."""
    label = {unit: {} for unit in ("image", "breast", "exam")}
    for index, example in enumerate(examples):
        malignant = feature(example, names.LABEL)
        label["image"][index] = malignant
        for unit, key in (("breast", names.BREAST_KEY), ("exam", names.EXAM_KEY)):
            unit_key = feature(example, key)
            label[unit][unit_key] = max(label[unit].get(unit_key, 0), malignant)
    return {**{unit: len(labels) for unit, labels in label.items()},
            "positives": {unit: sum(labels.values()) for unit, labels in label.items()}}


def test_the_served_calibration_and_thresholds_were_fitted_on_the_eval_split(local_run):
    _, outputs = local_run
    record = read_screening_record(outputs.model_export_dir)
    eval_counts, test_counts = (_split_counts(read_split(outputs.examples_uri, split)) for split in ("eval", "test"))
    assert eval_counts != test_counts  # else the comparison below could not tell the two splits apart
    assert record.eval_counts == eval_counts


def _tamper(examples_uri: str, out_uri: str) -> None:
    """Copies the train split with one example given an out-of-domain view and one without its mask."""
    source = tf.io.gfile.glob(os.path.join(examples_uri, "Split-train", "*.gz"))
    records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(source, "GZIP")]
    records[0].features.feature["view"].bytes_list.value[:] = [b"LATERAL"]
    del records[1].features.feature["mask_png"]
    os.makedirs(os.path.join(out_uri, "Split-train"))
    with tf.io.TFRecordWriter(os.path.join(out_uri, "Split-train", "data.gz"), "GZIP") as writer:
        for record in records:
            writer.write(record.SerializeToString())


def test_schema_violations_are_reported_as_anomalies(local_run, tmp_path):
    _, outputs = local_run
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    _tamper(outputs.examples_uri, examples.uri)
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    statistics_executor.Executor().Do({"examples": [examples]}, {"statistics": [statistics]}, {})
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    os.makedirs(schema.uri)
    shutil.copy(SCHEMA_FILE, os.path.join(schema.uri, "schema.pbtxt"))
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    validator_executor.Executor().Do(
        {"statistics": [statistics], "schema": [schema]}, {"anomalies": [anomalies]}, {"exclude_splits": "[]"})
    found = read_anomalies(anomalies.uri)["train"]
    assert any(line.startswith("view:") for line in found), found
    assert any(line.startswith("mask_png:") for line in found), found
