"""The `monitoring` section of the configuration: drift thresholds and what a drift does (no TFDV import here, so the
configuration loads fast)."""
from __future__ import annotations

import dataclasses

from mammo_tfx.options import Options


@dataclasses.dataclass(frozen=True)
class DriftOptions(Options):
    """Thresholds of the comparators (a feature drifts when its distance is above them) and what a drift does.

    `jensen_shannon_threshold` applies to numeric features (intensities, sizes, spacing, bits stored, answered
    probabilities), `infinity_norm_threshold` to categorical ones (device, photometric interpretation, recall
    decisions): the largest change of one value's share. `stop_run_on_drift`: a pipeline run whose data drifted from
    the served model's training data stops before training (ExampleValidator fails) instead of only reporting it.
    `min_slice_examples`: slices with fewer examples on either side are not compared (their histograms are noise)."""

    jensen_shannon_threshold: float = 0.1
    infinity_norm_threshold: float = 0.1
    stop_run_on_drift: bool = False
    min_slice_examples: int = 5

    def __post_init__(self) -> None:
        for name in ("jensen_shannon_threshold", "infinity_norm_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise ValueError(f"monitoring.{name} must be in (0, 1], got {value!r}")
        if self.min_slice_examples < 1:
            raise ValueError(f"monitoring.min_slice_examples must be at least 1, got {self.min_slice_examples}")
