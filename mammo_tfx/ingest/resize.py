"""Geometry of the working image: stretch or pad, for the image and its class masks alike.

stretch: the source is resized exactly to height x width (aspect ratio not kept, as in the seed).
pad: the source is scaled by one factor to fit inside height x width; the rest is filled with 0 at the
    bottom and on the side away from the breast, so the chest wall stays on the image edge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mammo_tfx.names import PAD, STRETCH


@dataclass(frozen=True)
class ContentBox:
    """Where the resized source sits inside the working image (rows x cols)."""

    top: int
    left: int
    height: int
    width: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.top, self.left, self.height, self.width


def content_size(source_shape: tuple[int, int], height: int, width: int, mode: str) -> tuple[int, int]:
    """(rows, cols) the source is resized to before any padding."""
    if mode == STRETCH:
        return height, width
    if mode != PAD:
        raise ValueError(f"unknown resize mode {mode!r}")
    rows, cols = source_shape
    factor = min(height / rows, width / cols)
    return max(1, min(height, round(rows * factor))), max(1, min(width, round(cols * factor)))


def place_content(size: tuple[int, int], height: int, width: int, breast_side: str) -> ContentBox:
    """Content at the top, against the left edge unless the breast touches the right edge."""
    rows, cols = size
    left = width - cols if breast_side == "R" else 0
    return ContentBox(top=0, left=left, height=rows, width=cols)


def resize_image(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bicubic resize in float32 (PIL mode "F": one fast C pass, no 16-bit precision loss)."""
    rows, cols = size
    if pixels.dtype in (np.uint8, np.uint16):
        source = Image.fromarray(pixels).convert("F")  # cheaper than numpy's astype for these types
    else:
        source = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    if (source.height, source.width) == (rows, cols):
        return np.asarray(source, dtype=np.float32)
    return np.asarray(source.resize((cols, rows), Image.Resampling.BICUBIC), dtype=np.float32)


def resize_binary_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask so that every target pixel touching any foreground source pixel is foreground.

    Box filter on float values, thresholded at > 0: a one-pixel calcification never vanishes when
    shrinking. Only the foreground's bounding region is resampled (PIL's `box`), which keeps small lesions
    on big images cheap.
    """
    rows, cols = size
    result = np.zeros((rows, cols), dtype=bool)
    row_hits = np.flatnonzero(mask.any(axis=1))
    if row_hits.size == 0:
        return result
    col_hits = np.flatnonzero(mask[row_hits[0]:row_hits[-1] + 1].any(axis=0))
    source_rows, source_cols = mask.shape
    row_factor, col_factor = rows / source_rows, cols / source_cols
    # Target pixels whose footprint can overlap the foreground bounding box.
    top = max(0, math.floor(row_hits[0] * row_factor))
    bottom = min(rows, math.ceil((row_hits[-1] + 1) * row_factor))
    left = max(0, math.floor(col_hits[0] * col_factor))
    right = min(cols, math.ceil((col_hits[-1] + 1) * col_factor))
    # Their footprint in source coordinates, and an integer crop holding it.
    box = (left / col_factor, top / row_factor, right / col_factor, bottom / row_factor)
    crop_top, crop_left = math.floor(box[1]), math.floor(box[0])
    crop_bottom = min(source_rows, math.ceil(box[3]))
    crop_right = min(source_cols, math.ceil(box[2]))
    crop = Image.fromarray(mask[crop_top:crop_bottom, crop_left:crop_right].astype(np.float32), mode="F")
    local_box = (box[0] - crop_left, box[1] - crop_top, box[2] - crop_left, box[3] - crop_top)
    resized = crop.resize((right - left, bottom - top), Image.Resampling.BOX, box=local_box)
    result[top:bottom, left:right] = np.asarray(resized) > 0
    return result


def paste(content: np.ndarray, box: ContentBox, height: int, width: int) -> np.ndarray:
    """Content on a zero canvas of the working size (returns content itself when it fills the canvas)."""
    if content.shape == (height, width):
        return content
    canvas = np.zeros((height, width), dtype=content.dtype)
    canvas[box.top:box.top + box.height, box.left:box.left + box.width] = content
    return canvas
