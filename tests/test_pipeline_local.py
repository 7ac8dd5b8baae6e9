"""A local run of the whole pipeline (BeamDagRunner, SQLite MLMD): outputs, no anomalies on clean data, and
schema violations reported by ExampleValidator."""
import os
import shutil

import pytest
import tensorflow as tf
from tfx.components.example_validator import executor as validator_executor
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.types import artifact_utils, standard_artifacts

from mammo_tfx import cli, names, synth
from mammo_tfx.evaluation.calibration import read_screening_record
from mammo_tfx.monitoring.drift import read_statistics, training_statistics_path
from pipeline.config import load_config
from pipeline.outputs import collect_outputs, read_anomalies
from pipeline.paths import SCHEMA_FILE
from pipeline.progress import PROGRESS_LINE, ComponentRun, RunProgress
from pipeline.runners import LocalRunLayout
from tests.conftest import feature, read_split, user_console

pytestmark = pytest.mark.e2e  # the whole pipeline on the BeamDagRunner


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    for layout, patients in (("cbis-ddsm", 6), ("inbreast", 4), ("mias", 4)):
        synth.generate(layout, root / layout, patients=patients, seed=11, scale=0.25)
    out = tmp_path_factory.mktemp("run")
    # `mammo-tfx run` as a user starts it, so its console is checked too. The resume tests use the LocalDagRunner;
    # this run covers the BeamDagRunner.
    run = user_console("run", "--profile", "test", "--orchestrator", "beam", "--out", str(out),
                       *(f"--data={layout}={root / layout}" for layout in ("cbis-ddsm", "inbreast", "mias")),
                       timeout=1100)
    assert run.returncode == 0, run.stdout + run.stderr
    layout = LocalRunLayout(str(out))
    return layout, collect_outputs(layout.metadata_path), run


def test_run_writes_examples_statistics_and_no_anomalies_on_clean_data(local_run):
    layout, outputs, _ = local_run
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
    _, outputs, _ = local_run
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
    _, outputs, _ = local_run
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


def test_the_console_holds_only_the_lines_the_tool_writes(local_run):
    """Progress lines while it runs, then the summary: the tool's own lines, in its own formats, and nothing from
    TensorFlow, Beam, TFX or Python's warnings (stderr is empty)."""
    layout, outputs, run = local_run
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    progress_lines = lines[:lines.index("")]
    progress = RunProgress()
    for line in progress_lines:
        match = PROGRESS_LINE.fullmatch(line)
        assert match, f"not a progress line: {line!r}"
        if match["cached"] or match["state"]:
            progress.components.append(ComponentRun(
                node_id=match["node_id"], execution_id=len(progress.components), seconds=float(match["seconds"] or 0),
                cached=bool(match["cached"]), summary=match["summary"] or "", done=match["state"] != "FAILED",
                failed=match["state"] == "FAILED"))
    assert progress.components
    # The run's own records, formatted by the tool's own code, are the rest of the console, line for line.
    report = cli.write_run_report(outputs, layout.out_dir) if outputs.evaluation_uri else None
    sample = os.path.join(layout.out_dir, "sample.png") if report is not None and outputs.pushed_uri else None
    expected = cli.run_summary_lines(load_config("test"), layout, progress, outputs, report, sample)
    assert lines[len(progress_lines):] == "\n".join(expected).splitlines()


def test_the_run_checks_drift_and_pushes_its_training_statistics_sliced(local_run):
    _, outputs, _ = local_run
    # The first run of a pipeline root: nothing is served yet, so nothing is compared, and the notes say why.
    assert outputs.drift is not None and outputs.drift.rows == []
    assert "no model is pushed" in outputs.drift.notes[0]
    assert outputs.pushed_uri, "the test profile blesses and pushes"
    pushed = read_statistics(training_statistics_path(outputs.pushed_uri))
    sliced = {dataset.name for dataset in pushed.datasets}
    assert {"All Examples", "dataset_cbis-ddsm", "dataset_inbreast", "dataset_mias"} <= sliced, sliced
    features = {feature.path.step[0] for feature in pushed.datasets[0].features}
    assert set(names.DRIFT_FEATURES) <= features
