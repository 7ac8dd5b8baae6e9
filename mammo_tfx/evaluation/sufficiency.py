"""When a slice holds enough examples of both classes for its AUC-type metrics to mean something."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class SufficiencyRule:
    """A slice counts with at least `min_slice_size` examples and `min_examples_per_class` of each class; TFMA
    writes AUC 0.0 for a one-class slice. The gate, the model card and the report all judge slices by this rule
    (its values come from EvaluationConfig or from the settings the gate recorded)."""

    min_slice_size: int
    min_examples_per_class: int

    def insufficient_reason(self, examples: Optional[float], positives: Optional[float],
                            negatives: Optional[float]) -> Optional[str]:
        """Why the slice is insufficient, None when it is sufficient; an unknown count (None) is not held against it."""
        if examples is not None and examples < self.min_slice_size:
            return f"{examples:g} examples < {self.min_slice_size}"
        if positives is not None and negatives is not None:
            if positives == 0 or negatives == 0:
                return "one class only"
            if min(positives, negatives) < self.min_examples_per_class:
                return f"fewer than {self.min_examples_per_class} positives or negatives"
        return None

    def requirement(self) -> str:
        return f"needs >= {self.min_slice_size} examples and >= {self.min_examples_per_class} per class"
