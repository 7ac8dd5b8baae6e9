"""Gate results parsing, gate-to-slice matching and the insufficient-slice rule of the report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mammo_tfx.report.evaluation import SufficiencyRule
from mammo_tfx.report.gates import GATE_RESULTS_FILE, gate_status_for_slice, load_gate_results, parse_gate_results
from mammo_tfx.report.slices import (make_slice_key, normalise_gate_slice, normalise_slice, slice_label,
                                     slice_sort_key)

CROSS = make_slice_key([("density", 3), ("dataset", "mias")])


def _gate(slice_: object, status: str) -> dict:
    return {"gate": "auc", "slice": slice_, "value": 0.8, "bound": 0.7, "status": status, "reason": ""}


def test_slice_keys_use_display_column_order_and_sort_overall_first() -> None:
    assert CROSS == (("dataset", "mias"), ("density", 3))
    assert slice_label(CROSS) == "dataset=mias & density=3"
    assert slice_label(()) == "Overall"
    keys = [CROSS, (("density", 10),), (("view", "CC"),), (), (("density", 2),), (("dataset", "inbreast"),)]
    assert sorted(keys, key=slice_sort_key) == [
        (), (("dataset", "inbreast"),), (("density", 2),), (("density", 10),), (("view", "CC"),), CROSS]


@pytest.mark.parametrize("gate_slice", [
    {"dataset": "MIAS", "density": 3}, "dataset=mias & density=3", "density:3, dataset:mias",
    [["density", 3], ["dataset", "mias"]], "dataset=mias x density=3",
])
def test_gate_slice_forms_match_the_cross_slice(gate_slice: object) -> None:
    assert normalise_gate_slice(gate_slice) == normalise_slice(CROSS)


@pytest.mark.parametrize("overall", [None, "", "overall", "Overall", {}, []])
def test_gate_slice_forms_of_the_overall_slice(overall: object) -> None:
    assert normalise_gate_slice(overall) == normalise_slice(()) == ()


def test_unreadable_gate_slice_matches_nothing() -> None:
    gates = parse_gate_results([_gate("all scans of mias", "failed")]).gates
    assert gates[0].normalised_slice is None
    assert gate_status_for_slice(gates, (("dataset", "mias"),)) is None


def test_slice_status_is_its_most_serious_gate() -> None:
    inbreast = (("dataset", "inbreast"),)
    statuses = ["skipped", "passed", "insufficient", "failed"]
    for count in range(1, len(statuses) + 1):
        gates = parse_gate_results([_gate("dataset=inbreast", status) for status in statuses[:count]]).gates
        assert gate_status_for_slice(gates, inbreast) == statuses[count - 1]
    assert gate_status_for_slice(gates, ()) is None


def test_gate_document_of_the_model_gate_and_aliases(tmp_path: Path) -> None:
    document = {"blessed": True, "settings": {"min_slice_size": 40, "min_examples_per_class": 3},
                "gates": [{"name": "overall_auc", "output": "probability", "slice": "Overall", "metric": "auc",
                           "value": float("nan"), "bound": 0.75, "status": "Insufficient",
                           "blocks_blessing": False, "detail": "no positives"}]}
    (tmp_path / GATE_RESULTS_FILE).write_text(json.dumps(document))
    report = load_gate_results(str(tmp_path))  # the blessing directory is enough
    (gate,) = report.gates
    assert (gate.gate, gate.output, gate.slice, gate.metric, gate.value, gate.bound, gate.status,
            gate.blocks_blessing, gate.reason) == \
        ("overall_auc", "probability", "Overall", "auc", None, 0.75, "insufficient", False, "no positives")
    assert (report.blessed, report.min_examples, report.min_per_class) == (True, 40, 3)
    # A bare list with the alternative key names: no verdict, no settings.
    bare = parse_gate_results([{"gate": "auc", "slice": {"dataset": "mias"}, "threshold": 0.7,
                                "status": "skipped", "reason": "not evaluated"}])
    assert (bare.blessed, bare.min_examples, bare.gates[0].bound, bare.gates[0].reason) == \
        (None, None, 0.7, "not evaluated")
    assert bare.gates[0].slice == "dataset=mias"


def test_gate_document_errors() -> None:
    with pytest.raises(ValueError, match="status"):
        parse_gate_results([_gate("", "blessed")])
    with pytest.raises(ValueError, match="list"):
        parse_gate_results({"verdict": "ok"})


def test_sufficiency_rule_reasons() -> None:
    rule = SufficiencyRule(min_examples=20, min_per_class=2)
    assert rule.insufficient_reason(19, 9, 10) == "19 examples < 20"
    assert rule.insufficient_reason(50, 0, 50) == "one class only"
    assert rule.insufficient_reason(50, 1, 49) == "fewer than 2 positives or negatives"
    assert rule.insufficient_reason(50, 2, 48) is None
    # Without confusion matrices the class counts are unknown: only the size rule applies.
    assert rule.insufficient_reason(50, None, None) is None
