"""PushedBaseline's executor on a serving directory laid out as the Pusher writes it: the newest complete version
becomes the baseline Model; none, an artifact that holds no model, which the consumers leave out."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx.types import Channel, standard_artifacts

from components.pushed_baseline import executor
from components.pushed_baseline.component import PushedBaseline


def _version(base: Path, version: str, complete: bool = True) -> Path:
    """A version folder as the Pusher leaves it; `saved_model.pb` is the file it copies last."""
    folder = base / version
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.index").write_bytes(b"index of " + version.encode())
    (folder / "assets.extra").mkdir()
    (folder / "assets.extra" / "model_card.json").write_text('{"version": "%s"}' % version)
    if complete:
        (folder / "saved_model.pb").write_bytes(b"graph of " + version.encode())
    return folder


def _find(base: Path, out: Path) -> standard_artifacts.Model:
    baseline = standard_artifacts.Model()
    baseline.uri = str(out)
    out.mkdir(parents=True)
    model = standard_artifacts.Model()
    model.uri = str(out.parent / "candidate")
    executor.Executor().Do({"model": [model]}, {"baseline_model": [baseline]},
                           {"push_base_directory": str(base)})
    return baseline


def test_the_newest_complete_version_becomes_the_baseline(tmp_path: Path) -> None:
    base = tmp_path / "serving" / "mammo"
    _version(base, "1700000000")
    _version(base, "1700000100")
    _version(base, "1700000200", complete=False)  # the Pusher is still copying it
    (base / "1700000300.tmp").mkdir()
    baseline = _find(base, tmp_path / "baseline")

    served = tmp_path / "baseline" / "Format-Serving"
    assert (served / "saved_model.pb").read_bytes() == b"graph of 1700000100"
    assert (served / "variables" / "variables.index").read_bytes() == b"index of 1700000100"
    assert (served / "assets.extra" / "model_card.json").exists()
    assert baseline.get_int_custom_property(executor.FOUND_PROPERTY) == 1
    assert baseline.get_string_custom_property(executor.VERSION_PROPERTY) == "1700000100"
    assert baseline.get_string_custom_property(executor.SOURCE_PROPERTY) == str(base / "1700000100")
    assert executor.holds_model(baseline)
    assert executor.baseline_models([baseline]) == [baseline]


def test_without_a_pushed_version_the_artifact_holds_no_model(tmp_path: Path) -> None:
    _version(tmp_path / "empty", "1700000000", complete=False)
    for base in (tmp_path / "missing", tmp_path / "empty"):
        baseline = _find(base, tmp_path / f"baseline_{base.name}")
        assert baseline.get_int_custom_property(executor.FOUND_PROPERTY) == 0
        assert not baseline.has_custom_property(executor.VERSION_PROPERTY)
        assert os.listdir(baseline.uri) == []
        assert not executor.holds_model(baseline)
        assert executor.baseline_models([baseline]) == []
    assert executor.baseline_models(None) == []


def test_the_component_takes_the_candidate_and_the_push_directory() -> None:
    model = standard_artifacts.Model
    component = PushedBaseline(model=Channel(type=model), push_base_directory="gs://bucket/serving/mammo")
    assert component.exec_properties == {"push_base_directory": "gs://bucket/serving/mammo"}
    assert component.outputs["baseline_model"].type is model
    assert component.inputs["model"].type is model


def test_the_run_prints_which_version_the_candidate_is_gated_against(tmp_path: Path) -> None:
    from pipeline.evaluation import BASELINE_ID
    from pipeline.progress import SUMMARISERS

    base = tmp_path / "serving" / "mammo"
    _version(base, "1700000100")
    found = _find(base, tmp_path / "found").mlmd_artifact
    none = _find(tmp_path / "nothing", tmp_path / "none").mlmd_artifact
    assert SUMMARISERS[BASELINE_ID]({"baseline_model": found}) == \
        f"baseline: pushed version {base / '1700000100'}"
    assert SUMMARISERS[BASELINE_ID]({"baseline_model": none}) == "no pushed version yet: gated without a baseline"


def test_a_version_folder_or_a_bare_export_is_taken_as_it_is(tmp_path: Path) -> None:
    """A fine-tune run's base model may be named by one version folder, or be an export never pushed."""
    base = tmp_path / "serving" / "mammo"
    _version(base, "1700000000")
    _version(base, "1700000100")
    baseline = _find(base / "1700000000", tmp_path / "from_version")
    assert (tmp_path / "from_version" / "Format-Serving" / "saved_model.pb").read_bytes() == b"graph of 1700000000"
    assert baseline.get_string_custom_property(executor.VERSION_PROPERTY) == "1700000000"

    export = _version(tmp_path / "exports", "model")
    baseline = _find(export, tmp_path / "from_export")
    assert (tmp_path / "from_export" / "Format-Serving" / "saved_model.pb").read_bytes() == b"graph of model"
    assert baseline.get_string_custom_property(executor.VERSION_PROPERTY) == ""
    assert baseline.get_string_custom_property(executor.SOURCE_PROPERTY) == str(export)
