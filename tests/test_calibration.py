"""The eval-split calibration and operating point (mammo_tfx/evaluation/calibration.py): fits, the record and its
round trip through model_info.json."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from mammo_tfx import names
from mammo_tfx.evaluation import screening
from mammo_tfx.evaluation.calibration import (IDENTITY, ISOTONIC, PLATT, SCREENING_INFO_KEY, Calibration,
                                              ScreeningRecord, fit_calibration, fit_screening_record,
                                              read_screening_record, served)
from mammo_tfx.evaluation.screening import (BreastRule, CalibrationMethod, OperatingTarget, ScoredUnit,
                                            ScreeningOptions)
from mammo_tfx.serving.model_info import write_model_info
from tests.conftest import whole_image_info


def miscalibrated(count: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a true probability p, and an overconfident score sigmoid(3 * logit(p) + 1)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.02, 0.98, count)
    labels = (rng.uniform(size=count) < truth).astype(np.int64)
    scores = 1.0 / (1.0 + np.exp(-(3.0 * np.log(truth / (1 - truth)) + 1.0)))
    return scores, labels


@pytest.mark.parametrize("method", [CalibrationMethod.PLATT, CalibrationMethod.ISOTONIC])
def test_calibration_reduces_the_calibration_error_of_miscalibrated_scores(method):
    scores, labels = miscalibrated()
    calibration = fit_calibration(scores, labels, method)
    before = screening.expected_calibration_error(labels, scores)
    after = screening.expected_calibration_error(labels, calibration.apply(scores))
    assert calibration.method == method.value
    assert before > 0.08 and after < before / 2


def test_platt_recovers_the_inverse_of_the_distortion():
    scores, labels = miscalibrated(count=20000)
    calibration = fit_calibration(scores, labels, CalibrationMethod.PLATT)
    # score = sigmoid(3 logit(p) + 1)  =>  logit(p) = (logit(score) - 1) / 3
    assert calibration.slope == pytest.approx(1 / 3, abs=0.03)
    assert calibration.intercept == pytest.approx(-1 / 3, abs=0.06)


def test_isotonic_applies_exactly_as_sklearn_predicts():
    scores, labels = miscalibrated(count=300)
    calibration = fit_calibration(scores, labels, CalibrationMethod.ISOTONIC)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, labels)
    queries = np.concatenate([np.linspace(-0.1, 1.1, 501), scores])
    np.testing.assert_allclose(calibration.apply(queries), reference.predict(queries), rtol=0, atol=1e-12)


def test_calibration_round_trips_and_rejects_bad_parameters():
    for calibration in (Calibration(PLATT, slope=0.5, intercept=-0.2),
                        Calibration(ISOTONIC, x_thresholds=(0.1, 0.5), y_thresholds=(0.0, 0.7)), Calibration()):
        assert Calibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration
    assert Calibration().method == IDENTITY
    np.testing.assert_array_equal(Calibration().apply(np.array([0.2, 0.9])), [0.2, 0.9])
    with pytest.raises(ValueError, match="method"):
        Calibration("sigmoid")
    with pytest.raises(ValueError, match="breakpoints"):
        Calibration(ISOTONIC, x_thresholds=(0.1, 0.5), y_thresholds=(0.0,))
    with pytest.raises(ValueError, match="both classes"):
        fit_calibration(np.array([0.1, 0.2]), np.array([0, 0]), CalibrationMethod.PLATT)


def eval_images(scores: np.ndarray, labels: np.ndarray) -> list[ScoredUnit]:
    """Two views per breast, two breasts per exam."""
    return [ScoredUnit(key=f"i{i}", label=int(label), score=float(score), breast_key=f"b{i // 2}",
                       exam_key=f"e{i // 4}") for i, (score, label) in enumerate(zip(scores, labels))]


def test_record_thresholds_and_figures_follow_from_the_calibrated_units():
    scores, labels = miscalibrated(count=400, seed=3)
    options = ScreeningOptions(breast_rule=BreastRule.MAX, calibration=CalibrationMethod.ISOTONIC,
                               target=OperatingTarget.SENSITIVITY, target_value=0.8)
    images = eval_images(scores, labels)
    record = fit_screening_record(images, options)
    assert record.fitted and record.reason == ""
    # The record works on the values the graph serves (float32); breast maxima of float32 values stay float32.
    probabilities = served(record.calibration.apply(scores))
    calibrated = [ScoredUnit(key=u.key, label=u.label, score=float(p), breast_key=u.breast_key, exam_key=u.exam_key)
                  for u, p in zip(images, probabilities)]
    units = screening.all_units(calibrated, BreastRule.MAX)
    for unit, chosen_on in (("image", "image"), ("breast", "breast"), ("exam", "breast")):
        labels_, scores_ = screening.unit_arrays(units[chosen_on])
        assert record.thresholds[unit] == screening.choose_threshold(labels_, scores_, options.target, 0.8)
        unit_labels, unit_scores = screening.unit_arrays(units[unit])
        assert record.eval[unit] == screening.operating_figures(unit_labels, unit_scores, record.thresholds[unit])
        assert record.eval[unit].sensitivity >= 0.8 or unit == "exam"
    assert record.eval_counts["image"] == 400 and record.eval_counts["breast"] == 200
    assert record.eval_counts["exam"] == 100
    assert record.eval_counts["positives"]["image"] == int(labels.sum())
    assert record.eval_ece["after"] < record.eval_ece["before"]


def test_one_class_eval_split_gives_an_identity_record_with_its_reason():
    scores = np.linspace(0.1, 0.6, 8)
    record = fit_screening_record(eval_images(scores, np.zeros(8)), ScreeningOptions())
    assert not record.fitted and record.calibration.method == IDENTITY
    assert "0 malignant and 8 other" in record.reason and "recall all" in record.reason
    assert record.thresholds == {"image": 0.0, "breast": 0.0, "exam": 0.0}
    assert record.eval_ece["after"] == pytest.approx(record.eval_ece["before"])
    # A recall-rate target needs no positives: the threshold is still chosen.
    rate = fit_screening_record(eval_images(scores, np.zeros(8)),
                                ScreeningOptions(target=OperatingTarget.RECALL_RATE, target_value=0.25))
    assert rate.thresholds["image"] == pytest.approx(scores[-2]) and "recall all" not in rate.reason


def test_too_few_positives_fall_back_to_identity():
    labels = np.array([1, 0, 0, 0, 0, 0])
    record = fit_screening_record(eval_images(np.linspace(0.1, 0.9, 6), labels), ScreeningOptions())
    assert not record.fitted and "1 malignant" in record.reason
    assert record.thresholds["image"] == pytest.approx(0.1)


def write_info(export_dir: str, info: dict) -> None:
    os.makedirs(os.path.join(export_dir, names.KERAS_DIR))
    with open(os.path.join(export_dir, names.KERAS_DIR, names.MODEL_INFO_FILE), "w") as handle:
        json.dump(info, handle)


def test_record_is_read_from_model_info_and_a_missing_key_is_an_error(tmp_path):
    scores, labels = miscalibrated(count=60)
    record = fit_screening_record(eval_images(scores, labels), ScreeningOptions())
    write_model_info(str(tmp_path / "new"), whole_image_info(record))
    write_model_info(str(tmp_path / "none"), whole_image_info(None))
    old = whole_image_info(None).to_dict()
    del old[SCREENING_INFO_KEY]
    write_info(str(tmp_path / "old"), old)
    write_info(str(tmp_path / "bad"), {**old, SCREENING_INFO_KEY: {"options": {}}})
    assert read_screening_record(str(tmp_path / "new")) == record
    assert read_screening_record(str(tmp_path / "none")) is None
    assert read_screening_record(str(tmp_path / "missing")) is None
    with pytest.raises(ValueError, match=r"old.*model_info.json lacks \['screening'\]: .* export the model again"):
        read_screening_record(str(tmp_path / "old"))
    with pytest.raises(ValueError, match="bad.*model_info.json.*malformed"):
        read_screening_record(str(tmp_path / "bad"))
    assert ScreeningRecord.from_dict(json.loads(json.dumps(record.to_dict(), allow_nan=False))) == record
