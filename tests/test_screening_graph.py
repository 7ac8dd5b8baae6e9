"""The screening record as graph ops (trainer_module/screening_graph.py) against the numpy and sklearn they stand
for: calibration, decisions and the breast aggregation of `serving_exam`."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from sklearn.isotonic import IsotonicRegression

from mammo_tfx import names
from mammo_tfx.evaluation import screening
from mammo_tfx.evaluation.calibration import Calibration, fit_calibration, fit_screening_record
from mammo_tfx.evaluation.screening import BreastRule, CalibrationMethod, ScoredUnit, ScreeningOptions
from trainer_module.screening_graph import calibrate, exam_outputs, image_outputs
from tests.test_calibration import eval_images, miscalibrated


def _float32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_platt_in_the_graph_is_the_numpy_calibration():
    scores, labels = miscalibrated(count=500)
    calibration = fit_calibration(scores, labels, CalibrationMethod.PLATT)
    queries = _float32(np.concatenate([[0.0, 1e-9, 1.0], np.linspace(0, 1, 301)]))
    np.testing.assert_allclose(calibrate(calibration, tf.constant(queries)).numpy(),
                               calibration.apply(queries), rtol=1e-6, atol=1e-7)


def test_isotonic_in_the_graph_is_sklearn_predict():
    scores, labels = miscalibrated(count=500, seed=4)
    scores = _float32(scores)
    calibration = fit_calibration(scores, labels, CalibrationMethod.ISOTONIC)
    # The record fits on float64 values of the served float32 scores (sklearn on float32 input would interpolate
    # in float32).
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores.astype(np.float64), labels)
    # Below, above, at and between the breakpoints.
    queries = _float32(np.concatenate([[-0.5, 0.0, 1.0, 1.5], calibration.x_thresholds, np.linspace(0, 1, 997)]))
    np.testing.assert_allclose(calibrate(calibration, tf.constant(queries)).numpy(),
                               reference.predict(queries.astype(np.float64)), rtol=1e-6, atol=1e-7)


def test_isotonic_with_one_breakpoint_and_identity():
    one = Calibration("isotonic", x_thresholds=(0.4,), y_thresholds=(0.3,))
    np.testing.assert_allclose(calibrate(one, tf.constant(_float32([0.1, 0.4, 0.9]))).numpy(), [0.3] * 3)
    values = _float32([0.0, 0.25, 1.0])
    np.testing.assert_array_equal(calibrate(Calibration(), tf.constant(values)).numpy(), values)


@pytest.mark.parametrize("rule", [BreastRule.MEAN, BreastRule.MAX])
def test_exam_outputs_are_the_screening_aggregation(rule):
    scores, labels = miscalibrated(count=40, seed=5)
    images = eval_images(_float32(scores), labels)
    record = fit_screening_record(images, ScreeningOptions(breast_rule=rule, target_value=0.75))
    # A request's breasts in another order than sorted, one breast with one view.
    order = np.random.default_rng(0).permutation(len(images))[:-1]
    ids = [images[i].breast_key for i in order]
    outputs = exam_outputs(record, tf.constant(_float32(scores)[order]), tf.constant(_float32(scores)[order]),
                           tf.constant(ids))
    outputs = {key: value.numpy() for key, value in outputs.items()}
    served = [ScoredUnit(key=str(i), label=0, score=float(p), breast_key=b, exam_key="e")
              for i, (p, b) in enumerate(zip(outputs[names.PROBABILITY], ids))]
    expected = screening.breasts(served, rule)
    assert [b.decode() for b in outputs[names.BREAST_IDS]] == [unit.key for unit in expected]
    np.testing.assert_allclose(outputs[names.BREAST_SCORE], [unit.score for unit in expected], rtol=1e-6)
    np.testing.assert_array_equal(outputs[names.BREAST_IDS][outputs[names.BREAST_INDEX]], [b.encode() for b in ids])
    assert outputs[names.BREAST_INDEX].dtype == np.int32
    np.testing.assert_array_equal(outputs[names.BREAST_RECALL],
                                  outputs[names.BREAST_SCORE] >= np.float32(record.thresholds["breast"]))
    np.testing.assert_array_equal(outputs[names.RECALL],
                                  outputs[names.PROBABILITY] >= np.float32(record.thresholds["image"]))


def test_the_unit_that_defines_a_threshold_is_recalled_in_the_graph():
    """The thresholds are served float32 values, so the graph decides the eval units exactly as the record."""
    scores, labels = miscalibrated(count=200, seed=6)
    scores = _float32(scores)
    images = eval_images(scores, labels)
    for method in (CalibrationMethod.PLATT, CalibrationMethod.ISOTONIC):
        record = fit_screening_record(images, ScreeningOptions(calibration=method, target_value=0.8))
        outputs = exam_outputs(record, tf.constant(scores), tf.constant(scores),
                               tf.constant([image.breast_key for image in images]))
        image_recall = outputs[names.RECALL].numpy()
        positive = labels > 0
        assert int(np.sum(image_recall & positive)) == record.eval["image"].tp
        assert int(np.sum(image_recall & ~positive)) == record.eval["image"].fp
        breast_labels = np.array([labels[2 * b:2 * b + 2].max() for b in range(len(images) // 2)]) > 0
        breast_recall = outputs[names.BREAST_RECALL].numpy()
        assert int(np.sum(breast_recall & breast_labels)) == record.eval["breast"].tp
        assert int(np.sum(breast_recall & ~breast_labels)) == record.eval["breast"].fp
        plain = image_outputs(record, tf.constant(scores), tf.constant(scores))
        np.testing.assert_array_equal(plain[names.RECALL].numpy(), image_recall)
