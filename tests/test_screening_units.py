"""The screening-unit rules: how image scores combine into breasts and exams, and the figures per unit."""
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mammo_tfx import names
from mammo_tfx.evaluation import screening
from mammo_tfx.evaluation.screening import BreastRule, OperatingTarget, ScoredUnit


def _image(key: str, label: int, score: float, breast: str, exam: str, **slices: str) -> ScoredUnit:
    return ScoredUnit(key=key, label=label, score=score, breast_key=breast, exam_key=exam, slices=slices)


# Exam e1: left breast CC (benign-looking) + MLO (malignant), right breast CC only (a view missing is normal).
# Exam e2: both breasts negative, two views each.
IMAGES = [
    _image("i1", 0, 0.2, "e1L", "e1", view="CC", laterality="L", dataset="d", density="2"),
    _image("i2", 1, 0.8, "e1L", "e1", view="MLO", laterality="L", dataset="d", density="3"),
    _image("i3", 0, 0.1, "e1R", "e1", view="CC", laterality="R", dataset="d", density="2"),
    _image("i4", 0, 0.3, "e2L", "e2", view="CC", laterality="L", dataset="d", density="1"),
    _image("i5", 0, 0.5, "e2L", "e2", view="MLO", laterality="L", dataset="d", density="1"),
    _image("i6", 0, 0.4, "e2R", "e2", view="CC", laterality="R", dataset="d", density="1"),
    _image("i7", 0, 0.0, "e2R", "e2", view="MLO", laterality="R", dataset="d", density="1"),
]


def test_breast_is_mean_of_its_views_and_label_is_the_maximum():
    breasts = {b.key: b for b in screening.breasts(IMAGES, BreastRule.MEAN)}
    assert list(breasts) == ["e1L", "e1R", "e2L", "e2R"]
    assert breasts["e1L"].score == pytest.approx(0.5) and breasts["e1L"].label == 1 and breasts["e1L"].images == 2
    assert breasts["e1R"].score == pytest.approx(0.1) and breasts["e1R"].images == 1
    assert breasts["e2L"].score == pytest.approx(0.4) and breasts["e2L"].label == 0
    assert breasts["e1L"].exam_key == "e1"


def test_max_rule_and_exam_is_the_maximum_over_breasts():
    breasts = screening.breasts(IMAGES, BreastRule.MAX)
    assert [b.score for b in breasts] == pytest.approx([0.8, 0.1, 0.5, 0.4])
    exams = {e.key: e for e in screening.exams(screening.breasts(IMAGES, BreastRule.MEAN))}
    assert exams["e1"].score == pytest.approx(0.5) and exams["e1"].label == 1 and exams["e1"].images == 3
    assert exams["e2"].score == pytest.approx(0.4) and exams["e2"].label == 0 and exams["e2"].images == 4


def test_group_slices_keep_common_values_and_drop_per_image_features():
    breasts = {b.key: b for b in screening.breasts(IMAGES, BreastRule.MEAN)}
    assert names.VIEW not in breasts["e1L"].slices
    assert breasts["e1L"].slices[names.LATERALITY] == "L"
    assert breasts["e1L"].slices[names.DENSITY] == screening.MIXED
    assert breasts["e2L"].slices[names.DENSITY] == "1"
    exams = {e.key: e for e in screening.exams(list(breasts.values()))}
    assert names.LATERALITY not in exams["e1"].slices and exams["e1"].slices[names.DATASET] == "d"


def test_an_image_without_a_breast_key_is_an_error_naming_it():
    with pytest.raises(ValueError, match="lost.*breast key"):
        screening.breasts([_image("lost", 0, 0.1, "", "e9")], BreastRule.MEAN)


def test_auc_matches_sklearn_and_is_nan_for_one_class():
    labels, scores = screening.unit_arrays(IMAGES)
    assert screening.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert math.isnan(screening.auc(np.zeros(3), np.array([0.1, 0.2, 0.3])))


def test_bootstrap_interval_brackets_the_auc_and_is_reproducible():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = labels * 0.3 + rng.random(200)
    low, high = screening.bootstrap_auc_interval(labels, scores, samples=300, seed=1)
    assert low < screening.auc(labels, scores) < high and high - low < 0.2
    assert screening.bootstrap_auc_interval(labels, scores, samples=300, seed=1) == (low, high)
    assert screening.bootstrap_auc_interval(np.ones(5), scores[:5], samples=10, seed=1) is None


def test_threshold_for_a_sensitivity_target_is_the_highest_that_reaches_it():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.7, 0.4, 0.2, 0.8, 0.5, 0.3, 0.1, 0.05, 0.6])
    threshold = screening.choose_threshold(labels, scores, OperatingTarget.SENSITIVITY, 0.75)
    assert threshold == pytest.approx(0.4)
    figures = screening.operating_figures(labels, scores, threshold)
    assert figures.sensitivity == pytest.approx(0.75) and (figures.tp, figures.fp, figures.tn, figures.fn) == (3, 3, 3, 1)
    assert figures.specificity == pytest.approx(0.5)
    # Any higher threshold misses the target.
    assert screening.operating_figures(labels, scores, threshold + 1e-6).sensitivity < 0.75


def test_threshold_for_a_recall_rate_target():
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    scores = np.linspace(1.0, 0.1, 10)
    threshold = screening.choose_threshold(labels, scores, OperatingTarget.RECALL_RATE, 0.2)
    assert screening.operating_figures(labels, scores, threshold).recall_rate == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no units"):
        screening.choose_threshold(np.zeros(3), scores[:3], OperatingTarget.SENSITIVITY, 0.9)


def test_operating_figures_carry_wilson_intervals():
    figures = screening.operating_figures(np.array([1] * 10 + [0] * 10), np.array([0.9] * 9 + [0.1] * 11), 0.5)
    record = figures.to_dict()
    assert record["sensitivity"] == pytest.approx(0.9) and record["specificity"] == pytest.approx(1.0)
    low, high = record["sensitivity_interval"]
    assert 0.5 < low < 0.9 < high <= 1.0
    assert screening.proportion_interval(0, 0) is None


def test_expected_calibration_error():
    labels = np.array([0, 0, 1, 1])
    assert screening.expected_calibration_error(labels, np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.0)
    # Everything in one bin at 0.75 while half are malignant: |0.5 - 0.75|.
    assert screening.expected_calibration_error(labels, np.full(4, 0.75)) == pytest.approx(0.25)


def test_roc_points_run_from_origin_to_one():
    labels, scores = screening.unit_arrays(IMAGES)
    points = screening.roc_points(labels, scores)
    assert points[0]["fpr"] == 0 and points[-1]["fpr"] == pytest.approx(1) and points[-1]["tpr"] == pytest.approx(1)
    assert screening.roc_points(np.zeros(2), np.array([0.1, 0.2])) == []


def test_options_reject_a_target_outside_zero_one():
    with pytest.raises(ValueError, match="target_value"):
        screening.ScreeningOptions(target_value=1.5)
    assert screening.ScreeningOptions.from_dict({"breast_rule": "max"}).breast_rule == BreastRule.MAX
