"""Bright-blob candidates for hard-negative background patches.

The seed found hard negatives with OpenCV's blob detector on the 8-bit image; without OpenCV we
use positive local maxima of a difference of Gaussians (a band-pass that responds to bright
spots a few to tens of pixels wide), with scales tied to the patch size.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# Scales relative to the patch side: at 224 px, sigma 7 px (small bright spots) minus
# sigma 28 px (local background). The image is block-averaged first so the filters stay cheap.
_SMALL_SIGMA_FRACTION = 1.0 / 32.0
_LARGE_SIGMA_FRACTION = 1.0 / 8.0
# Maxima closer than a quarter patch are one blob.
_NEIGHBOURHOOD_FRACTION = 1.0 / 4.0
# Block averaging keeps the small sigma at about 2 pixels of the reduced image.
_PIXELS_PER_SMALL_SIGMA = 2.0


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    height = image.shape[0] // factor * factor
    width = image.shape[1] // factor * factor
    blocks = image[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(1, 3))


def bright_blob_centres(image: np.ndarray, patch_size: int) -> np.ndarray:
    """(N, 2) int array of (row, col) working-image centres of bright blobs, strongest first."""
    factor = max(1, int(patch_size * _SMALL_SIGMA_FRACTION / _PIXELS_PER_SMALL_SIGMA))
    if image.shape[0] < factor or image.shape[1] < factor:
        return np.zeros((0, 2), dtype=np.int64)
    reduced = _block_mean(image.astype(np.float32), factor)
    small_sigma = max(1.0, patch_size * _SMALL_SIGMA_FRACTION / factor)
    large_sigma = max(2.0 * small_sigma, patch_size * _LARGE_SIGMA_FRACTION / factor)
    response = (ndimage.gaussian_filter(reduced, small_sigma)
                - ndimage.gaussian_filter(reduced, large_sigma))
    neighbourhood = max(3, int(patch_size * _NEIGHBOURHOOD_FRACTION / factor) | 1)
    is_peak = (response == ndimage.maximum_filter(response, size=neighbourhood)) & (response > 0)
    rows, cols = np.nonzero(is_peak)
    order = np.argsort(-response[rows, cols], kind="stable")
    # Back to working coordinates: centre of each averaged block.
    centres = np.stack([rows[order], cols[order]], axis=1) * factor + factor // 2
    return centres.astype(np.int64)
