"""Lesion and background patches from one scan (the seed's S-set sampling, per scan).

Per lesion (connected region of the merged class-coded mask, class = majority code), patch centres
are drawn uniformly in the lesion's bounding box and kept when the lesion pixels inside the patch
exceed `pos_cutoff` of the lesion area or of the patch area; after `max_tries` draws at one cutoff
the cutoff is relaxed by `pos_cutoff_step` down to `min_pos_cutoff` (each patch records its cutoff).

Per scan, background patches are centred inside the breast, hold at least `min_breast_fraction`
breast pixels and overlap every lesion by at most `neg_cutoff` (of that lesion's area; and all lesion
pixels together by at most `neg_cutoff` of the patch area). The first `n_hard_negatives` sit on
bright blobs (shuffled), the rest are uniform over all valid centres.

Scans whose mask is incomplete (`mask_complete` false: some lesion has no location) give lesion
patches for the known lesions but no background patches, because any "background" could hold the
unlocated lesion.

Overlaps are counted with integral images, so every candidate costs O(1); the background-validity
map costs O(pixels) plus, per lesion, O(centres whose patch can touch it). Randomness comes from a generator seeded by the
options' seed and the scan's image key, so results do not depend on Beam's ordering.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

import numpy as np

from mammo_tfx.patches import box_sums
from mammo_tfx.patches.blobs import bright_blob_centres
from mammo_tfx.lesion_classes import BACKGROUND, NUM_CLASSES
from mammo_tfx.patches.options import PatchSamplingOptions
from mammo_tfx.patches.regions import Lesion, breast_mask, find_lesions

LESION = "lesion"
HARD_NEGATIVE = "hard_negative"
UNIFORM_BACKGROUND = "background"

# Draws per vectorised round; a round never exceeds the tries left at the current cutoff.
_DRAWS_PER_ROUND = 256
# Guards against float noise when a cutoff is relaxed in 0.05 steps.
_CUTOFF_EPSILON = 1e-9


@dataclasses.dataclass(frozen=True)
class Patch:
    """One sampled patch. `centre` is (row, col) in the working image; `overlap` is the larger of
    the two overlap ratios (lesion pixels inside / lesion area, / patch area) — for background
    patches the largest over all lesions; `cutoff` is the positive cutoff it passed (None for
    background)."""

    pixels: np.ndarray
    patch_class: int
    centre: tuple[int, int]
    overlap: float
    kind: str
    cutoff: Optional[float] = None


def scan_rng(image_key: str, seed: int) -> np.random.Generator:
    """Generator fixed by (seed, image_key) only."""
    digest = hashlib.sha256(f"{seed}:{image_key}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _check_inputs(image: np.ndarray, mask: np.ndarray, image_key: str) -> None:
    if image.ndim != 2:
        raise ValueError(f"scan {image_key}: image must be 2-D, got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(
            f"scan {image_key}: mask shape {mask.shape} differs from image shape {image.shape}")
    if mask.size and (mask.min() < 0 or mask.max() >= NUM_CLASSES):
        raise ValueError(
            f"scan {image_key}: mask codes must be 0..{NUM_CLASSES - 1}, found "
            f"{sorted(int(code) for code in np.unique(mask) if not 0 <= code < NUM_CLASSES)}")


class _OverlapCounter:
    """Lesion pixels inside patches: one integral image per lesion (over its bounding box) and
    one of all lesion pixels together (over the scan)."""

    def __init__(self, lesions: list[Lesion], shape: tuple[int, int], patch_size: int) -> None:
        self.shape = shape
        self.patch_size = patch_size
        self.patch_area = float(patch_size * patch_size)
        self.lesions = lesions
        self.tables = [box_sums.integral_image(lesion.pixels) for lesion in lesions]
        union = np.zeros(shape, dtype=bool)
        for lesion in lesions:
            union[lesion.top:lesion.bottom + 1, lesion.left:lesion.right + 1] |= lesion.pixels
        self.union_table = box_sums.integral_image(union)

    def lesion_ratio(self, index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """max(inside / lesion area, inside / patch area) for patches of one lesion."""
        lesion = self.lesions[index]
        inside = box_sums.patch_sums(self.tables[index], rows, cols, self.patch_size,
                                     origin=(lesion.top, lesion.left))
        return np.maximum(inside / lesion.area, inside / self.patch_area)

    def _touching_centres(self, first: int, last: int, length: int) -> np.ndarray:
        """Centres along one axis whose patch can include pixels first..last."""
        half = self.patch_size // 2
        return np.arange(max(0, first + half - self.patch_size + 1), min(length, last + half + 1))

    def background_ratio_map(self) -> np.ndarray:
        """For every centre: the largest overlap ratio with any lesion (0 without lesions)."""
        height, width = self.shape
        ratio = box_sums.patch_sum_grid(self.union_table, np.arange(height), np.arange(width),
                                        self.patch_size) / self.patch_area
        for lesion, table in zip(self.lesions, self.tables):
            rows = self._touching_centres(lesion.top, lesion.bottom, height)
            cols = self._touching_centres(lesion.left, lesion.right, width)
            inside = box_sums.patch_sum_grid(table, rows, cols, self.patch_size,
                                             origin=(lesion.top, lesion.left))
            window = ratio[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            np.maximum(window, inside / lesion.area, out=window)
        return ratio


def _lesion_centres(lesion: Lesion, index: int, counter: _OverlapCounter,
                    options: PatchSamplingOptions, rng: np.random.Generator
                    ) -> list[tuple[int, int, float, float]]:
    """(row, col, overlap, cutoff) of up to n_lesion_patches accepted centres for one lesion."""
    accepted: list[tuple[int, int, float, float]] = []
    wanted = options.n_lesion_patches
    cutoff = options.pos_cutoff
    if options.centre_first_lesion_patch and wanted > 0:
        row, col = lesion.centroid
        ratio = float(counter.lesion_ratio(index, np.array([row]), np.array([col]))[0])
        if ratio > cutoff:
            accepted.append((row, col, ratio, cutoff))
    while len(accepted) < wanted:
        tries_left = options.max_tries
        while tries_left > 0 and len(accepted) < wanted:
            draws = min(_DRAWS_PER_ROUND, tries_left)
            tries_left -= draws
            rows = rng.integers(lesion.top, lesion.bottom + 1, size=draws)
            cols = rng.integers(lesion.left, lesion.right + 1, size=draws)
            ratios = counter.lesion_ratio(index, rows, cols)
            for hit in np.flatnonzero(ratios > cutoff)[:wanted - len(accepted)]:
                accepted.append((int(rows[hit]), int(cols[hit]), float(ratios[hit]), cutoff))
        next_cutoff = round(cutoff - options.pos_cutoff_step, 6)
        if len(accepted) < wanted and next_cutoff < options.min_pos_cutoff - _CUTOFF_EPSILON:
            break  # Floor reached: this lesion yields fewer patches rather than poor ones.
        cutoff = next_cutoff
    return accepted


def _background_centres(image: np.ndarray, counter: _OverlapCounter,
                        options: PatchSamplingOptions, rng: np.random.Generator
                        ) -> list[tuple[int, int, float, str]]:
    """(row, col, overlap, kind) of up to n_background_patches valid background centres."""
    shape = image.shape
    breast = breast_mask(image, options.breast_threshold)
    breast_fraction = box_sums.patch_sum_grid(
        box_sums.integral_image(breast), np.arange(shape[0]), np.arange(shape[1]),
        options.patch_size) / counter.patch_area
    overlap = counter.background_ratio_map()
    valid = (breast & (breast_fraction >= options.min_breast_fraction)
             & (overlap <= options.neg_cutoff))

    chosen: list[tuple[int, int, float, str]] = []
    if options.n_hard_negatives > 0:
        blobs = bright_blob_centres(image, options.patch_size)
        blobs = blobs[valid[blobs[:, 0], blobs[:, 1]]]
        for row, col in rng.permutation(blobs)[:options.n_hard_negatives]:
            chosen.append((int(row), int(col), float(overlap[row, col]), HARD_NEGATIVE))
        valid = valid.copy()
        for row, col, _, _ in chosen:
            valid[row, col] = False
    remaining = options.n_background_patches - len(chosen)
    valid_flat = np.flatnonzero(valid)
    if remaining > 0 and valid_flat.size:
        picks = rng.choice(valid_flat, size=min(remaining, valid_flat.size), replace=False)
        for row, col in zip(*np.unravel_index(np.sort(picks), shape)):
            chosen.append((int(row), int(col), float(overlap[row, col]), UNIFORM_BACKGROUND))
    return chosen


def sample_scan_patches(image: np.ndarray, mask: np.ndarray, image_key: str,
                        options: PatchSamplingOptions, mask_complete: bool = True) -> list[Patch]:
    """All patches of one scan: lesion patches (per lesion, in scan order) then background ones.

    image: 2-D uint16 working image; mask: class-coded mask of the same shape (0..4).
    Raises ValueError naming the scan on malformed input.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    _check_inputs(image, mask, image_key)
    rng = scan_rng(image_key, options.seed)
    size = options.patch_size
    lesions = find_lesions(mask, options.min_lesion_pixels)
    counter = _OverlapCounter(lesions, image.shape, size)
    padded = box_sums.pad_for_patches(image, size)

    patches = []
    for index, lesion in enumerate(lesions):
        for row, col, ratio, cutoff in _lesion_centres(lesion, index, counter, options, rng):
            patches.append(Patch(box_sums.extract_patch(padded, row, col, size),
                                 lesion.patch_class, (row, col), ratio, LESION, cutoff))
    if mask_complete and options.n_background_patches > 0:
        for row, col, ratio, kind in _background_centres(image, counter, options, rng):
            patches.append(Patch(box_sums.extract_patch(padded, row, col, size),
                                 BACKGROUND, (row, col), ratio, kind))
    return patches
