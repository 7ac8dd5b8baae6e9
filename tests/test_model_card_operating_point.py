"""The model card's operating point: the target, calibration and thresholds the export records (a real screening
record fitted on synthetic eval exams) and what those thresholds give on the test split per unit (a unit
evaluation written by the real writer)."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
from tfx.types import standard_artifacts

from components.model_card import ModelCard
from components.model_card import executor as card_executor
from mammo_tfx import names
from mammo_tfx.evaluation.calibration import fit_screening_record
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.gates import evaluate_gates, write_gate_report
from mammo_tfx.evaluation.model_card import operating_point, operating_point_lines
from mammo_tfx.evaluation.screening import ScreeningOptions
from mammo_tfx.serving.model_info import write_model_info
from tests.conftest import screening_images, unit_evaluation_document, whole_image_info
from tests.test_model_gate_units import tfma_metrics

DATASETS = {"cbis-ddsm": 200, "inbreast": 160}


def _artifact(artifact_type, uri: str, artifact_id: int):
    artifact = artifact_type()
    artifact.uri, artifact.id = uri, artifact_id
    os.makedirs(uri, exist_ok=True)
    return artifact


def _uncalibrated(images: list) -> list:
    # The raw score of a model whose probabilities run high: calibration has something to correct.
    return [dataclasses.replace(image, score=float(np.sqrt(image.score))) for image in images]


def _export_with_record(model_uri: str, record) -> None:
    write_model_info(os.path.join(model_uri, "Format-Serving"), whole_image_info(record))


def _breast_figures_by_hand(images: list, threshold: float) -> tuple[int, int, int, int]:
    """(tp, positives, tn, negatives) of breasts: mean of the views' scores, label the maximum of theirs."""
    scores: dict[str, list[float]] = {}
    labels: dict[str, int] = {}
    for image in images:
        scores.setdefault(image.breast_key, []).append(image.score)
        labels[image.breast_key] = max(labels.get(image.breast_key, 0), image.label)
    recalled = {key: np.mean(values) >= threshold for key, values in scores.items()}
    positives = [key for key, label in labels.items() if label]
    negatives = [key for key, label in labels.items() if not label]
    return (sum(recalled[k] for k in positives), len(positives), sum(not recalled[k] for k in negatives),
            len(negatives))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    """A record fitted on eval exams' uncalibrated scores; test exams scored with the calibrated probability."""
    options = ScreeningOptions(target_value=0.9)
    eval_images = screening_images(np.random.default_rng(21), DATASETS, views_showing=2)
    record = fit_screening_record(_uncalibrated(eval_images), options)
    test_images = screening_images(np.random.default_rng(22), DATASETS, views_showing=2)
    probabilities = record.calibration.apply(np.array([image.score for image in _uncalibrated(test_images)]))
    test_images = [dataclasses.replace(image, score=float(p)) for image, p in zip(test_images, probabilities)]
    root = tmp_path_factory.mktemp("card")
    units = unit_evaluation_document(str(root / "units"), {"candidate": test_images},
                                     thresholds=record.thresholds)
    return record, test_images, units, root


def test_card_records_the_operating_point_from_the_export_and_the_test_split(fitted, monkeypatch) -> None:
    record, test_images, units, root = fitted
    model = _artifact(standard_artifacts.Model, str(root / "model"), 3)
    _export_with_record(model.uri, record)
    evaluation = _artifact(standard_artifacts.ModelEvaluation, str(root / "evaluation"), 4)
    units_artifact = _artifact(standard_artifacts.ModelEvaluation, units.uri, 5)
    config = EvaluationConfig(gate_unit="breast", min_overall_auc=0.6, min_dataset_auc={})
    metrics = tfma_metrics({"candidate": test_images})
    blessing = _artifact(standard_artifacts.ModelBlessing, str(root / "blessing"), 6)
    write_gate_report(evaluate_gates(metrics, config, units), blessing.uri)
    examples = _artifact(standard_artifacts.Examples, str(root / "examples"), 1)
    pushed = _artifact(standard_artifacts.PushedModel, str(root / "pushed"), 7)
    card_artifact = _artifact(ModelCard, str(root / "card"), 8)
    monkeypatch.setattr(card_executor, "read_evaluation", lambda uri: metrics)
    card_executor.Executor().Do(
        {"model": [model], "evaluation": [evaluation], "blessing": [blessing], "examples": [examples],
         "pushed_model": [pushed], card_executor.UNIT_EVALUATION_KEY: [units_artifact]},
        {"model_card": [card_artifact]}, {"profile": "{}", "model_name": "mammo", "split": "test"})
    card = json.loads(Path(card_artifact.uri, names.MODEL_CARD_JSON).read_text())
    point = card["operating_point"]

    assert point["target"] == {"metric": "sensitivity", "value": 0.9, "split": "eval"}
    assert point["calibration"] == {"method": "platt", "configured": "platt", "fitted": True,
                                    "reason": record.reason}
    assert point["thresholds"] == pytest.approx(record.thresholds)
    assert point["thresholds"]["exam"] == point["thresholds"]["breast"]
    # On the eval split the breast threshold reaches the target it was chosen for.
    assert point["eval"]["breast"]["sensitivity"] >= 0.9
    assert point["eval_ece"]["after"] < point["eval_ece"]["before"]
    tp, positives, tn, negatives = _breast_figures_by_hand(test_images, record.thresholds["breast"])
    test_breast = point["test"]["breast"]
    assert (test_breast["count"], test_breast["positives"]) == (sum(DATASETS.values()), positives)
    assert test_breast["operating"]["sensitivity"] == pytest.approx(tp / positives)
    assert test_breast["operating"]["specificity"] == pytest.approx(tn / negatives)
    low, high = test_breast["operating"]["sensitivity_interval"]
    assert low < tp / positives < high
    assert test_breast["auc_interval"][0] < test_breast["auc"] < test_breast["auc_interval"][1]
    assert set(point["test"]) == {"image", "breast", "exam"}
    assert point["test_ece"] == pytest.approx(units.candidate.ece)
    assert card["lineage"]["unit_evaluation"]["id"] == 5
    assert {gate["unit"] for gate in card["gates"]} == {"breast"}

    markdown = Path(card_artifact.uri, names.MODEL_CARD_MARKDOWN).read_text()
    assert "Every bound is checked per breast (`evaluation.gate_unit`)." in markdown
    assert "## Operating point" in markdown
    assert "Target: sensitivity 0.9 on the eval split" in markdown
    assert "Calibration: platt (configured platt), fitted on the eval split." in markdown
    assert "a breast's score is the mean of its views' calibrated `probability`" in markdown
    breast_row = next(line for line in markdown.splitlines() if line.startswith("| breast |"))
    assert f"| {record.thresholds['breast']:.4f} |" in breast_row
    assert f"| {tp / positives:.3f} [" in breast_row and f"| {test_breast['auc']:.3f} [" in breast_row
    assert "Expected calibration error of the image probability" in markdown
    assert "TFMA (the Evaluator), per image" in markdown and "ScreeningEvaluator" in markdown


def test_operating_point_of_old_exports_and_runs_without_a_screening_evaluation(fitted) -> None:
    record, _, units, _ = fitted
    assert operating_point(None, None) is None
    assert "every figure above is per image" in " ".join(operating_point_lines(None))
    # An export made before records were written, judged by a screening evaluation without thresholds.
    without_record = operating_point(None, units)
    assert without_record["target"] is None and without_record["calibration"] is None
    assert "records no operating point" in " ".join(operating_point_lines(without_record))
    # A record but no screening evaluation: the eval figures, no test ones.
    only_record = operating_point(record.to_dict(), None)
    assert only_record["test"] == {} and only_record["thresholds"] == pytest.approx(record.thresholds)
    lines = operating_point_lines(only_record)
    assert any(line.startswith("| image |") and "| n/a |" in line for line in lines)
