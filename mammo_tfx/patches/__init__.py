"""Patch sampling for the patch classifier (plain numpy/scipy; no Beam, no TFX)."""
from mammo_tfx.lesion_classes import CLASS_NAMES, MALIGNANT_CLASSES, NUM_CLASSES, is_malignant
from mammo_tfx.patches.options import PatchSamplingOptions
from mammo_tfx.patches.sampler import Patch, sample_scan_patches

__all__ = [
    "CLASS_NAMES",
    "MALIGNANT_CLASSES",
    "NUM_CLASSES",
    "Patch",
    "PatchSamplingOptions",
    "is_malignant",
    "sample_scan_patches",
]
