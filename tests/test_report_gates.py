"""The gate results document (written and read by mammo_tfx.evaluation.gates), gate-to-slice matching in the
report and the insufficient-slice rule."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mammo_tfx import names
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.documents import json_safe
from mammo_tfx.evaluation.gates import GateReport, GateResult, read_gate_report, write_gate_report
from mammo_tfx.evaluation.sufficiency import SufficiencyRule
from mammo_tfx.evaluation.tfma_results import is_slice_named, slice_name
from mammo_tfx.report.gates import gate_status_for_slice
from mammo_tfx.report.slices import make_slice_key, slice_label, slice_sort_key

CROSS = make_slice_key([("density", 3), ("dataset", "mias")])


def _gate(slice_key: tuple, status: str) -> GateResult:
    return GateResult(name="auc", unit="image", output=names.PROBABILITY, slice=slice_name(slice_key), metric="auc",
                      bound=0.7, status=status, blocks_blessing=False, detail="", value=0.8)


def test_slice_keys_use_display_column_order_and_sort_overall_first() -> None:
    assert CROSS == (("dataset", "mias"), ("density", 3))
    assert slice_label(CROSS) == "dataset=mias & density=3"
    assert slice_label(()) == "Overall"
    keys = [CROSS, (("density", 10),), (("view", "CC"),), (), (("density", 2),), (("dataset", "inbreast"),)]
    assert sorted(keys, key=slice_sort_key) == [
        (), (("dataset", "inbreast"),), (("density", 2),), (("density", 10),), (("view", "CC"),), CROSS]
    # Population slices come after density and before the acquisition ones; an age cross shows the dataset first.
    age_cross = make_slice_key([("age_group", "70+"), ("dataset", "rsna")])
    assert slice_label(age_cross) == "dataset=rsna & age_group=70+"
    population = [(("view", "MLO"),), (("implant", "yes"),), (("device", "29"),), (("site", "1"),),
                  (("age_group", "<50"),), (("density", 1),)]
    assert sorted(population, key=slice_sort_key) == population[::-1]
    bands = [(("age_group", band),) for band in ("<50", "50-59", "60-69", "70+", "unknown")]
    assert sorted(bands[::-1], key=slice_sort_key) == bands
    sites = [(("site", site),) for site in ("2", "10", "north", "unknown")]
    assert sorted(sites[::-1], key=slice_sort_key) == sites


@pytest.mark.parametrize("gate_key", [(("dataset", "mias"), ("density", 3)), (("density", 3), ("dataset", "mias"))])
def test_gate_slice_names_match_the_cross_slice_in_any_column_order(gate_key: tuple) -> None:
    assert is_slice_named(slice_name(gate_key), CROSS)
    assert not is_slice_named(slice_name((("dataset", "mias"),)), CROSS)
    assert not is_slice_named(slice_name(gate_key), (("dataset", "mias"), ("density", 2)))


def test_gate_slice_name_of_the_overall_slice() -> None:
    assert slice_name(()) == "Overall"
    assert is_slice_named("Overall", ())
    assert not is_slice_named("Overall", (("dataset", "mias"),))
    assert gate_status_for_slice([_gate((), "failed")], ()) == "failed"


def test_slice_status_is_its_most_serious_gate() -> None:
    inbreast = (("dataset", "inbreast"),)
    statuses = ["skipped", "passed", "insufficient", "failed"]
    for count in range(1, len(statuses) + 1):
        gates = [_gate(inbreast, status) for status in statuses[:count]]
        assert gate_status_for_slice(gates, inbreast) == statuses[count - 1]
    assert gate_status_for_slice(gates, ()) is None
    assert gate_status_for_slice(gates, (("dataset", "mias"),)) is None


def test_gate_document_round_trips_through_the_blessing_directory(tmp_path: Path) -> None:
    config = EvaluationConfig(min_slice_size=40, min_examples_per_class=3, min_overall_auc=0.75)
    report = GateReport(
        blessed=True, settings=config.gate_settings(), evaluation_uri="eval", baseline_evaluated=False,
        gates=[GateResult(name="overall_auc", unit="image", output=names.PROBABILITY, slice="Overall",
                          metric="auc",
                          value=float("nan"), bound=0.75, status="insufficient", blocks_blessing=False,
                          detail="no positives", margin=-math.inf, confidence_interval=(0.1, 0.9))])
    path = write_gate_report(report, str(tmp_path))
    assert path == str(tmp_path / names.GATE_RESULTS_FILE)
    # Strict JSON: NaN and -inf are written as null.
    written = json.loads(Path(path).read_text())
    assert written == json_safe(report.to_dict())
    assert (written["gates"][0]["value"], written["gates"][0]["margin"]) == (None, None)

    read = read_gate_report(str(tmp_path))  # the blessing directory is enough
    (gate,) = read.gates
    assert (gate.name, gate.output, gate.slice, gate.metric, gate.value, gate.bound, gate.status,
            gate.blocks_blessing, gate.detail, tuple(gate.confidence_interval)) == \
        ("overall_auc", "probability", "Overall", "auc", None, 0.75, "insufficient", False, "no positives",
         (0.1, 0.9))
    assert read.blessed is True and read.reasons == []
    assert read.sufficiency_rule() == SufficiencyRule(min_slice_size=40, min_examples_per_class=3)
    assert read.settings == config.gate_settings()
    assert read_gate_report(path).to_dict() == written


def test_gate_document_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="status"):
        _gate((), "blessed")
    (tmp_path / names.GATE_RESULTS_FILE).write_text(json.dumps({"verdict": "ok"}))
    with pytest.raises(ValueError, match="not a gate results document"):
        read_gate_report(str(tmp_path))


def test_sufficiency_rule_reasons() -> None:
    rule = SufficiencyRule(min_slice_size=20, min_examples_per_class=2)
    assert rule.insufficient_reason(19, 9, 10) == "19 examples < 20"
    assert rule.insufficient_reason(50, 0, 50) == "one class only"
    assert rule.insufficient_reason(50, 1, 49) == "fewer than 2 positives or negatives"
    assert rule.insufficient_reason(50, 2, 48) is None
    # Without confusion matrices the class counts are unknown: only the size rule applies.
    assert rule.insufficient_reason(50, None, None) is None
    assert rule.requirement() == "needs >= 20 examples and >= 2 per class"
    assert EvaluationConfig(min_slice_size=20, min_examples_per_class=2).sufficiency_rule() == rule
