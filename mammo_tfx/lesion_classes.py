"""The lesion classes: the codes of the class-coded `mask_png` (docs/contracts.md), the patch classifier's classes
and the precedence of overlapping lesions, in one place.

Ingestion paints masks with these codes (mammo_tfx/ingest/masks.py), the patch sampler labels patches with them
(mammo_tfx/patches/regions.py) and the patch classifier's softmax has one output per code, in code order
(trainer_module/patch_model.py). Ingestion maps every other lesion kind (architectural distortion, asymmetry,
clusters, spiculated regions, ...) to "mass", so only calcification and mass appear here. Changing a value changes
a contract with stored examples and trained models.
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

# Which class a pixel (or a patch region) takes where lesions of two classes overlap, strongest first: malignant
# beats benign, then mass beats calcification. Masks are painted in the reverse order, so the strongest wins.
CLASS_PRIORITY = (MASS_MALIGNANT, CALC_MALIGNANT, MASS_BENIGN, CALC_BENIGN)
PAINT_ORDER = tuple(reversed(CLASS_PRIORITY))

LESION_KINDS = ("mass", "calcification")


def class_code(kind: str, malignant: bool) -> int:
    """Mask value of a lesion of `kind` ("calcification" or "mass")."""
    if kind == "calcification":
        return CALC_MALIGNANT if malignant else CALC_BENIGN
    if kind == "mass":
        return MASS_MALIGNANT if malignant else MASS_BENIGN
    raise ValueError(f"unknown lesion kind {kind!r}")


def is_malignant(patch_class: int) -> bool:
    return patch_class in MALIGNANT_CLASSES
