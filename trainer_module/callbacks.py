"""Keras callbacks of the training loop that tf_keras does not provide as needed."""
from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import tf_keras

logger = logging.getLogger(__name__)


class BestWeightsKeeper(tf_keras.callbacks.Callback):
    """Remembers the weights of the epoch with the highest `monitor` over ALL steps of a schedule.

    One instance is shared by the successive `fit` calls of a layer-wise schedule (EarlyStopping's
    own restore works only within one `fit`), and `restore()` puts the best weights back at the end.
    Weights are kept in memory: the models here are at most a few hundred MB. `weights_of` is the model whose
    weights are kept (default: the model being fit), so a step that fits a part of it (sharing its layers)
    still snapshots and restores the whole.
    """

    def __init__(self, monitor: str, weights_of: Optional[tf_keras.Model] = None) -> None:
        super().__init__()
        self.monitor = monitor
        self._weights_of = weights_of
        self.best_value: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self._best_weights: Optional[list[np.ndarray]] = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"best-model monitor {self.monitor!r} is not among the epoch metrics {sorted(logs)}")
        value = float(logs[self.monitor])
        if math.isnan(value):
            return
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_epoch = value, epoch
            self._best_weights = self._owner().get_weights()

    def resume(self, best_value: float, best_epoch: int) -> None:
        """Takes the weights the model holds now as the best so far: those of `best_epoch`, read back from a
        checkpoint when a killed training resumes."""
        self.best_value, self.best_epoch = best_value, best_epoch
        self._best_weights = self._owner().get_weights()

    def restore(self) -> bool:
        """Loads the best weights into the model; False when no epoch ran."""
        if self._best_weights is None:
            return False
        self._owner().set_weights(self._best_weights)
        logger.info("restored the weights of epoch %d (%s=%.4f)", self.best_epoch + 1, self.monitor, self.best_value)
        return True

    def _owner(self) -> tf_keras.Model:
        return self._weights_of if self._weights_of is not None else self.model
