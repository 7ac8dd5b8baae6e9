"""Typed settings of the patch sampler; the defaults are the seed's S10 set at 1152x896 (docs/training.md)."""
from __future__ import annotations

import dataclasses
import json

from mammo_tfx.options import Options


@dataclasses.dataclass(frozen=True)
class PatchSamplingOptions(Options):
    """How patches are drawn from one scan at the working resolution.

    patch_size: side of the square patch in working-resolution pixels (224 for 1152x896; scale it
        down with the working size, e.g. 56 for 288x224).
    n_lesion_patches: patches per lesion (connected region of the mask).
    n_background_patches: background patches per scan, of which `n_hard_negatives` are centred on
        bright blobs and the rest uniformly inside the breast.
    pos_cutoff: a lesion patch is kept when lesion pixels inside it exceed this fraction of the
        lesion area or of the patch area.
    pos_cutoff_step / min_pos_cutoff: after `max_tries` draws at one cutoff without enough hits the
        cutoff drops by the step, never below the floor.
    neg_cutoff: a background patch overlaps every lesion by at most this fraction (same measure).
    centre_first_lesion_patch: the first patch of each lesion is centred on its centroid (S1).
    breast_threshold: breast = largest connected region above this fraction of the scan's max.
    min_breast_fraction: background patches hold at least this fraction of breast pixels.
    min_lesion_pixels: smaller mask regions (resize specks) are not lesions.
    seed: base seed; each scan's generator is derived from it and the scan's image key.
    """

    patch_size: int = 224
    n_lesion_patches: int = 10
    n_background_patches: int = 10
    n_hard_negatives: int = 5  # half the background patches, as the seed's default 15 of 30 (S10's is undocumented)
    pos_cutoff: float = 0.9
    pos_cutoff_step: float = 0.05
    min_pos_cutoff: float = 0.5
    max_tries: int = 1000
    neg_cutoff: float = 0.35
    centre_first_lesion_patch: bool = False
    breast_threshold: float = 0.05
    min_breast_fraction: float = 0.75
    min_lesion_pixels: int = 1
    seed: int = 12345

    def __post_init__(self) -> None:
        for name in ("patch_size", "n_lesion_patches", "n_background_patches", "n_hard_negatives",
                     "max_tries", "min_lesion_pixels", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"PatchSamplingOptions.{name} must be an int, got {value!r}")
        if self.patch_size < 2:
            raise ValueError(f"patch_size must be >= 2, got {self.patch_size}")
        for name in ("n_lesion_patches", "n_background_patches", "n_hard_negatives"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_hard_negatives > self.n_background_patches:
            raise ValueError(
                f"n_hard_negatives ({self.n_hard_negatives}) exceeds n_background_patches "
                f"({self.n_background_patches})")
        if self.max_tries < 1 or self.min_lesion_pixels < 1:
            raise ValueError("max_tries and min_lesion_pixels must be >= 1")
        for name in ("pos_cutoff", "min_pos_cutoff", "neg_cutoff", "breast_threshold",
                     "min_breast_fraction"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if not 0.0 < self.min_pos_cutoff <= self.pos_cutoff:
            raise ValueError(
                f"need 0 < min_pos_cutoff <= pos_cutoff, got {self.min_pos_cutoff} and "
                f"{self.pos_cutoff}")
        if not self.pos_cutoff_step > 0.0:
            raise ValueError(f"pos_cutoff_step must be > 0, got {self.pos_cutoff_step}")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PatchSamplingOptions":
        values = json.loads(text) if text else {}
        if not isinstance(values, dict):
            raise ValueError(f"sampling options JSON must be an object, got {text!r}")
        return cls.from_dict(values)
