"""Unit tests of the numpy patch-sampling library (mammo_tfx.patches)."""
from __future__ import annotations

import numpy as np
import pytest

from mammo_tfx.patches import PatchSamplingOptions, sample_scan_patches
from mammo_tfx.patches import box_sums
from mammo_tfx.lesion_classes import BACKGROUND, CALC_BENIGN, MASS_BENIGN, MASS_MALIGNANT
from mammo_tfx.patches.regions import breast_mask, find_lesions
from mammo_tfx.patches.sampler import HARD_NEGATIVE, LESION


def _brute_force_count(indicator: np.ndarray, row: int, col: int, patch_size: int) -> int:
    """Pixels of `indicator` inside the patch centred at (row, col), outside the scan = 0."""
    padded = box_sums.pad_for_patches(indicator.astype(np.int64), patch_size)
    return int(box_sums.extract_patch(padded, row, col, patch_size).sum())


def _ellipse_scan(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A bright half-ellipse 'breast' against the left edge, with texture, on a black background."""
    rows, cols = np.mgrid[:height, :width]
    inside = ((rows - height / 2) / (height * 0.45)) ** 2 + (cols / (width * 0.8)) ** 2 < 1
    texture = np.random.default_rng(seed).normal(0, 1500, (height, width))
    return np.where(inside, 20000 + texture, 0).clip(0, 65535).astype(np.uint16)


def test_defaults_are_the_seed_s10_set_and_options_round_trip() -> None:
    s10 = PatchSamplingOptions()
    assert (s10.patch_size, s10.n_lesion_patches, s10.n_background_patches) == (224, 10, 10)
    assert (s10.n_hard_negatives, s10.centre_first_lesion_patch) == (5, False)
    assert (s10.pos_cutoff, s10.neg_cutoff) == (0.9, 0.35)
    s30 = PatchSamplingOptions(patch_size=56, n_lesion_patches=30, n_background_patches=30, n_hard_negatives=15)
    assert PatchSamplingOptions.from_json(s30.to_json()) == s30
    assert PatchSamplingOptions.from_dict(s10.to_dict()) == s10
    with pytest.raises(ValueError, match="unknown PatchSamplingOptions key patchsize;"):
        PatchSamplingOptions.from_dict({"patchsize": 3})
    with pytest.raises(ValueError, match="n_hard_negatives"):
        PatchSamplingOptions(n_background_patches=2, n_hard_negatives=3)
    with pytest.raises(ValueError, match="min_pos_cutoff"):
        PatchSamplingOptions(pos_cutoff=0.5, min_pos_cutoff=0.6)


def test_patch_sums_match_brute_force_including_borders_and_windows() -> None:
    rng = np.random.default_rng(1)
    indicator = rng.random((13, 11)) < 0.3
    table = box_sums.integral_image(indicator)
    for patch_size in (4, 5):
        rows, cols = np.arange(13), np.arange(11)
        grid = box_sums.patch_sum_grid(table, rows, cols, patch_size)
        expected = np.array([[_brute_force_count(indicator, r, c, patch_size) for c in cols]
                             for r in rows])
        np.testing.assert_array_equal(grid, expected)
        np.testing.assert_array_equal(
            box_sums.patch_sums(table, np.array([0, 12, 6]), np.array([10, 0, 5]), patch_size),
            expected[[0, 12, 6], [10, 0, 5]])
    # A table over a window (origin = its top-left corner) counts the same pixels.
    window = np.zeros_like(indicator)
    window[4:9, 3:8] = indicator[4:9, 3:8]
    local = box_sums.integral_image(indicator[4:9, 3:8])
    np.testing.assert_array_equal(
        box_sums.patch_sum_grid(local, np.arange(13), np.arange(11), 5, origin=(4, 3)),
        box_sums.patch_sum_grid(box_sums.integral_image(window), np.arange(13), np.arange(11), 5))


def test_lesions_take_the_majority_class_and_ties_follow_priority() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = MASS_BENIGN
    mask[2:4, 2:5] = CALC_BENIGN  # 6 of 16 pixels: mass benign keeps the majority
    mask[10:12, 10:12] = MASS_BENIGN
    mask[10:12, 12:14] = MASS_MALIGNANT  # 4 vs 4: malignant wins the tie
    mask[18, 18] = CALC_BENIGN
    lesions = find_lesions(mask, min_pixels=2)
    assert [(lesion.patch_class, lesion.area) for lesion in lesions] == [
        (MASS_BENIGN, 16), (MASS_MALIGNANT, 8)]
    assert (lesions[1].top, lesions[1].left, lesions[1].bottom, lesions[1].right) == (10, 10, 11, 13)
    assert len(find_lesions(mask)) == 3


def test_border_lesion_patches_are_zero_padded_and_really_overlap() -> None:
    image = _ellipse_scan(40, 32)
    mask = np.zeros(image.shape, np.uint8)
    mask[0:3, 0:4] = CALC_BENIGN  # in the top-left corner
    options = PatchSamplingOptions(patch_size=8, n_lesion_patches=6, n_background_patches=0,
                                   n_hard_negatives=0, max_tries=200)
    patches = sample_scan_patches(image, mask, "border", options)
    assert len(patches) == 6
    for patch in patches:
        assert patch.kind == LESION and patch.patch_class == CALC_BENIGN
        assert patch.pixels.shape == (8, 8) and patch.pixels.dtype == np.uint16
        row, col = patch.centre
        inside = _brute_force_count(mask > 0, row, col, 8)
        assert patch.overlap == pytest.approx(max(inside / 12, inside / 64))
        assert patch.overlap > patch.cutoff == 0.9
        expected = box_sums.extract_patch(box_sums.pad_for_patches(image, 8), row, col, 8)
        np.testing.assert_array_equal(patch.pixels, expected)
    # Centres near the corner reach outside the scan: those rows/columns are zero padding.
    assert any(np.all(patch.pixels[0] == 0) for patch in patches)


def _blob_with_tail() -> np.ndarray:
    """A 6x6 blob with a 1-pixel tail of 24: a 20-pixel patch holds at most 50 of its 60 pixels,
    so the best overlap is 0.833 and cutoffs 0.9 and 0.85 cannot be met."""
    mask = np.zeros((40, 60), np.uint8)
    mask[17:23, 10:16] = MASS_MALIGNANT
    mask[20, 16:40] = MASS_MALIGNANT
    return mask


def test_cutoff_relaxes_step_by_step_and_stops_at_the_floor() -> None:
    image = np.full((40, 60), 30000, np.uint16)
    mask = _blob_with_tail()
    options = PatchSamplingOptions(patch_size=20, n_lesion_patches=4, n_background_patches=0,
                                   n_hard_negatives=0, max_tries=100)
    patches = sample_scan_patches(image, mask, "tail", options)
    assert len(patches) == 4
    assert max(patch.cutoff for patch in patches) == pytest.approx(0.8)
    for patch in patches:
        assert patch.overlap > patch.cutoff
        assert patch.overlap == pytest.approx(
            _brute_force_count(mask > 0, *patch.centre, 20) / 60)
    floored = PatchSamplingOptions(**{**options.to_dict(), "min_pos_cutoff": 0.85})
    assert sample_scan_patches(image, mask, "tail", floored) == []


def test_background_patches_lie_in_the_breast_away_from_lesions() -> None:
    image = _ellipse_scan(96, 80, seed=4)
    image[30:33, 20:23] = 60000  # bright specks: hard-negative candidates
    image[70:72, 35:37] = 60000
    mask = np.zeros(image.shape, np.uint8)
    mask[40:52, 10:22] = MASS_MALIGNANT
    options = PatchSamplingOptions(patch_size=16, n_lesion_patches=2, n_background_patches=8,
                                   n_hard_negatives=2, max_tries=100)
    patches = sample_scan_patches(image, mask, "scan-1", options)
    background = [patch for patch in patches if patch.patch_class == BACKGROUND]
    assert len(background) == 8
    assert sum(patch.kind == HARD_NEGATIVE for patch in background) == 2
    breast = breast_mask(image, options.breast_threshold)
    lesion_area = int((mask > 0).sum())
    for patch in background:
        row, col = patch.centre
        assert breast[row, col]
        assert _brute_force_count(breast, row, col, 16) / 256 >= options.min_breast_fraction
        inside = _brute_force_count(mask > 0, row, col, 16)
        assert max(inside / lesion_area, inside / 256) <= options.neg_cutoff
        assert patch.overlap == pytest.approx(max(inside / lesion_area, inside / 256))
    assert len({patch.centre for patch in background}) == 8
    # An incomplete mask (a lesion without location) gives no background patches.
    incomplete = sample_scan_patches(image, mask, "scan-1", options, mask_complete=False)
    assert [patch.patch_class for patch in incomplete] == [MASS_MALIGNANT] * 2


def test_sampling_is_deterministic_per_image_key() -> None:
    image = _ellipse_scan(64, 48, seed=2)
    mask = np.zeros(image.shape, np.uint8)
    mask[20:30, 5:15] = CALC_BENIGN
    options = PatchSamplingOptions(patch_size=12, n_lesion_patches=3, n_background_patches=3,
                                   n_hard_negatives=1, max_tries=50)

    def centres(key: str) -> list[tuple[int, int]]:
        return [patch.centre for patch in sample_scan_patches(image, mask, key, options)]

    first = centres("key-a")
    centres("key-b")  # another scan in between must not change key-a's draw
    assert centres("key-a") == first
    assert centres("key-b") != first


def test_s1_centres_the_lesion_patch_on_the_centroid() -> None:
    image = _ellipse_scan(64, 48)
    mask = np.zeros(image.shape, np.uint8)
    mask[20:25, 10:17] = MASS_BENIGN
    options = PatchSamplingOptions(patch_size=12, n_lesion_patches=1, n_background_patches=1, n_hard_negatives=0,
                                   centre_first_lesion_patch=True)  # the seed's S1 set
    lesion_patches = [p for p in sample_scan_patches(image, mask, "s1", options) if p.kind == LESION]
    assert [patch.centre for patch in lesion_patches] == [(22, 13)]


def test_malformed_scans_are_rejected_with_the_scan_named() -> None:
    options = PatchSamplingOptions(patch_size=8)
    image = np.zeros((10, 10), np.uint16)
    with pytest.raises(ValueError, match="scan bad-1: mask shape"):
        sample_scan_patches(image, np.zeros((10, 9), np.uint8), "bad-1", options)
    with pytest.raises(ValueError, match=r"scan bad-2: mask codes must be 0..4, found \[7\]"):
        sample_scan_patches(image, np.full((10, 10), 7, np.uint8), "bad-2", options)
    with pytest.raises(ValueError, match="scan bad-3: image must be 2-D"):
        sample_scan_patches(np.zeros((10, 10, 1)), np.zeros((10, 10, 1)), "bad-3", options)
