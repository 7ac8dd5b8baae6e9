"""EvaluationConfig: what the whole-image model must achieve to be blessed and pushed, and where it goes."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from mammo_tfx import names
from mammo_tfx.options import Options
from mammo_tfx.evaluation.screening import BREAST_UNIT, IMAGE_UNIT, ScreeningOptions
from mammo_tfx.evaluation.sufficiency import SufficiencyRule

# The flip-augmented (4-flip TTA) output: the one that is gated and served.
GATED_OUTPUT = names.PROBABILITY
# Marks the fields the ModelGate applies; they are recorded as the `settings` of its gate results.
_GATE_SETTING_KEY = "gate_setting"


def _gate_setting(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    return field(default=default, metadata={_GATE_SETTING_KEY: True}, **kwargs)


@dataclass(frozen=True)
class EvaluationConfig(Options):
    """What the whole-image model must achieve to be blessed and pushed, and where it goes.

    AUC bounds apply to the flip-augmented output `probability` on `split`. A slice counts only with at least
    `min_slice_size` examples and `min_examples_per_class` of each class; a gate on a smaller slice is
    `insufficient`, and blocks blessing when `insufficient_blocks_blessing` (a gate that cannot be checked is not a
    pass). Each dataset of `external_datasets` (held out of training) is gated at `min_external_auc`, like a
    dataset bound. The overall gate blocks when insufficient regardless: without it there is no evidence at all.
    `serving_dir` empty means `<pipeline_root>/serving`; models are pushed to `<serving_dir>/<model_name>/<version>`.
    Every AUC bound of one gate is checked at `gate_unit` (image: TFMA's per-image figures; breast: the screening
    evaluation's per-breast figures). `screening` is how the Trainer calibrates the served answer and chooses its
    operating thresholds on the eval split; `bootstrap_samples` resamples give the screening evaluation's intervals.
    """

    split: str = "test"
    gate_unit: str = _gate_setting(IMAGE_UNIT)
    min_overall_auc: float = _gate_setting(0.80)
    # Datasets without an entry (e.g. MIAS, too few malignant test scans for a stable AUC) are reported, not gated.
    min_dataset_auc: Dict[str, float] = _gate_setting(
        default_factory=lambda: {"cbis-ddsm": 0.80, "inbreast": 0.80})
    # Datasets held out of training (ingest.external_datasets, set there): each is gated at min_external_auc.
    external_datasets: Tuple[str, ...] = _gate_setting(())
    min_external_auc: float = _gate_setting(0.70)
    max_auc_drop: float = _gate_setting(0.01)
    # A fine-tune run's rule: the candidate must beat the baseline (its base model), not merely stay within
    # max_auc_drop of it.
    must_beat_baseline: bool = _gate_setting(False)
    min_slice_size: int = _gate_setting(30)
    min_examples_per_class: int = _gate_setting(5)
    insufficient_blocks_blessing: bool = _gate_setting(True)
    fairness_thresholds: Tuple[float, ...] = (0.25, 0.5, 0.75)
    compute_confidence_intervals: bool = True
    screening: ScreeningOptions = field(default_factory=ScreeningOptions)
    bootstrap_samples: int = 1000
    serving_dir: str = ""
    model_name: str = "mammo"

    def __post_init__(self) -> None:
        object.__setattr__(self, "external_datasets", tuple(self.external_datasets))
        bounds = {"min_overall_auc": self.min_overall_auc, "max_auc_drop": self.max_auc_drop,
                  "min_external_auc": self.min_external_auc,
                  **{f"min_dataset_auc[{name}]": bound for name, bound in self.min_dataset_auc.items()}}
        for name, bound in bounds.items():
            if not 0.0 <= bound <= 1.0:
                raise ValueError(f"evaluation.{name} must be within [0, 1], got {bound}")
        if not self.fairness_thresholds or any(not 0.0 < t < 1.0 for t in self.fairness_thresholds):
            raise ValueError(f"evaluation.fairness_thresholds must be non-empty, each in (0, 1): "
                             f"{self.fairness_thresholds}")
        if self.min_slice_size < 1 or self.min_examples_per_class < 1:
            raise ValueError("evaluation.min_slice_size and min_examples_per_class must be at least 1")
        if self.gate_unit not in (IMAGE_UNIT, BREAST_UNIT):
            raise ValueError(f"evaluation.gate_unit must be {IMAGE_UNIT!r} or {BREAST_UNIT!r}, got {self.gate_unit!r}")
        if self.bootstrap_samples < 0:
            raise ValueError(f"evaluation.bootstrap_samples must be >= 0, got {self.bootstrap_samples}")
        if not self.split or not self.model_name:
            raise ValueError("evaluation.split and evaluation.model_name must not be empty")

    def gate_settings(self) -> Dict[str, Any]:
        """What the ModelGate applies, as its gate results record it: the gated output and the gate fields."""
        values = self.to_dict()
        return {"gated_output": GATED_OUTPUT, **{f.name: values[f.name] for f in dataclasses.fields(self)
                                                 if f.metadata.get(_GATE_SETTING_KEY)}}

    def is_external(self, dataset: str) -> bool:
        return dataset in self.external_datasets

    def sufficiency_rule(self) -> SufficiencyRule:
        return SufficiencyRule(min_slice_size=self.min_slice_size, min_examples_per_class=self.min_examples_per_class)

    def push_base_directory(self, pipeline_root: str) -> str:
        return os.path.join(self.serving_dir or os.path.join(pipeline_root, "serving"), self.model_name)
