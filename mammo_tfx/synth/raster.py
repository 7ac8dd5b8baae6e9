"""Anti-aliased drawing of polygons and lines into a small float window of a larger image.

Lesion details (specks, spicules) are only a few pixels wide, so they are drawn with PIL on a supersampled
canvas and block-averaged back down; that keeps their area (and so their brightness after any later resize)
roughly right instead of snapping to whole pixels.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


class SupersampledCanvas:
    """A window ``[top, top+height) x [left, left+width)`` of an image, drawn at ``supersample`` times the resolution.

    Coordinates passed to the drawing methods are absolute image coordinates ``(x=col, y=row)`` with pixel centres
    at integers. Fill levels are 0..1 (quantised to 1/255).
    """

    def __init__(self, top: int, left: int, height: int, width: int, supersample: int = 4) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"empty canvas {height}x{width}")
        self.top, self.left, self.height, self.width = top, left, height, width
        self.supersample = supersample
        self._image = Image.new("L", (width * supersample, height * supersample), 0)
        self._draw = ImageDraw.Draw(self._image)

    def _to_canvas(self, xy: np.ndarray) -> list[tuple[float, float]]:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        cols = (xy[:, 0] - self.left + 0.5) * self.supersample - 0.5
        rows = (xy[:, 1] - self.top + 0.5) * self.supersample - 0.5
        return list(zip(cols.tolist(), rows.tolist()))

    def polygon(self, xy: np.ndarray, level: float = 1.0) -> None:
        """Fill the polygon with vertices ``xy`` (n x 2, col,row)."""
        self._draw.polygon(self._to_canvas(xy), fill=_level_byte(level))

    def line(self, xy: np.ndarray, width_px: float, level: float = 1.0) -> None:
        """Draw a polyline through ``xy`` with a width given in image pixels."""
        width = max(1, int(round(width_px * self.supersample)))
        self._draw.line(self._to_canvas(xy), fill=_level_byte(level), width=width, joint="curve")

    def coverage(self) -> np.ndarray:
        """The drawing block-averaged back to image resolution, float32 in [0, 1]."""
        pixels = np.asarray(self._image, dtype=np.float32) / 255.0
        s = self.supersample
        return pixels.reshape(self.height, s, self.width, s).mean(axis=(1, 3))


def _level_byte(level: float) -> int:
    return int(round(255 * min(max(level, 0.0), 1.0)))


def fill_polygon_mask(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``height x width`` mask of the polygon ``xy`` (n x 2, col,row), drawn at image resolution."""
    image = Image.new("L", (width, height), 0)
    points = [tuple(p) for p in np.asarray(xy, dtype=np.float64).reshape(-1, 2).tolist()]
    ImageDraw.Draw(image).polygon(points, fill=1, outline=1)
    return np.asarray(image, dtype=bool)


def add_window(target: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Add ``patch`` into ``target`` at (top, left) in place, clipping whatever falls outside ``target``."""
    height, width = target.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + patch.shape[0], height), min(left + patch.shape[1], width)
    if r1 <= r0 or c1 <= c0:
        return
    target[r0:r1, c0:c1] += patch[r0 - top : r1 - top, c0 - left : c1 - left]
