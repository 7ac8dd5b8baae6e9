"""Resume and re-run: a run killed inside the patch Trainer's training completes when started again, the Trainer
resuming from its epoch checkpoint; unchanged inputs are served from the MLMD cache, a gate bound change re-runs only
the gate and what follows, a serving limit or stage-2 change only stage 2 and what follows, and new data flows
through a new ExampleGen execution whose report sits beside the earlier one's."""
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import lru_cache

import pytest
import tensorflow as tf
from tfx.dsl.components.base.base_component import BaseComponent

from mammo_tfx import synth
from mammo_tfx.names import INGEST_SUMMARY_FILE, TRAINING_STATE_FILE, TRAINING_SUMMARY_FILE
from pipeline.config import load_config
from pipeline.outputs import collect_outputs, latest_output_uri, open_store
from pipeline.pipeline import IMAGE_TRAINER_ID, PATCH_TRAINER_ID, checkpoints_dir, create_pipeline, reports_dir
from pipeline.runners import LocalRunLayout, run_local
from pipeline.sources import DataSource

pytestmark = pytest.mark.e2e  # the pipeline run several times on the LocalDagRunner


def _statuses(progress):
    return {run.node_id: ("cached" if run.cached else "ran") for run in progress.components}


@lru_cache(maxsize=None)
def _pipeline_nodes():
    """The test profile's pipeline definition, node id -> node (the runs below use that profile)."""
    return {node.id: node for node in create_pipeline(load_config("test"), "/manifest", "/root").components}


def _executing_components() -> set:
    """The nodes that execute code and so can be served from the cache (a Resolver only looks artifacts up)."""
    return {node_id for node_id, node in _pipeline_nodes().items() if isinstance(node, BaseComponent)}


def _downstream_of(node_id: str) -> set:
    """Every node that consumes, directly or not, an output of `node_id`, from the pipeline definition."""
    found, frontier = set(), [_pipeline_nodes()[node_id]]
    while frontier:
        for node in frontier.pop().downstream_nodes:
            if node.id not in found:
                found.add(node.id)
                frontier.append(node)
    return found


def _examples(examples_uri):
    files = glob.glob(os.path.join(examples_uri, "Split-*", "*.gz"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, "GZIP")]


def _run_and_kill(args, out_dir):
    """Starts `mammo-tfx run` and kills its whole process group once the patch Trainer has checkpointed an epoch;
    returns the run's output and the epochs that checkpoint holds."""
    process = subprocess.Popen([sys.executable, "-m", "mammo_tfx.cli", "run", *args, "--out", out_dir],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True)
    reader.start()
    pattern = os.path.join(checkpoints_dir(LocalRunLayout(out_dir).pipeline_root, PATCH_TRAINER_ID), "*",
                           TRAINING_STATE_FILE)
    deadline = time.monotonic() + 600
    while not glob.glob(pattern) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reader.join(timeout=10)
    states = glob.glob(pattern)
    if not states:
        return "".join(seen), 0
    with open(states[0]) as handle:
        return "".join(seen), json.load(handle)["epochs_done"]


def _resumed_from_epoch(metadata_path, trainer_id):
    run_dir = latest_output_uri(open_store(metadata_path), trainer_id, "model_run")
    with open(os.path.join(run_dir, TRAINING_SUMMARY_FILE)) as handle:
        return json.load(handle)["resumed_from_epoch"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    synth.generate("cbis-ddsm", data / "cbis", patients=6, seed=5, scale=0.25)
    synth.generate("mias", data / "mias", patients=3, seed=5)
    sources = [DataSource.parse(f"cbis-ddsm={data / 'cbis'}"), DataSource.parse(f"mias={data / 'mias'}")]
    out = str(tmp_path_factory.mktemp("run"))
    args = ["--profile", "test", "--data", f"cbis-ddsm={data / 'cbis'}", "--data", f"mias={data / 'mias'}"]
    results = dict(zip(("killed_output", "epochs_checkpointed"), _run_and_kill(args, out)))
    config = load_config("test")
    layout, results["resumed"] = run_local(config, sources, out, show_progress=False)
    results["resumed_outputs"] = collect_outputs(layout.metadata_path)
    results["patch_resumed_from_epoch"] = _resumed_from_epoch(layout.metadata_path, PATCH_TRAINER_ID)
    results["checkpoints_left"] = glob.glob(os.path.join(checkpoints_dir(layout.pipeline_root, PATCH_TRAINER_ID), "*"))
    _, results["unchanged"] = run_local(config, sources, out, show_progress=False)
    results["unchanged_outputs"] = collect_outputs(layout.metadata_path)
    # One setting of each kind changed, each run against the cache of the runs before: a gate bound (only the gate
    # and what follows it may run), then a serving limit (the whole-image export enforces it; stage 1 is not served).
    gate_changed = load_config("test", overrides=["evaluation.max_auc_drop=0.5"])
    _, results["gate_changed"] = run_local(gate_changed, sources, out, show_progress=False)
    limits_changed = load_config("test", overrides=["serving.image.max_side=8000"])
    _, results["limits_changed"] = run_local(limits_changed, sources, out, show_progress=False)
    stage2_changed = load_config("test", overrides=["image_training.dropout=0.25"])
    _, results["stage2_changed"] = run_local(stage2_changed, sources, out, show_progress=False)
    synth.generate("mias", data / "mias", patients=5, seed=5)  # two more women's images in the same folder
    _, results["new_data"] = run_local(stage2_changed, sources, out, show_progress=False)
    results["new_data_outputs"] = collect_outputs(layout.metadata_path)
    results["reports_dir"] = reports_dir(layout.pipeline_root, "MammoExampleGen")
    return results


def test_killed_run_completes_when_started_again_without_duplicates(runs):
    # Killed inside the patch Trainer, after its first epoch checkpoint: the re-run Trainer resumed from it.
    assert runs["epochs_checkpointed"] >= 1, runs["killed_output"][-3000:]
    assert runs["patch_resumed_from_epoch"] == runs["epochs_checkpointed"]
    assert runs["checkpoints_left"] == []  # deleted after the successful export
    statuses = _statuses(runs["resumed"])
    # What finished before the kill is re-used; the killed Trainer and what follows run.
    assert statuses["MammoExampleGen"] == "cached"
    assert statuses["Trainer_patch"] == "ran" and statuses["Trainer_image"] == "ran"
    assert all(run.done for run in runs["resumed"].components)
    outputs = runs["resumed_outputs"]
    examples = _examples(outputs.examples_uri)
    keys = [e.features.feature["image_key"].bytes_list.value[0] for e in examples]
    assert len(keys) == len(set(keys)) == outputs.ingest_summary["ingested"]
    assert outputs.ingest_summary["ingested"] + outputs.ingest_summary["quarantined"] + \
        outputs.ingest_summary["excluded"] == outputs.ingest_summary["listed"]


def test_unchanged_rerun_is_served_from_the_cache(runs):
    statuses = _statuses(runs["unchanged"])
    executing = _executing_components()
    # PushedBaseline too: it looks the baseline up once per candidate model, and the candidate is cached.
    assert {node: statuses.get(node, "not run") for node in executing} == dict.fromkeys(executing, "cached")
    # Nothing new was made: every output of the re-run is the earlier run's artifact.
    assert runs["unchanged_outputs"] == runs["resumed_outputs"]


def test_a_gate_bound_change_re_gates_without_re_evaluating(runs):
    statuses = _statuses(runs["gate_changed"])
    assert statuses["ModelGate"] == "ran"
    assert {statuses[node] for node in ("Trainer_patch", "Trainer_image", "Evaluator", "ScreeningEvaluator")} == {
        "cached"}, statuses


def test_a_serving_limit_change_re_exports_stage2_only(runs):
    statuses = _statuses(runs["limits_changed"])
    assert statuses["Trainer_patch"] == "cached" and statuses["Trainer_image"] == "ran", statuses


def test_stage2_change_reruns_stage2_and_all_that_follows_and_nothing_before(runs):
    statuses = _statuses(runs["stage2_changed"])
    after_stage2 = _downstream_of(IMAGE_TRAINER_ID)
    assert {"Evaluator", "Pusher"} <= after_stage2  # the definition is read right: what follows the model
    rerun = {IMAGE_TRAINER_ID} | (after_stage2 & _executing_components())
    assert {node: statuses.get(node, "not run") for node in rerun} == dict.fromkeys(rerun, "ran")
    before_stage2 = _executing_components() - rerun
    assert {node: statuses.get(node, "not run") for node in before_stage2} == dict.fromkeys(before_stage2, "cached")


def test_new_data_flows_through_a_new_example_gen_execution(runs):
    statuses = _statuses(runs["new_data"])
    assert statuses["MammoExampleGen"] == "ran"
    assert statuses["Trainer_image"] == "ran"
    before, after = runs["resumed_outputs"], runs["new_data_outputs"]
    assert after.examples_uri != before.examples_uri
    assert after.ingest_summary["per_dataset"]["mias"]["ingested"] > before.ingest_summary["per_dataset"]["mias"]["ingested"]
    assert after.ingest_summary["per_dataset"]["cbis-ddsm"] == before.ingest_summary["per_dataset"]["cbis-ddsm"]


def test_a_later_run_never_overwrites_an_earlier_run_s_report(runs):
    # Two MammoExampleGen executions wrote reports: the first run's (later runs were served from the cache until
    # the new data came) and the new data's. Each has a folder of its own, and the first is as it was.
    before, after = runs["resumed_outputs"], runs["new_data_outputs"]
    first, second = (os.path.dirname(outputs.quarantine_uri) for outputs in (before, after))
    assert sorted(glob.glob(os.path.join(runs["reports_dir"], "*"))) == sorted([first, second])
    for folder, outputs in ((first, before), (second, after)):
        with open(os.path.join(folder, INGEST_SUMMARY_FILE)) as handle:
            assert json.load(handle) == outputs.ingest_summary, folder
    assert before.ingest_summary != after.ingest_summary
