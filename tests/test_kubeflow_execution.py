"""The compiled Kubeflow pipeline executed here, task by task, by the contract KFP's driver and launcher follow
(tests/kfp_task_runner.py names the KFP source files: backend/src/v2/driver/driver.go and resolve.go,
backend/src/v2/component/launcher_v2.go, backend/src/v2/compiler/argocompiler/dag.go, kfp/dsl/placeholders.py).

The `test` profile is compiled exactly as `mammo-tfx compile-kfp` compiles it (bucket pipeline root and manifest
dir, the image's repo copy at /opt/mammo-tfx); those prefixes are mapped to folders of this machine. The fast test
runs ingestion through Transform; the e2e test runs the whole pipeline twice under one root: the second run's
PushedBaseline finds the model the first run pushed and its gate compares against it.
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Dict

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
import tensorflow as tf

from mammo_tfx import names, synth
from mammo_tfx.evaluation.gates import read_gate_report
from mammo_tfx.serving.model import load_model
from mammo_tfx.serving.repository import list_complete_versions
from pipeline import kubeflow
from pipeline.config import load_config
from pipeline.evaluation import BASELINE_ID, GATE_ID, PUSHER_ID
from pipeline.paths import REPO_ROOT
from pipeline.sources import DataSource, write_manifest
from tests.kfp_task_runner import KfpTaskRunner, PipelineRun, map_of, read_pipeline_spec, upstream_closure

IMAGE = "europe-docker.pkg.dev/mammo-project/mammo/mammo-tfx:test"
BUCKET = "gs://mammo-test-bucket"
PIPELINE_ROOT = f"{BUCKET}/pipeline-root"
MANIFEST_DIR = f"{BUCKET}/manifest"
INGESTION_THROUGH_TRANSFORM = ("MammoExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                               "Transform")


class CompiledRun:
    """The test profile compiled to YAML, its data, and a runner whose bucket and image paths are local folders."""

    def __init__(self, root: Path) -> None:
        data = root / "data"
        # With the default salt these patients put both classes into every split, so the first run can be blessed
        # (an overall slice of one class is insufficient, which always blocks blessing).
        synth.generate("cbis-ddsm", data / "cbis", patients=8, seed=5, scale=0.25)
        synth.generate("mias", data / "mias", patients=3, seed=5)
        sources = [DataSource.parse(f"cbis-ddsm={data / 'cbis'}"), DataSource.parse(f"mias={data / 'mias'}")]
        self.bucket = root / "bucket"
        write_manifest(sources, str(self.bucket / "manifest"))
        self.package = root / "pipeline.yaml"
        self.config = load_config("test")
        kubeflow.compile_kfp(self.config, IMAGE, PIPELINE_ROOT, MANIFEST_DIR, str(self.package))
        self.spec = read_pipeline_spec(str(self.package))
        self.pipeline_root = str(self.bucket / "pipeline-root")
        self.runner = KfpTaskRunner(self.spec, self.pipeline_root, map_of({
            PIPELINE_ROOT: self.pipeline_root, MANIFEST_DIR: str(self.bucket / "manifest"),
            kubeflow.IMAGE_REPO_DIR: REPO_ROOT}))

    @property
    def push_base_directory(self) -> str:
        return self.config.evaluation.push_base_directory(self.pipeline_root)


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory: pytest.TempPathFactory) -> CompiledRun:
    return CompiledRun(tmp_path_factory.mktemp("kfp_execution"))


def test_ingestion_through_transform_runs_by_the_kfp_task_contract(compiled_run: CompiledRun) -> None:
    only = upstream_closure(compiled_run.spec, INGESTION_THROUGH_TRANSFORM)
    assert only == set(INGESTION_THROUGH_TRANSFORM)
    run = compiled_run.runner.run("fast", only=only)
    order = list(run.tasks)
    assert set(order) == only
    assert order.index("MammoExampleGen") < order.index("StatisticsGen") < order.index("ExampleValidator")
    # ExampleGen's driver hook ran first: span and fingerprint of the manifest, which the executor read back.
    assert [name for name, task in run.tasks.items() if task.driver_output is not None] == ["MammoExampleGen"]
    driver_parameters = run.tasks["MammoExampleGen"].driver_output.parameter_values
    assert driver_parameters["span"].number_value == 0
    assert "num_files:1," in driver_parameters["input_fingerprint"].string_value  # the one sources.json
    examples = run.metadata("MammoExampleGen", "examples")
    assert examples["ingested"] > 0 and examples["quarantined"] == 0
    assert json.loads(examples["split_names"]) == ["train", "eval", "test"]
    examples_uri = run.output("MammoExampleGen", "examples").uri
    assert examples_uri.startswith(compiled_run.pipeline_root)
    for split in ("train", "eval", "test"):
        assert glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz")), split
    # The consumers got the producer's artifact: ExampleValidator found no anomaly in the clean synthetic data.
    validator_input = run.tasks["ExampleValidator"].executor_input.inputs.artifacts["statistics"].artifacts[0]
    assert validator_input.uri == run.output("StatisticsGen", "statistics").uri
    assert validator_input.type.instance_schema.startswith("title: tfx.ExampleStatistics")
    anomalies_uri = run.output("ExampleValidator", "anomalies").uri
    for split in ("train", "eval", "test"):
        assert os.path.exists(os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")), split
    # Transform analysed the train split into a transform graph (materialize=False: no transformed examples).
    graph_uri = run.output("Transform", "transform_graph").uri
    assert os.path.exists(os.path.join(graph_uri, "transform_fn", "saved_model.pb"))


def _gates(run: PipelineRun) -> Dict[str, dict]:
    report = read_gate_report(run.output(GATE_ID, "blessing").uri)
    return {gate.name: gate for gate in report.gates}


@pytest.fixture(scope="module")
def two_full_runs(compiled_run: CompiledRun) -> Dict[str, PipelineRun]:
    return {run_id: compiled_run.runner.run(run_id) for run_id in ("run-1", "run-2")}


@pytest.mark.e2e
def test_every_task_of_two_runs_succeeds(compiled_run: CompiledRun, two_full_runs: Dict[str, PipelineRun]) -> None:
    for run in two_full_runs.values():
        assert set(run.tasks) == set(compiled_run.spec.root.dag.tasks)
        for task_name, task in run.tasks.items():
            for key, artifacts in task.executor_input.outputs.artifacts.items():
                assert os.path.exists(artifacts.artifacts[0].uri), (task_name, key)


@pytest.mark.e2e
def test_the_first_run_is_gated_without_baseline_and_pushes(two_full_runs: Dict[str, PipelineRun]) -> None:
    first = two_full_runs["run-1"]
    assert first.metadata(BASELINE_ID, "baseline_model")["baseline_found"] == 0
    assert _gates(first)["auc_drop_vs_baseline"].status == "skipped"
    assert first.metadata(GATE_ID, "blessing")["blessed"] == 1
    assert first.metadata(PUSHER_ID, "pushed_model")["pushed"] == 1


@pytest.mark.e2e
def test_the_second_run_compares_with_the_model_the_first_run_pushed(
        compiled_run: CompiledRun, two_full_runs: Dict[str, PipelineRun]) -> None:
    first, second = two_full_runs["run-1"], two_full_runs["run-2"]
    first_version = first.metadata(PUSHER_ID, "pushed_model")["pushed_version"]
    baseline = second.metadata(BASELINE_ID, "baseline_model")
    assert baseline["baseline_found"] == 1 and baseline["pushed_version"] == first_version
    # The Evaluator, the ScreeningEvaluator and the gate got that baseline; the gate reports the comparison.
    baseline_uri = second.output(BASELINE_ID, "baseline_model").uri
    for consumer in ("Evaluator", "ScreeningEvaluator", GATE_ID):
        assert second.tasks[consumer].executor_input.inputs.artifacts["baseline_model"].artifacts[0].uri == \
            baseline_uri, consumer
    report = read_gate_report(second.output(GATE_ID, "blessing").uri)
    assert report.baseline_evaluated
    drop = _gates(second)["auc_drop_vs_baseline"]
    assert drop.status in ("passed", "failed") and drop.value is not None
    blessing = second.metadata(GATE_ID, "blessing")
    assert blessing["baseline_pushed_version"] == first_version
    assert blessing["baseline_model"] == baseline_uri
    unit_evaluation = second.metadata("ScreeningEvaluator", "unit_evaluation")
    assert unit_evaluation["with_baseline"] == 1


@pytest.mark.e2e
def test_the_pushed_model_loads_and_answers(compiled_run: CompiledRun, two_full_runs: Dict[str, PipelineRun]) -> None:
    versions = list_complete_versions(compiled_run.push_base_directory)
    pushed = [int(run.metadata(PUSHER_ID, "pushed_model")["pushed_version"]) for run in two_full_runs.values()
              if run.metadata(PUSHER_ID, "pushed_model")["pushed"] == 1]
    assert versions == sorted(pushed) and versions
    model = load_model(os.path.join(compiled_run.push_base_directory, str(versions[-1])), versions[-1])
    examples_uri = two_full_runs["run-2"].output("MammoExampleGen", "examples").uri
    records = [record.numpy() for record in tf.data.TFRecordDataset(
        glob.glob(os.path.join(examples_uri, "Split-test", "*.gz")), "GZIP").take(2)]
    (input_key,) = model.input_dtypes(names.EXAMPLES_SIGNATURE)
    outputs = model.predict(names.EXAMPLES_SIGNATURE, {input_key: np.array(records)})
    for output in names.MODEL_OUTPUTS:
        assert outputs[output].shape[0] == len(records)
        assert np.all((outputs[output] >= 0) & (outputs[output] <= 1)), output
