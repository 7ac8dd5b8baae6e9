"""Datasets held out of training (`--external`): every patient of such a dataset is test, never trains, validates,
calibrates or enters the Transform mean; the gate judges it at evaluation.min_external_auc and the outputs mark it."""
import json
import os

import pytest

from mammo_tfx import names, synth
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.gates import FAILED, PASSED, GateSource, SliceFigures, apply_gates, external_gate_name
from mammo_tfx.evaluation.unit_results import read_unit_evaluation
from mammo_tfx.ingest.splits import (ANY_SCAN, MALIGNANT, OTHER, TEST_SPLIT, SplitNeeds, assign_splits,
                                     summarise_patient)
from mammo_tfx.report.slices import slice_label
from pipeline.config import load_config
from pipeline.outputs import collect_outputs, open_store
from pipeline.runners import run_local
from pipeline.sources import parse_sources
from tests.conftest import feature, read_split

BUCKETS = [("train", 6), ("eval", 2), ("test", 2)]


def _patients(dataset, count, external=()):
    return [summarise_patient(f"{dataset}-{index}", [(dataset, "none", (ANY_SCAN, MALIGNANT if index % 2 else OTHER))],
                              external) for index in range(count)]


def test_external_patients_all_go_to_test_and_the_minimums_never_move_them():
    patients = _patients("cbis-ddsm", 3) + _patients("mias", 12, external=("mias",))
    needs = SplitNeeds(examples=("train", "eval", "test"), both_classes=("eval", "test"))
    assignment = assign_splits(patients, BUCKETS, needs)
    assert {assignment.splits[p.key] for p in patients if p.dataset == "mias"} == {TEST_SPLIT}
    assert all(move.dataset != "mias" for move in assignment.moves)
    # Without the mark the same patients are hashed over every split.
    plain = assign_splits(_patients("mias", 12), BUCKETS, needs)
    assert set(plain.splits.values()) != {TEST_SPLIT}


def _source(external_auc):
    figures = {(): SliceFigures(count=40, positives=20, negatives=20, auc=0.9),
               ((names.DATASET, "mias"),): SliceFigures(count=40, positives=20, negatives=20, auc=external_auc)}
    return GateSource(unit="image", uri="memory", candidate=figures, baseline_evaluated=False)


@pytest.mark.parametrize("auc, status, blessed", [(0.75, PASSED, True), (0.6, FAILED, False)])
def test_an_external_dataset_is_gated_at_min_external_auc(auc, status, blessed):
    config = EvaluationConfig(min_overall_auc=0.5, min_dataset_auc={}, min_slice_size=1, min_examples_per_class=1,
                              external_datasets=("mias",), min_external_auc=0.7)
    report = apply_gates(_source(auc), config)
    gate = next(gate for gate in report.gates if gate.name == external_gate_name("mias"))
    assert (gate.status, gate.bound, report.blessed) == (status, 0.7, blessed)
    assert report.settings["external_datasets"] == ["mias"]


def test_external_layouts_join_the_configuration_and_are_marked_in_slice_labels(tmp_path):
    for layout in ("cbis-ddsm", "mias"):
        (tmp_path / layout).mkdir()
    config, sources = parse_sources(load_config("test"), [f"cbis-ddsm={tmp_path / 'cbis-ddsm'}"],
                                    [f"mias={tmp_path / 'mias'}"])
    assert config.ingest.external_datasets == ("mias",) == config.evaluation.external_datasets
    assert [s.dataset for s in sources] == ["cbis-ddsm", "mias"]
    assert slice_label(((names.DATASET, "mias"),), config.evaluation.external_datasets) == "dataset=mias (external)"
    assert slice_label(((names.DATASET, "cbis-ddsm"),), ("mias",)) == "dataset=cbis-ddsm"
    with pytest.raises(ValueError, match="both --data and --external"):
        parse_sources(load_config("test"), [f"mias={tmp_path / 'mias'}"], [f"mias={tmp_path / 'mias'}"])
    with pytest.raises(ValueError, match="no --data or --external passes"):
        parse_sources(load_config("test", overrides=["ingest.external_datasets=[inbreast]"]),
                      [f"cbis-ddsm={tmp_path / 'cbis-ddsm'}"])


@pytest.mark.e2e
def test_records_of_an_external_dataset_reach_only_the_test_split_and_are_gated_as_external(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    for layout, patients in (("cbis-ddsm", 6), ("inbreast", 4), ("mias", 4)):
        synth.generate(layout, root / layout, patients=patients, seed=11, scale=0.25)
    config, sources = parse_sources(load_config("test"), [f"cbis-ddsm={root / 'cbis-ddsm'}",
                                                          f"inbreast={root / 'inbreast'}"], [f"mias={root / 'mias'}"])
    layout, _ = run_local(config, sources, str(tmp_path_factory.mktemp("run")), show_progress=False)
    outputs = collect_outputs(layout.metadata_path)
    datasets = {split: {feature(example, names.DATASET) for example in read_split(outputs.examples_uri, split)}
                for split in ("train", "eval", "test")}
    assert "mias" not in datasets["train"] | datasets["eval"]
    assert "mias" in datasets["test"]
    assert outputs.ingest_summary["per_split"]["test"]["mias"] == outputs.ingest_summary["per_dataset"]["mias"][
        "ingested"]
    # The Transform mean is analysed on train only; the Trainers validate (and the export calibrates) on eval.
    executions = _component_properties(layout.metadata_path)
    assert json.loads(executions["Transform"]["splits_config"]) == {"analyze": ["train"]}
    for trainer in ("Trainer_patch", "Trainer_image"):
        assert json.loads(executions[trainer]["train_args"])["splits"] == ["train"]
        assert json.loads(executions[trainer]["eval_args"])["splits"] == ["eval"]
    gates = json.load(open(os.path.join(outputs.blessing_uri, names.GATE_RESULTS_FILE)))
    external = next(gate for gate in gates["gates"] if gate["name"] == external_gate_name("mias"))
    assert external["slice"] == "dataset=mias" and external["bound"] == config.evaluation.min_external_auc
    assert read_unit_evaluation(outputs.unit_evaluation_uri).external_datasets == ("mias",)


def _component_properties(metadata_path):
    """Component id -> the exec properties of its last execution, as MLMD records them (text values)."""
    store = open_store(metadata_path)
    found = {}
    for context in store.get_contexts_by_type("node"):
        executions = store.get_executions_by_context(context.id)
        if executions:
            found[context.name.split(".")[-1]] = {key: value.string_value
                                                  for key, value in executions[-1].custom_properties.items()}
    return found
