"""Patch class codes shared by the mask contract (docs/contracts.md) and the patch classifier.

The codes equal the class-coded `mask_png` values written by the ExampleGen, in the seed's class
order. Ingestion already mapped every other lesion kind (architectural distortion, asymmetry,
clusters, spiculated regions, ...) to "mass", so only calcification and mass appear here.
"""
from __future__ import annotations

BACKGROUND = 0
CALC_MALIGNANT = 1
CALC_BENIGN = 2
MASS_MALIGNANT = 3
MASS_BENIGN = 4

CLASS_NAMES: dict[int, str] = {
    BACKGROUND: "background",
    CALC_MALIGNANT: "calc_malignant",
    CALC_BENIGN: "calc_benign",
    MASS_MALIGNANT: "mass_malignant",
    MASS_BENIGN: "mass_benign",
}
NUM_CLASSES = len(CLASS_NAMES)
LESION_CLASSES = (CALC_MALIGNANT, CALC_BENIGN, MASS_MALIGNANT, MASS_BENIGN)
MALIGNANT_CLASSES = frozenset({CALC_MALIGNANT, MASS_MALIGNANT})

# Tie-break when a connected region holds equally many pixels of two codes: the same order the
# ExampleGen uses for overlapping lesions (malignant beats benign, then mass beats calcification).
CLASS_PRIORITY = (MASS_MALIGNANT, CALC_MALIGNANT, MASS_BENIGN, CALC_BENIGN)


def is_malignant(patch_class: int) -> bool:
    return patch_class in MALIGNANT_CLASSES
