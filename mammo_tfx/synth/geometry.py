"""Breast outline of a phantom: a rounded half-ellipse against the chest wall, plus the pectoral muscle on MLO views.

Everything here is in the *left-breast frame*: chest wall on column 0, nipple pointing right. The renderer mirrors
right breasts at the very end, so geometry and lesion placement only need one orientation.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

VIEWS: tuple[str, ...] = ("CC", "MLO")


@dataclasses.dataclass(frozen=True)
class BreastGeometry:
    """Shape parameters of one breast, in pixels of a ``height x width`` image (left-breast frame)."""

    height: int
    width: int
    view: str
    center_row: float  # row of the nipple axis at the chest wall
    extent: float  # chest wall to nipple, along the columns
    half_height_above: float  # breast height above the nipple axis at the chest wall
    half_height_below: float  # ... and below it (larger above on MLO views, where the axilla is cut by the edge)
    wobble: tuple[tuple[float, float, float], ...]  # (harmonic, amplitude, phase): keeps the outline from being a perfect ellipse
    pectoral_width: float  # MLO only: muscle width on row 0; 0 means no muscle
    pectoral_height: float  # MLO only: muscle height on column 0
    pectoral_bow: float  # bends the muscle edge (0 = straight)

    @property
    def nipple_rc(self) -> tuple[float, float]:
        return self.center_row, self.extent

    def normalized_radius(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Elliptical radius: < 1 inside the breast, 1 on the skin. ``rows``/``cols`` broadcast against each other."""
        u = np.asarray(cols, dtype=np.float32) / self.extent
        v = self.axis_offset(rows)
        radius = np.sqrt(u * u + v * v)
        theta = np.arctan2(v, u)
        outline = np.ones_like(radius)
        for harmonic, amplitude, phase in self.wobble:
            outline = outline + amplitude * np.cos(harmonic * theta + phase)
        # Behind the chest wall (u < 0) there is no breast.
        return np.where(u >= 0, radius / outline, np.float32(9.0)).astype(np.float32)

    def axis_offset(self, rows: np.ndarray) -> np.ndarray:
        """Signed distance of ``rows`` from the nipple axis, in units of the breast half-height on that side."""
        offset = np.asarray(rows, dtype=np.float32) - self.center_row
        return np.where(offset < 0, offset / self.half_height_above, offset / self.half_height_below).astype(np.float32)

    def pectoral_level(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Implicit function of the pectoral muscle: < 1 inside it. All ones-or-more when there is no muscle."""
        if self.pectoral_width <= 0:
            return np.full(np.broadcast(rows, cols).shape, 9.0, dtype=np.float32)
        x = np.asarray(cols, dtype=np.float32) / self.pectoral_width
        y = np.asarray(rows, dtype=np.float32) / self.pectoral_height
        return (x + y + self.pectoral_bow * x * y).astype(np.float32)

    def sample_lesion_center(
        self,
        radius_px: float,
        rng: np.random.Generator,
        avoid: Sequence[tuple[float, float, float]] = (),
    ) -> tuple[float, float]:
        """A lesion centre (row, col) whose disc of ``radius_px`` lies inside the breast and off the muscle.

        ``avoid`` lists discs (row, col, radius) of lesions already placed; they are kept apart so their
        annotation masks do not merge. Falls back to a spot in the middle of the breast when the breast is too
        crowded (never fails).
        """
        shortest_axis = min(self.extent, self.half_height_above, self.half_height_below)
        for attempt in range(400):
            # Relax the requirements gradually rather than give up on a crowded or small breast.
            slack = attempt // 100
            theta = rng.uniform(-1.25, 1.25)
            rho = rng.uniform(0.15, 0.82)
            half_height = self.half_height_above if theta < 0 else self.half_height_below
            row = self.center_row + rho * math.sin(theta) * half_height
            col = rho * math.cos(theta) * self.extent
            if not (radius_px <= row <= self.height - 1 - radius_px and radius_px <= col <= self.width - 1 - radius_px):
                continue
            if float(self.normalized_radius(np.float32(row), np.float32(col))) + radius_px / shortest_axis > 0.9:
                continue
            if self._touches_pectoral(row, col, radius_px * 1.3):
                continue
            if slack < 3 and any(
                math.hypot(row - r, col - c) < (radius_px + rad) * (1.6 - 0.2 * slack) for r, c, rad in avoid
            ):
                continue
            return row, col
        return self.center_row, 0.45 * self.extent

    def _touches_pectoral(self, row: float, col: float, radius_px: float) -> bool:
        if self.pectoral_width <= 0:
            return False
        angles = np.linspace(0, 2 * math.pi, 12, endpoint=False)
        rows = np.concatenate([[row], row + radius_px * np.sin(angles)])
        cols = np.concatenate([[col], col + radius_px * np.cos(angles)])
        return bool(np.any(self.pectoral_level(rows, cols) < 1.05))


def sample_breast_geometry(height: int, width: int, view: str, rng: np.random.Generator) -> BreastGeometry:
    """Random plausible breast outline for a ``height x width`` image and a CC or MLO view."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    wobble = tuple(
        (float(k), float(rng.uniform(0.004, 0.02)), float(rng.uniform(0, 2 * math.pi))) for k in (2, 3, 4, 5)
    )
    if view == "CC":
        return BreastGeometry(
            height=height,
            width=width,
            view=view,
            center_row=height * rng.uniform(0.46, 0.54),
            extent=width * rng.uniform(0.68, 0.86),
            half_height_above=height * rng.uniform(0.38, 0.45),
            half_height_below=height * rng.uniform(0.38, 0.45),
            wobble=wobble,
            pectoral_width=0.0,
            pectoral_height=1.0,
            pectoral_bow=0.0,
        )
    # MLO: the breast hangs lower and runs up into the axilla, cut by the top edge, where the muscle shows.
    return BreastGeometry(
        height=height,
        width=width,
        view=view,
        center_row=height * rng.uniform(0.52, 0.58),
        extent=width * rng.uniform(0.7, 0.88),
        half_height_above=height * rng.uniform(0.66, 0.76),
        half_height_below=height * rng.uniform(0.36, 0.42),
        wobble=wobble,
        pectoral_width=width * rng.uniform(0.22, 0.36),
        pectoral_height=height * rng.uniform(0.35, 0.55),
        pectoral_bow=float(rng.uniform(-0.35, 0.25)),
    )
