"""ModelGate end to end: the real TFX Evaluator on tiny tf.Examples and tiny SavedModels, then the gate, the
standard Pusher, LatestBlessedModelStrategy and the ModelCardWriter, all through their executors.

The models read two numeric features the test controls: `signal` (shifted by the label) and `nuisance` (pure
noise). good = sigmoid(signal); inverted = sigmoid(-signal); worse = sigmoid(signal + nuisance). Expected AUCs are
computed independently (Mann-Whitney) from the same numbers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Dict, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.pusher import executor as pusher_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.model_card import ModelCard
from components.model_card import executor as card_executor
from components.model_gate import executor as gate_executor
from mammo_tfx.evaluation.config import GATED_OUTPUT, EvaluationConfig
from mammo_tfx.evaluation.gates import GateResult, read_gate_report
from mammo_tfx.evaluation.model_card import input_limits_lines, training_lines
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import ServingGeometry
from mammo_tfx.serving.repository import list_complete_versions
from pipeline.config import load_config
from pipeline.evaluation import build_eval_config
from trainer_module.model_io import save_keras_copy

SPLIT = "test"
# (dataset, examples, fraction malignant): MIAS here has no malignant scan, so its slice is one-class.
DATASETS = (("cbis-ddsm", 120, 0.4), ("inbreast", 90, 0.4), ("mias", 40, 0.0))
MODELS = {"good": (1.0, 0.0), "inverted": (-1.0, 0.0), "worse": (1.0, 1.0)}  # weights of (signal, nuisance)
MODEL_IDS = {"good": 11, "inverted": 12, "worse": 13}
CONFIG = EvaluationConfig(min_overall_auc=0.8, min_dataset_auc={"cbis-ddsm": 0.75, "inbreast": 0.75},
                          max_auc_drop=0.01, min_slice_size=30, min_examples_per_class=5)
SPLIT_COUNTS = {"train": {"cbis-ddsm": 900, "inbreast": 300, "mias": 250}, "eval": {"cbis-ddsm": 120},
                "test": {"cbis-ddsm": 120, "inbreast": 90, "mias": 40}}


class _ExamplesModel(tf.Module):
    """The whole-image export's TFMA interface: serialized tf.Examples in, two probabilities out."""

    def __init__(self, signal_weight: float, nuisance_weight: float) -> None:
        super().__init__()
        self.weights = tf.Variable([signal_weight, nuisance_weight])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        features = tf.io.parse_example(examples, {"signal": tf.io.FixedLenFeature([], tf.float32),
                                                  "nuisance": tf.io.FixedLenFeature([], tf.float32)})
        logit = self.weights[0] * features["signal"] + self.weights[1] * features["nuisance"]
        # Same ranking, other calibration: the unflipped output must be evaluated separately, not copied.
        return {"probability": tf.sigmoid(logit), "probability_single": tf.sigmoid(0.5 * logit)}


def _feature(value) -> tf.train.Feature:
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    if isinstance(value, float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _write_examples(uri: str) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    columns: Dict[str, list] = {"dataset": [], "label": [], "signal": [], "nuisance": []}
    records = []
    for dataset, count, malignant in DATASETS:
        for index in range(count):
            label = int(index < round(count * malignant))
            signal = float(np.float32(rng.normal(2 * label - 1, 1.0)))
            nuisance = float(np.float32(rng.normal(0.0, 1.0)))
            for key, value in (("dataset", dataset), ("label", label), ("signal", signal), ("nuisance", nuisance)):
                columns[key].append(value)
            records.append(tf.train.Example(features=tf.train.Features(feature={
                "label": _feature(label), "signal": _feature(signal), "nuisance": _feature(nuisance),
                "dataset": _feature(dataset.encode()), "density": _feature(1 + index % 4),
                "view": _feature(b"CC" if index % 2 else b"MLO"), "laterality": _feature(b"L" if index % 3 else b"R"),
                "abnormality_type": _feature(b"mass" if label else b"none"),
            })).SerializeToString())
    os.makedirs(os.path.join(uri, f"Split-{SPLIT}"))
    with tf.io.TFRecordWriter(os.path.join(uri, f"Split-{SPLIT}", "data_tfrecord-00000-of-00001.gz"),
                              "GZIP") as writer:
        for record in records:
            writer.write(record)
    return {key: np.asarray(values) for key, values in columns.items()}


def mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    greater = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(greater / (len(positives) * len(negatives)))


def expected_auc(columns: Dict[str, np.ndarray], model: str, dataset: Optional[str] = None) -> float:
    signal_weight, nuisance_weight = MODELS[model]
    chosen = np.ones(len(columns["label"]), bool) if dataset is None else columns["dataset"] == dataset
    scores = signal_weight * columns["signal"][chosen] + nuisance_weight * columns["nuisance"][chosen]
    return mann_whitney_auc(columns["label"][chosen], scores)


def _artifact(artifact_type, uri: str, artifact_id: int = 0):
    artifact = artifact_type()
    artifact.uri = uri
    artifact.id = artifact_id
    os.makedirs(uri, exist_ok=True)
    return artifact


class Run:
    """Artifacts shared by the tests: examples, models, and one evaluation per scenario."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.examples = _artifact(standard_artifacts.Examples, os.path.join(root, "examples"), 1)
        self.examples.split_names = artifact_utils.encode_split_names([SPLIT])
        self.columns = _write_examples(self.examples.uri)
        self.examples.set_string_custom_property("split_counts", json.dumps(SPLIT_COUNTS))
        for key, value in (("ingested", 2070), ("quarantined", 3), ("excluded", 5)):
            self.examples.set_int_custom_property(key, value)
        self.models = {}
        for name, weights in MODELS.items():
            model = _artifact(standard_artifacts.Model, os.path.join(root, "models", name), MODEL_IDS[name])
            module = _ExamplesModel(*weights)
            tf.saved_model.save(module, os.path.join(model.uri, "Format-Serving"),
                                signatures={"serving_examples": module.serving_examples})
            self.models[name] = model
        self.evaluations = {
            "good": self.evaluate("good"),
            "inverted": self.evaluate("inverted"),
            "worse_vs_good": self.evaluate("worse", baseline="good"),
        }

    def evaluate(self, model: str, baseline: Optional[str] = None, eval_config=None) -> standard_artifacts.ModelEvaluation:
        name = model if baseline is None else f"{model}_vs_{baseline}"
        evaluation = _artifact(standard_artifacts.ModelEvaluation, os.path.join(self.root, "evaluations", name), 100)
        inputs = {"examples": [self.examples], "model": [self.models[model]]}
        if baseline is not None:
            inputs["baseline_model"] = [self.models[baseline]]
        # Confidence intervals (jackknife) multiply TFMA's work about twentyfold; the dedicated test turns them on.
        eval_config = eval_config or build_eval_config(EvaluationConfig(compute_confidence_intervals=False),
                                                       with_baseline=True)
        evaluator_executor.Executor().Do(
            inputs,
            {"evaluation": [evaluation],
             "blessing": [_artifact(standard_artifacts.ModelBlessing, evaluation.uri + "_evaluator_blessing")]},
            {"eval_config": proto_utils.proto_to_json(eval_config), "example_splits": json.dumps([SPLIT])})
        return evaluation

    def gate(self, evaluation: str, model: str, config: EvaluationConfig = CONFIG, baseline: Optional[str] = None,
             tag: str = "") -> standard_artifacts.ModelBlessing:
        blessing = _artifact(standard_artifacts.ModelBlessing,
                             os.path.join(self.root, "blessings", f"{evaluation}{tag}"), 200 + MODEL_IDS[model])
        inputs = {"evaluation": [self.evaluations[evaluation]], "model": [self.models[model]],
                  "baseline_model": [self.models[baseline]] if baseline else []}
        gate_executor.Executor().Do(inputs, {"blessing": [blessing]},
                                    {gate_executor.EVALUATION_CONFIG_KEY: json.dumps(config.to_dict())})
        return blessing

    def push(self, model: str, blessing: standard_artifacts.ModelBlessing, base_directory: str):
        pushed = _artifact(standard_artifacts.PushedModel, os.path.join(self.root, "pushed", model), 300)
        destination = tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=base_directory))
        pusher_executor.Executor().Do(
            {"model": [self.models[model]], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
            {"push_destination": proto_utils.proto_to_json(destination)})
        return pushed


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    return Run(str(tmp_path_factory.mktemp("gate_e2e")))


def _gates(blessing) -> Dict[str, GateResult]:
    return {gate.name: gate for gate in read_gate_report(blessing.uri).gates}


@pytest.mark.e2e
def test_good_model_is_blessed_the_tfx_way_and_the_standard_pusher_pushes_it(run, tmp_path):
    blessing = run.gate("good", "good", tag="_pushed")
    report = read_gate_report(blessing.uri)
    assert report.blessed and report.reasons == []
    gates = _gates(blessing)
    assert gates["overall_auc"].status == "passed"
    assert gates["overall_auc"].value == pytest.approx(expected_auc(run.columns, "good"), abs=0.005)
    assert gates["overall_auc"].margin == pytest.approx(gates["overall_auc"].value - 0.8)
    assert (gates["overall_auc"].example_count, gates["overall_auc"].positives) == (250, 84)
    for dataset in ("cbis-ddsm", "inbreast"):
        gate = gates[f"dataset_auc[{dataset}]"]
        assert gate.status == "passed"
        assert gate.value == pytest.approx(expected_auc(run.columns, "good", dataset), abs=0.005)
    assert gates["auc_drop_vs_baseline"].status == "skipped"
    assert "no blessed baseline" in gates["auc_drop_vs_baseline"].detail
    # TFX's conventions, as the Evaluator writes them.
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert not os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("current_model_id") == MODEL_IDS["good"]
    assert blessing.get_string_custom_property("current_model") == run.models["good"].uri

    base_directory = str(tmp_path / "serving" / "mammo")
    pushed = run.push("good", blessing, base_directory)
    assert pushed.get_int_custom_property("pushed") == 1
    version = pushed.get_string_custom_property("pushed_version")
    assert list_complete_versions(base_directory) == [int(version)]


@pytest.mark.e2e
def test_inverted_model_is_refused_with_the_reason_and_not_pushed(run, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        blessing = run.gate("inverted", "inverted")
    report = read_gate_report(blessing.uri)
    assert not report.blessed
    overall = _gates(blessing)["overall_auc"]
    assert overall.status == "failed" and overall.blocks_blessing
    assert overall.value == pytest.approx(expected_auc(run.columns, "inverted"), abs=0.005)
    assert overall.value < 0.2
    assert overall.margin == pytest.approx(overall.value - 0.8)
    assert any(reason.startswith("overall_auc: failed") for reason in report.reasons)
    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 0
    assert "overall_auc" in blessing.get_string_custom_property("blessing_message")
    # One log line per gate, with the shortfall.
    gate_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ModelGate gate ")]
    assert len(gate_lines) == len(report.gates)
    assert any("overall_auc" in line and f"FAILED by {0.8 - overall.value:.4f}" in line for line in gate_lines)

    base_directory = str(tmp_path / "serving" / "mammo")
    pushed = run.push("inverted", blessing, base_directory)
    assert pushed.get_int_custom_property("pushed") == 0
    assert list_complete_versions(base_directory) == []


@pytest.mark.e2e
def test_one_class_slice_is_insufficient_not_failed_and_blocks_only_when_configured(run):
    with_mias = dataclasses.replace(CONFIG, min_dataset_auc={**CONFIG.min_dataset_auc, "mias": 0.7})
    blessing = run.gate("good", "good", config=with_mias, tag="_mias_blocking")
    mias = _gates(blessing)["dataset_auc[mias]"]
    # TFMA reports AUC 0.0 for the one-class slice; the gate does not judge it.
    assert mias.value == 0.0
    assert mias.status == "insufficient" and mias.margin is None
    assert (mias.example_count, mias.positives, mias.negatives) == (40, 0, 40)
    assert "0 positive" in mias.detail
    assert mias.blocks_blessing
    assert not read_gate_report(blessing.uri).blessed

    lenient = dataclasses.replace(with_mias, insufficient_blocks_blessing=False)
    blessing = run.gate("good", "good", config=lenient, tag="_mias_lenient")
    mias = _gates(blessing)["dataset_auc[mias]"]
    assert mias.status == "insufficient" and not mias.blocks_blessing
    assert read_gate_report(blessing.uri).blessed


@pytest.mark.e2e
def test_too_small_slice_is_insufficient_and_an_insufficient_overall_slice_always_blocks(run):
    strict = dataclasses.replace(CONFIG, min_slice_size=100, insufficient_blocks_blessing=False)
    gates = _gates(run.gate("good", "good", config=strict, tag="_small"))
    assert gates["dataset_auc[inbreast]"].status == "insufficient"
    assert "90 examples" in gates["dataset_auc[inbreast]"].detail
    assert gates["dataset_auc[cbis-ddsm]"].status == "passed"

    impossible = dataclasses.replace(strict, min_slice_size=1000)
    blessing = run.gate("good", "good", config=impossible, tag="_overall_small")
    overall = _gates(blessing)["overall_auc"]
    assert overall.status == "insufficient" and overall.blocks_blessing
    assert not read_gate_report(blessing.uri).blessed


@pytest.mark.e2e
def test_gate_on_a_dataset_absent_from_the_run_is_skipped_and_says_so(run):
    with_folder = dataclasses.replace(CONFIG, min_dataset_auc={**CONFIG.min_dataset_auc, "folder": 0.99})
    blessing = run.gate("good", "good", config=with_folder, tag="_folder")
    folder = _gates(blessing)["dataset_auc[folder]"]
    assert folder.status == "skipped" and not folder.blocks_blessing
    assert "no examples of dataset 'folder'" in folder.detail
    assert read_gate_report(blessing.uri).blessed


@pytest.mark.e2e
def test_worse_model_is_refused_for_its_drop_against_the_blessed_baseline(run):
    blessing = run.gate("worse_vs_good", "worse", baseline="good")
    gates = _gates(blessing)
    worse_auc, good_auc = expected_auc(run.columns, "worse"), expected_auc(run.columns, "good")
    assert good_auc - worse_auc > 0.02
    # Good enough on its own bounds, but worse than what is in production.
    assert gates["overall_auc"].status == "passed"
    drop = gates["auc_drop_vs_baseline"]
    assert drop.status == "failed" and drop.blocks_blessing
    assert drop.value == pytest.approx(worse_auc - good_auc, abs=0.005)
    assert drop.bound == -0.01
    assert drop.margin == pytest.approx(drop.value + 0.01)
    report = read_gate_report(blessing.uri)
    assert not report.blessed and report.baseline_evaluated
    assert [reason.split(":")[0] for reason in report.reasons] == ["auc_drop_vs_baseline"]
    assert blessing.get_int_custom_property("baseline_model_id") == MODEL_IDS["good"]
    assert blessing.get_int_custom_property("current_model_id") == MODEL_IDS["worse"]

    tolerant = dataclasses.replace(CONFIG, max_auc_drop=0.2)
    assert read_gate_report(
        run.gate("worse_vs_good", "worse", config=tolerant, baseline="good", tag="_tolerant").uri).blessed


@pytest.mark.e2e
def test_gate_refuses_an_evaluation_that_disagrees_with_its_baseline_input(run):
    with pytest.raises(ValueError, match="baseline"):
        run.gate("worse_vs_good", "worse", tag="_no_baseline_input")


@pytest.mark.e2e
def test_latest_blessed_model_strategy_picks_the_model_the_gate_blessed(run):
    blessings = [run.gate("good", "good", tag="_resolver"), run.gate("inverted", "inverted", tag="_resolver")]
    strategy = tfx.dsl.experimental.LatestBlessedModelStrategy()
    resolved = strategy.resolve_artifacts(None, {"model": [run.models["inverted"], run.models["good"]],
                                                 "model_blessing": blessings})
    assert [model.id for model in resolved["model"]] == [MODEL_IDS["good"]]
    assert resolved["model_blessing"][0].uri == blessings[0].uri


def _write_card(run: Run, evaluation: str, model: str, blessing, pushed) -> ModelCard:
    card = _artifact(ModelCard, os.path.join(run.root, "cards", f"{model}_{pushed.id}"), 400)
    card_executor.Executor().Do(
        {"model": [run.models[model]], "evaluation": [run.evaluations[evaluation]], "blessing": [blessing],
         "examples": [run.examples], "pushed_model": [pushed]},
        {"model_card": [card]},
        {"profile": json.dumps({"profile": "test", "evaluation": {"min_overall_auc": 0.8}}), "model_name": "mammo",
         "split": SPLIT})
    return card


@pytest.mark.e2e
def test_model_card_goes_beside_the_pushed_version_without_disturbing_the_serving_layout(run, tmp_path):
    blessing = run.gate("good", "good", tag="_card")
    base_directory = str(tmp_path / "serving" / "mammo")
    pushed = run.push("good", blessing, base_directory)
    version = pushed.get_string_custom_property("pushed_version")
    card_artifact = _write_card(run, "good", "good", blessing, pushed)

    serving_extras = os.path.join(base_directory, version, "assets.extra")
    assert card_artifact.get_string_custom_property("serving_copy") == serving_extras
    assert sorted(os.listdir(serving_extras)) == ["model_card.json", "model_card.md"]
    assert os.listdir(base_directory) == [version]
    assert list_complete_versions(base_directory) == [int(version)]
    with open(os.path.join(serving_extras, "model_card.json")) as handle:
        card = json.load(handle)
    with open(os.path.join(card_artifact.uri, "model_card.json")) as handle:
        assert json.load(handle) == card

    assert card["decision"] == {"blessed": True, "reasons": [], "pushed": True, "version": version,
                                "serving_path": os.path.join(base_directory, version)}
    assert card["data"] == {"split_counts": SPLIT_COUNTS, "ingested": 2070, "quarantined": 3, "excluded": 5}
    assert card["profile"] == {"profile": "test", "evaluation": {"min_overall_auc": 0.8}}
    assert {name: ref["id"] for name, ref in card["lineage"].items() if ref} == {
        "model": MODEL_IDS["good"], "evaluation": 100, "blessing": blessing.id, "examples": 1, "pushed_model": 300}
    assert [gate["name"] for gate in card["gates"]] == [
        "overall_auc", "dataset_auc[cbis-ddsm]", "dataset_auc[inbreast]", "auc_drop_vs_baseline"]
    rows = {(row["output"], row["slice"]): row for row in card["evaluation"]["slices"]}
    assert rows[("probability", "Overall")]["auc"] == pytest.approx(expected_auc(run.columns, "good"), abs=0.005)
    # Both outputs rank identically here, so their AUCs agree while their calibration differs.
    assert rows[("probability_single", "Overall")]["auc"] == pytest.approx(rows[("probability", "Overall")]["auc"])
    assert rows[("probability_single", "Overall")]["calibration"] != rows[("probability", "Overall")]["calibration"]
    assert rows[("probability", "dataset=mias")]["sufficient"] is False
    assert ("probability", "dataset=inbreast, density=2") in rows  # TFMA orders crossed columns by name
    assert set(rows[("probability", "dataset=cbis-ddsm")]["fall_out"]) == {"0.25", "0.5", "0.75"}
    assert rows[("probability", "dataset=mias")]["miss_rate"]["0.5"] is None  # no positives: undefined, not 0

    with open(os.path.join(serving_extras, "model_card.md")) as handle:
        markdown = handle.read()
    assert f"**BLESSED**, pushed as version {version}" in markdown
    assert "| dataset | eval | test | train |" in markdown and "| cbis-ddsm | 120 | 120 | 900 |" in markdown
    assert "| overall_auc | image | probability | Overall | auc |" in markdown
    # A one-class slice's AUC (TFMA: 0.0) is shown in parentheses: reported, not judged.
    assert "| probability | dataset=mias | 40 | 0 | 40 | (0.000) |" in markdown


@pytest.mark.e2e
def test_model_card_of_a_refused_model_records_why_and_stays_in_its_artifact(run, tmp_path):
    blessing = run.gate("inverted", "inverted", tag="_card")
    pushed = run.push("inverted", blessing, str(tmp_path / "serving" / "mammo"))
    card_artifact = _write_card(run, "inverted", "inverted", blessing, pushed)
    assert not card_artifact.has_custom_property("serving_copy")
    assert card_artifact.get_int_custom_property("pushed") == 0
    with open(os.path.join(card_artifact.uri, "model_card.json")) as handle:
        card = json.load(handle)
    assert card["decision"]["blessed"] is False and card["decision"]["pushed"] is False
    assert card["decision"]["reasons"][0].startswith("overall_auc: failed")
    with open(os.path.join(card_artifact.uri, "model_card.md")) as handle:
        assert "**NOT BLESSED**, not pushed." in handle.read()


@pytest.mark.e2e
def test_confidence_intervals_reach_the_gate_results(run):
    """A trimmed config (gated output, AUC and counts, overall and dataset slices): jackknife over the full metric
    set takes minutes."""
    full = build_eval_config(EvaluationConfig(compute_confidence_intervals=True), with_baseline=True)
    trimmed = tfma.EvalConfig()
    trimmed.CopyFrom(full)
    del trimmed.slicing_specs[2:]
    kept = [m for m in trimmed.metrics_specs[0].metrics if m.class_name in ("AUC", "ExampleCount",
                                                                           "ConfusionMatrixAtThresholds")]
    del trimmed.metrics_specs[0].metrics[:]
    trimmed.metrics_specs[0].metrics.extend(kept)
    trimmed.metrics_specs[0].output_names[:] = [GATED_OUTPUT]
    run.evaluations["good_ci"] = run.evaluate("good", eval_config=trimmed)
    gates = _gates(run.gate("good_ci", "good", tag="_ci"))
    for name in ("overall_auc", "dataset_auc[cbis-ddsm]"):
        lower, upper = gates[name].confidence_interval
        assert lower < gates[name].value < upper
        assert upper - lower < 0.5


def test_model_card_lists_the_input_limits_the_export_records(tmp_path):
    model = _artifact(standard_artifacts.Model, str(tmp_path / "model"), 7)
    assert card_executor.export_input_limits(model) is None  # a model trainer_module did not export
    keras_model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    save_keras_copy(keras_model, os.path.join(model.uri, "Format-Serving"), load_config("test").patch_training,
                    ImageLimits(max_side=4096))
    limits = card_executor.export_input_limits(model)
    assert limits == {"max_bytes": 32 * 1024 * 1024, "max_pixels": 40_000_000, "max_side": 4096}
    lines = input_limits_lines(limits)
    assert lines[0] == "## Input limits"
    assert "| `serving.image.max_side` | 4096 |" in lines
    assert "INVALID_ARGUMENT (HTTP 400)" in " ".join(lines)


def test_model_card_records_the_training_seed_and_op_determinism_of_the_export(tmp_path):
    model = _artifact(standard_artifacts.Model, str(tmp_path / "model"), 7)
    assert card_executor.export_training_record(model) is None  # a model trainer_module did not export
    assert training_lines(None)[-2] == "The export records no training seed."
    config = load_config("test", overrides=["reproducibility.seed=41", "reproducibility.deterministic_ops=false"])
    keras_model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    save_keras_copy(keras_model, os.path.join(model.uri, "Format-Serving"), config.patch_training, ImageLimits(),
                    image_hparams=config.image_training,
                    serving_geometry=ServingGeometry(tuple(config.image_training.image_size), 8, 16))
    record = card_executor.export_training_record(model)
    assert record == {"patch classifier": {"seed": 41, "deterministic_ops": False},
                      "whole-image classifier": {"seed": 41, "deterministic_ops": False}}
    lines = training_lines(record)
    assert lines[0] == "## Reproducibility"
    assert "| whole-image classifier | 41 | off |" in lines
