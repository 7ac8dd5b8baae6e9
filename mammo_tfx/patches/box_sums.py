"""O(1) pixel counts inside square patches via integral images (summed-area tables).

A patch of side P "centred" at working pixel (row, col) covers rows [row - P//2, row - P//2 + P)
and the same for columns; parts outside the scan count as zero (the seed zero-pads the scan by
half a patch, so border centres are allowed). A table may cover only a window of the scan (e.g.
one lesion's bounding box): pass the window's top-left corner as `origin`.
"""
from __future__ import annotations

import numpy as np


def integral_image(indicator: np.ndarray) -> np.ndarray:
    """Summed-area table with a leading zero row/column: table[r, c] = indicator[:r, :c].sum()."""
    table = np.zeros((indicator.shape[0] + 1, indicator.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(indicator, axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
    return table


def _spans(centres: np.ndarray, patch_size: int, offset: int,
           length: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch start/stop along one axis in table coordinates, clipped to the table."""
    starts = np.asarray(centres) - patch_size // 2 - offset
    return np.clip(starts, 0, length), np.clip(starts + patch_size, 0, length)


def patch_sums(table: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch_size: int,
               origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Counts inside the patches centred at each (rows[i], cols[i])."""
    row_start, row_stop = _spans(rows, patch_size, origin[0], table.shape[0] - 1)
    col_start, col_stop = _spans(cols, patch_size, origin[1], table.shape[1] - 1)
    return (table[row_stop, col_stop] - table[row_start, col_stop]
            - table[row_stop, col_start] + table[row_start, col_start])


def patch_sum_grid(table: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch_size: int,
                   origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Counts inside the patch centred at every (row, col) of the grid rows x cols."""
    row_start, row_stop = _spans(rows, patch_size, origin[0], table.shape[0] - 1)
    col_start, col_stop = _spans(cols, patch_size, origin[1], table.shape[1] - 1)
    return (table[np.ix_(row_stop, col_stop)] - table[np.ix_(row_start, col_stop)]
            - table[np.ix_(row_stop, col_start)] + table[np.ix_(row_start, col_start)])


def pad_for_patches(image: np.ndarray, patch_size: int) -> np.ndarray:
    """Zero-pads a scan so that the patch centred at (row, col) starts at padded[row, col]."""
    before = patch_size // 2
    return np.pad(image, ((before, patch_size - before), (before, patch_size - before)))


def extract_patch(padded: np.ndarray, row: int, col: int, patch_size: int) -> np.ndarray:
    """The patch centred at working pixel (row, col) from a `pad_for_patches` array (a copy)."""
    return padded[row:row + patch_size, col:col + patch_size].copy()
