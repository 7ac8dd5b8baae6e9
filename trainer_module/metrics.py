"""Validation metric: ROC AUC of the malignant probability.

The models output softmax class probabilities; the malignant score is the sum of the malignant
columns (whole image: column 1; patch: calc malignant + mass malignant), so AUC is computed on
one score per example, as the screening use and the Evaluator measure it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf
import tf_keras


class MalignantAUC(tf_keras.metrics.AUC):
    """AUC of sum(y_pred[:, malignant_columns]) against sum(y_true[:, malignant_columns])."""

    def __init__(self, malignant_columns: Sequence[int], name: str = "auc", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.malignant_columns = tuple(int(column) for column in malignant_columns)

    def update_state(self, y_true: tf.Tensor, y_pred: tf.Tensor, sample_weight: Optional[tf.Tensor] = None):
        columns = list(self.malignant_columns)
        true_malignant = tf.reduce_sum(tf.gather(tf.cast(y_true, tf.float32), columns, axis=-1), axis=-1)
        predicted_malignant = tf.reduce_sum(tf.gather(tf.cast(y_pred, tf.float32), columns, axis=-1), axis=-1)
        return super().update_state(true_malignant, tf.clip_by_value(predicted_malignant, 0.0, 1.0), sample_weight)

    def get_config(self) -> dict:
        config = super().get_config()
        config["malignant_columns"] = list(self.malignant_columns)
        return config
