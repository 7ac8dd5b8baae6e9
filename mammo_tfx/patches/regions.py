"""Lesions (connected regions of the class-coded mask) and the breast region of a scan."""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from mammo_tfx.lesion_classes import CLASS_PRIORITY, NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class Lesion:
    """One connected mask region at working resolution.

    `pixels` is its boolean indicator cropped to its bounding box (rows top..bottom, cols
    left..right, inclusive), so many small lesions (e.g. INbreast calcifications) stay cheap.
    """

    patch_class: int
    pixels: np.ndarray
    area: int
    top: int
    left: int
    bottom: int
    right: int
    centroid: tuple[int, int]


def majority_class(codes: np.ndarray) -> int:
    """Most frequent non-zero code; ties go to the first code in CLASS_PRIORITY."""
    counts = np.bincount(codes.ravel(), minlength=NUM_CLASSES)
    best = counts[1:].max()
    return next(code for code in CLASS_PRIORITY if counts[code] == best)


def find_lesions(mask: np.ndarray, min_pixels: int = 1) -> list[Lesion]:
    """Connected regions of mask > 0 (8-connectivity), in scan order, each with its majority class.

    Regions smaller than `min_pixels` are dropped.
    """
    labels, _ = ndimage.label(mask > 0, structure=np.ones((3, 3), dtype=bool))
    lesions = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        pixels = labels[region] == index
        area = int(np.count_nonzero(pixels))
        if area < min_pixels:
            continue
        rows, cols = np.nonzero(pixels)
        lesions.append(Lesion(
            patch_class=majority_class(mask[region][pixels]),
            pixels=pixels,
            area=area,
            top=region[0].start,
            left=region[1].start,
            bottom=region[0].stop - 1,
            right=region[1].stop - 1,
            centroid=(int(round(rows.mean())) + region[0].start,
                      int(round(cols.mean())) + region[1].start),
        ))
    return lesions


def breast_mask(image: np.ndarray, threshold_fraction: float) -> np.ndarray:
    """Largest connected region above `threshold_fraction` x max intensity, holes filled.

    An all-zero scan has no breast (all False).
    """
    peak = float(image.max()) if image.size else 0.0
    if peak <= 0.0:
        return np.zeros(image.shape, dtype=bool)
    foreground = image > threshold_fraction * peak
    labels, count = ndimage.label(foreground)
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(sizes.argmax()))
