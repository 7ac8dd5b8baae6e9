"""The screening record (mammo_tfx/evaluation/calibration.py) as TF ops of the exported graph: the calibration of
the flip-mean score, the operating decisions, and the breast aggregation of the `serving_exam` signature.

The numbers are the record's; the ops compute what Calibration.apply and screening.breasts compute in numpy (the
tests check both agree), in float64 so the served probability does not drift from the recorded thresholds.
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from mammo_tfx import names
from mammo_tfx.evaluation.calibration import ISOTONIC, LOGIT_EPSILON, PLATT, Calibration, ScreeningRecord
from mammo_tfx.evaluation.screening import BREAST_UNIT, IMAGE_UNIT, BreastRule


def calibrate(calibration: Calibration, scores: tf.Tensor) -> tf.Tensor:
    """Calibrated float32 probabilities of float32 `scores` (probability = score for the identity)."""
    values = tf.cast(scores, tf.float64)
    if calibration.method == PLATT:
        clipped = tf.clip_by_value(values, LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
        logits = tf.math.log(clipped) - tf.math.log1p(-clipped)
        values = tf.sigmoid(calibration.slope * logits + calibration.intercept)
    elif calibration.method == ISOTONIC:
        values = _interpolate(values, calibration)
    return tf.cast(values, tf.float32)


def _interpolate(values: tf.Tensor, calibration: Calibration) -> tf.Tensor:
    """Linear interpolation over the breakpoints, holding the end values outside them (sklearn's "clip")."""
    x = tf.constant(calibration.x_thresholds, tf.float64)
    y = tf.constant(calibration.y_thresholds, tf.float64)
    if len(calibration.x_thresholds) == 1:
        return tf.fill(tf.shape(values), y[0])
    clipped = tf.clip_by_value(values, x[0], x[-1])
    # Segment [x[i], x[i + 1]] holding each value; the last segment also holds x[-1].
    index = tf.clip_by_value(tf.searchsorted(x, clipped, side="right") - 1, 0, len(calibration.x_thresholds) - 2)
    x0, x1 = tf.gather(x, index), tf.gather(x, index + 1)
    y0, y1 = tf.gather(y, index), tf.gather(y, index + 1)
    width = x1 - x0
    fraction = tf.where(width > 0, (clipped - x0) / tf.where(width > 0, width, 1.0), 0.0)
    return y0 + fraction * (y1 - y0)


def recalled(probabilities: tf.Tensor, threshold: float) -> tf.Tensor:
    """The operating decision (bool): the float32 probability at or above the threshold, which the record chose
    among float32 values (calibration.served), so the unit that defines it is decided as on the eval split."""
    return probabilities >= tf.constant(threshold, tf.float32)


def image_outputs(record: ScreeningRecord, scores: tf.Tensor, single: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The outputs of `serving_default` / `serving_examples` from the uncalibrated flip-mean and unflipped scores."""
    probabilities = calibrate(record.calibration, scores)
    return {names.PROBABILITY: probabilities, names.SCORE: scores, names.PROBABILITY_SINGLE: single,
            names.RECALL: recalled(probabilities, record.thresholds[IMAGE_UNIT])}


def exam_outputs(record: ScreeningRecord, scores: tf.Tensor, single: tf.Tensor,
                 breast_ids: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The outputs of `serving_exam`: the image outputs, and per distinct breast id (order of first appearance) the
    breast rule over its images' calibrated probabilities and its decision at the breast threshold."""
    outputs = image_outputs(record, scores, single)
    ids, index = tf.unique(breast_ids, out_idx=tf.int32)
    count = tf.size(ids)
    combine = (tf.math.unsorted_segment_mean if record.options.breast_rule == BreastRule.MEAN
               else tf.math.unsorted_segment_max)
    # In float64 like the record's numpy mean, then served as float32 like the record's breast scores.
    breast_scores = tf.cast(combine(tf.cast(outputs[names.PROBABILITY], tf.float64), index, count), tf.float32)
    outputs.update({names.BREAST_INDEX: index, names.BREAST_IDS: ids, names.BREAST_SCORE: breast_scores,
                    names.BREAST_RECALL: recalled(breast_scores, record.thresholds[BREAST_UNIT])})
    return outputs
