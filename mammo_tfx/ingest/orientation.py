"""Which image edge the breast touches (the chest-wall side), from pixel content."""
from __future__ import annotations

import numpy as np


def breast_side(image: np.ndarray) -> str:
    """"L" if the breast lies against the left image edge, else "R" (CBIS-DDSM convention for laterality).

    The breast is the bright mass of the image and the chest wall is where it is widest, so the half of
    the image holding more signal is the chest-wall side. Works on any size; use the small resized image.
    """
    half = image.shape[1] // 2
    left_signal = float(np.sum(image[:, :half], dtype=np.float64))
    right_signal = float(np.sum(image[:, image.shape[1] - half:], dtype=np.float64))
    return "L" if left_signal >= right_signal else "R"
