"""The gate unit: every bound of one gate run is checked at `evaluation.gate_unit`, on TFMA's per-image figures or on
the screening evaluation's per-breast figures (a unit_evaluation.json written by the real writer from synthetic
exams), never mixing the two."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tfx.types import standard_artifacts

from components.model_gate import executor as gate_executor
from mammo_tfx import names
from mammo_tfx.evaluation import screening
from mammo_tfx.evaluation.config import GATED_OUTPUT, EvaluationConfig
from mammo_tfx.evaluation.gates import GateReport, evaluate_gates, read_gate_report, write_gate_report
from mammo_tfx.evaluation.tfma_results import EvaluationMetrics, SliceMetrics
from tests.conftest import screening_images, unit_evaluation_document
from tests.test_model_gate_e2e import mann_whitney_auc

DATASETS = {"cbis-ddsm": 300, "inbreast": 260}


def _slice_metrics(images: list) -> SliceMetrics:
    """What TFMA reports for the gated output on these images (AUC, count, a confusion matrix for class counts)."""
    labels, scores = screening.unit_arrays(images)
    matrix = screening.operating_figures(labels, scores, 0.5)
    return SliceMetrics(values={
        "auc": mann_whitney_auc(labels, scores), "example_count": float(len(images)),
        "confusion_matrix_at_thresholds": [{"threshold": 0.5, "true_positives": matrix.tp,
                                            "false_positives": matrix.fp, "true_negatives": matrix.tn,
                                            "false_negatives": matrix.fn}]})


def tfma_metrics(models: dict[str, list]) -> EvaluationMetrics:
    """An in-memory TFMA evaluation of the same images: `candidate`, and `baseline` when given."""
    eval_config = tfma.EvalConfig(model_specs=[tfma.ModelSpec(name=name, is_baseline=name == "baseline")
                                               for name in models])
    by_model_output = {}
    for name, images in models.items():
        slices = {(): _slice_metrics(images)}
        for dataset in DATASETS:
            slices[((names.DATASET, dataset),)] = _slice_metrics(
                [image for image in images if image.slices[names.DATASET] == dataset])
        by_model_output[(name, GATED_OUTPUT)] = slices
    return EvaluationMetrics(uri="tfma-evaluation", by_model_output=by_model_output, eval_config=eval_config)


def _breast_auc(images: list, dataset: str | None = None) -> float:
    chosen = [image for image in images if dataset is None or image.slices[names.DATASET] == dataset]
    return mann_whitney_auc(*screening.unit_arrays(screening.breasts(chosen, screening.BreastRule.MEAN)))


def _image_auc(images: list, dataset: str | None = None) -> float:
    chosen = [image for image in images if dataset is None or image.slices[names.DATASET] == dataset]
    return mann_whitney_auc(*screening.unit_arrays(chosen))


def _config(bound: float, **overrides) -> EvaluationConfig:
    return EvaluationConfig(min_overall_auc=bound, min_dataset_auc={"cbis-ddsm": bound, "inbreast": bound},
                            min_slice_size=30, min_examples_per_class=5, **overrides)


@pytest.mark.parametrize("views_showing", [1, 2])
def test_gate_unit_decides_which_auc_every_bound_reads(views_showing: int, tmp_path: Path) -> None:
    images = screening_images(np.random.default_rng(3), DATASETS, views_showing=views_showing)
    image_auc, breast_auc = _image_auc(images), _breast_auc(images)
    # One view showing the lesion dilutes it in the breast mean; two views average their noise away.
    assert (breast_auc < image_auc - 0.02) if views_showing == 1 else (breast_auc > image_auc + 0.02)
    evaluation = tfma_metrics({"candidate": images})
    units = unit_evaluation_document(str(tmp_path), {"candidate": images})
    bound = (image_auc + breast_auc) / 2
    overall_only = dataclasses.replace(_config(bound), min_dataset_auc={})

    per_image = evaluate_gates(evaluation, overall_only, units)
    per_breast = evaluate_gates(evaluation, dataclasses.replace(overall_only, gate_unit="breast"), units)
    image_gate, breast_gate = per_image.gates[0], per_breast.gates[0]
    assert (image_gate.unit, breast_gate.unit) == ("image", "breast")
    assert image_gate.value == pytest.approx(image_auc) and breast_gate.value == pytest.approx(breast_auc)
    # The same model passes at one unit and fails at the other.
    assert image_gate.status == ("passed" if image_auc > breast_auc else "failed")
    assert breast_gate.status == ("passed" if breast_auc > image_auc else "failed")
    assert per_image.blessed != per_breast.blessed
    # Breasts counted, with the bootstrap interval of the breast AUC.
    breast_count = sum(DATASETS.values())
    assert breast_gate.example_count == breast_count
    assert breast_gate.positives + breast_gate.negatives == breast_count
    assert image_gate.example_count == 2 * breast_count
    assert breast_gate.confidence_interval == units.candidate.figures["breast"][()].auc_interval
    assert breast_gate.detail.startswith(f"{breast_count} breasts, {breast_gate.positives} positive")
    assert per_breast.settings["gate_unit"] == "breast" and per_image.settings["gate_unit"] == "image"
    assert per_breast.evaluation_uri == str(tmp_path)
    assert "[breast probability, Overall]" in breast_gate.log_line()


def test_every_bound_of_a_breast_gate_is_a_breast_figure(tmp_path: Path) -> None:
    images = screening_images(np.random.default_rng(5), DATASETS, views_showing=1)
    units = unit_evaluation_document(str(tmp_path), {"candidate": images})
    # Datasets: pass on images, fail on breasts (bound between the two AUCs of each dataset).
    bounds = {dataset: (_image_auc(images, dataset) + _breast_auc(images, dataset)) / 2 for dataset in DATASETS}
    assert all(_breast_auc(images, d) < bounds[d] < _image_auc(images, d) for d in DATASETS)
    config = EvaluationConfig(gate_unit="breast", min_overall_auc=0.5, min_dataset_auc=bounds, min_slice_size=30,
                              min_examples_per_class=5)
    report = evaluate_gates(tfma_metrics({"candidate": images}), config, units)
    gates = {gate.name: gate for gate in report.gates}
    for dataset in DATASETS:
        gate = gates[f"dataset_auc[{dataset}]"]
        assert (gate.unit, gate.status, gate.example_count) == ("breast", "failed", DATASETS[dataset])
        assert gate.value == pytest.approx(_breast_auc(images, dataset))
    assert {gate.unit for gate in report.gates} == {"breast"}
    assert not report.blessed
    assert evaluate_gates(tfma_metrics({"candidate": images}), dataclasses.replace(config, gate_unit="image"),
                          units).blessed


def test_baseline_comparison_at_breast_level(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    candidate = screening_images(rng, DATASETS, views_showing=2, separation=1.0)
    # The baseline scores the same images with less noise: better at both units.
    baseline = [dataclasses.replace(image, score=float(np.clip(image.score + 0.2 * (image.label - 0.5), 0, 1)))
                for image in candidate]
    units = unit_evaluation_document(str(tmp_path), {"candidate": candidate, "baseline": baseline})
    evaluation = tfma_metrics({"candidate": candidate, "baseline": baseline})
    drop = _breast_auc(candidate) - _breast_auc(baseline)
    image_drop = _image_auc(candidate) - _image_auc(baseline)
    assert drop < -0.02 and abs(drop - image_drop) > 1e-3
    config = _config(0.5, gate_unit="breast", max_auc_drop=0.01)
    gate = {g.name: g for g in evaluate_gates(evaluation, config, units).gates}["auc_drop_vs_baseline"]
    assert (gate.unit, gate.status, gate.blocks_blessing) == ("breast", "failed", True)
    assert gate.value == pytest.approx(drop)  # breast AUCs of both models, not image AUCs
    assert "baseline breast AUC" in gate.detail
    tolerant = dataclasses.replace(config, max_auc_drop=-drop + 0.01)
    assert {g.name: g for g in evaluate_gates(evaluation, tolerant, units).gates}["auc_drop_vs_baseline"].status \
        == "passed"
    # Without a baseline in the unit evaluation the comparison is skipped (first blessing).
    alone = unit_evaluation_document(str(tmp_path / "alone"), {"candidate": candidate})
    skipped = evaluate_gates(tfma_metrics({"candidate": candidate}), config, alone)
    assert skipped.gates[-1].status == "skipped" and not skipped.baseline_evaluated


def test_a_fine_tune_must_beat_its_base_model_not_only_match_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    images = screening_images(rng, DATASETS, views_showing=2, separation=1.0)
    better = [dataclasses.replace(image, score=float(np.clip(image.score + 0.2 * (image.label - 0.5), 0, 1)))
              for image in images]
    must_beat = _config(0.5, gate_unit="image", max_auc_drop=0.01, must_beat_baseline=True)

    def baseline_gate(candidate, baseline, directory: str):
        units = unit_evaluation_document(str(tmp_path / directory), {"candidate": candidate, "baseline": baseline})
        report = evaluate_gates(tfma_metrics({"candidate": candidate, "baseline": baseline}), must_beat, units)
        return {g.name: g for g in report.gates}["auc_drop_vs_baseline"], report.blessed

    # The same model as its base: within max_auc_drop, yet not blessed.
    tie, blessed = baseline_gate(images, images, "tie")
    assert (tie.status, tie.value, tie.bound, blessed) == ("failed", pytest.approx(0.0), 0.0, False)
    assert "must beat it" in tie.detail
    gain, blessed = baseline_gate(better, images, "gain")
    assert gain.status == "passed" and gain.value > 0 and blessed


def test_too_few_breasts_are_insufficient_even_with_enough_images(tmp_path: Path) -> None:
    images = screening_images(np.random.default_rng(2), {"cbis-ddsm": 160, "inbreast": 24}, views_showing=2)
    units = unit_evaluation_document(str(tmp_path), {"candidate": images})
    config = EvaluationConfig(gate_unit="breast", min_overall_auc=0.5,
                              min_dataset_auc={"cbis-ddsm": 0.5, "inbreast": 0.5}, min_slice_size=30,
                              min_examples_per_class=5)
    evaluation = tfma_metrics({"candidate": images})
    gates = {gate.name: gate for gate in evaluate_gates(evaluation, config, units).gates}
    inbreast = gates["dataset_auc[inbreast]"]
    # 48 images would count; 24 breasts do not.
    assert (inbreast.status, inbreast.example_count, inbreast.blocks_blessing) == ("insufficient", 24, True)
    assert "24 breasts" in inbreast.detail and "needs >= 30 examples" in inbreast.detail
    image_gates = {g.name: g for g in evaluate_gates(evaluation, dataclasses.replace(config, gate_unit="image"),
                                                     units).gates}
    assert image_gates["dataset_auc[inbreast]"].example_count == 48
    assert image_gates["dataset_auc[inbreast]"].status != "insufficient"


def test_breast_gate_without_a_unit_evaluation_names_the_setting(tmp_path: Path) -> None:
    images = screening_images(np.random.default_rng(1), DATASETS, views_showing=2)
    with pytest.raises(ValueError, match="evaluation.gate_unit is 'breast'.*unit_evaluation.json"):
        evaluate_gates(tfma_metrics({"candidate": images}), _config(0.5, gate_unit="breast"))
    # The image gate needs none.
    assert evaluate_gates(tfma_metrics({"candidate": images}), _config(0.5)).gates[0].unit == "image"


def test_gate_results_record_the_unit_and_old_documents_read_as_image(tmp_path: Path) -> None:
    images = screening_images(np.random.default_rng(4), DATASETS, views_showing=2)
    units = unit_evaluation_document(str(tmp_path / "units"), {"candidate": images})
    report = evaluate_gates(tfma_metrics({"candidate": images}), _config(0.5, gate_unit="breast"), units)
    path = write_gate_report(report, str(tmp_path))
    written = json.loads(Path(path).read_text())
    assert {gate["unit"] for gate in written["gates"]} == {"breast"}
    assert written["settings"]["gate_unit"] == "breast"
    assert read_gate_report(path).to_dict() == GateReport.from_dict(written).to_dict()
    for gate in written["gates"]:
        del gate["unit"]
    assert {gate.unit for gate in GateReport.from_dict(written).gates} == {"image"}


def _artifact(artifact_type, uri: str, artifact_id: int):
    artifact = artifact_type()
    artifact.uri, artifact.id = uri, artifact_id
    os.makedirs(uri, exist_ok=True)
    return artifact


def test_gate_executor_reads_the_unit_evaluation_channel(tmp_path: Path, monkeypatch) -> None:
    """The executor with a (monkeypatched) TFMA reader: the unit evaluation arrives on its optional channel."""
    images = screening_images(np.random.default_rng(8), DATASETS, views_showing=1)
    units_artifact = _artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "units"), 5)
    unit_evaluation_document(units_artifact.uri, {"candidate": images})
    monkeypatch.setattr(gate_executor, "read_evaluation", lambda uri: tfma_metrics({"candidate": images}))
    inputs = {gate_executor.EVALUATION_KEY: [_artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "e"), 4)],
              gate_executor.MODEL_KEY: [_artifact(standard_artifacts.Model, str(tmp_path / "model"), 3)],
              gate_executor.UNIT_EVALUATION_KEY: [units_artifact]}
    bound = (_image_auc(images) + _breast_auc(images)) / 2
    for unit, blessed in (("image", True), ("breast", False)):
        blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / f"blessing_{unit}"), 6)
        config = dataclasses.replace(_config(bound), min_dataset_auc={}, gate_unit=unit)
        gate_executor.Executor().Do(inputs, {gate_executor.BLESSING_KEY: [blessing]},
                                    {gate_executor.EVALUATION_CONFIG_KEY: json.dumps(config.to_dict())})
        report = read_gate_report(blessing.uri)
        assert report.blessed is blessed and {gate.unit for gate in report.gates} == {unit}
        assert blessing.get_int_custom_property("blessed") == int(blessed)
    breast_config = dataclasses.replace(_config(bound), gate_unit="breast")
    blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / "blessing_missing"), 7)
    with pytest.raises(ValueError, match="evaluation.gate_unit"):
        gate_executor.Executor().Do({**inputs, gate_executor.UNIT_EVALUATION_KEY: []},
                                    {gate_executor.BLESSING_KEY: [blessing]},
                                    {gate_executor.EVALUATION_CONFIG_KEY: json.dumps(breast_config.to_dict())})
