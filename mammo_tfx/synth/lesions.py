"""Lesion appearance: masses (benign smooth / malignant spiculated) and calcification clusters.

The benign/malignant difference lives in the pixels, following the BI-RADS descriptors radiologists use:
benign masses are round/oval with a sharp margin, malignant ones irregular, ill-defined and spiculated; benign
calcifications are few large round specks, malignant ones many fine pleomorphic specks, partly in lines and
branches. Sizes and contrast ranges of the two classes overlap so that the margin/shape, not the brightness or
size, is what separates them.

Detail sizes (speck radius, spicule width) are given in pixels of the 1152-row working image and multiplied by
``unit`` = image rows / 1152, so that a phantom keeps the same look at any resolution.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from mammo_tfx.synth.raster import SupersampledCanvas

LESION_KINDS: tuple[str, ...] = ("mass", "calcification")
WORKING_ROWS = 1152

# Diameters as a fraction of the image height (masses 5-12 %, calcification clusters 4-8 %).
MASS_RADIUS_FRACTION = (0.025, 0.06)
CLUSTER_RADIUS_FRACTION = (0.02, 0.04)


@dataclasses.dataclass(frozen=True)
class LesionShape:
    """Where a lesion is and what its annotation looks like, in image pixel coordinates (x = col, y = row)."""

    kind: str
    malignant: bool
    center_rc: tuple[float, float]
    radius_px: float
    outline_xy: np.ndarray  # polygon a reader would draw around the lesion (n x 2)
    speck_xy: np.ndarray  # calcification speck centres (k x 2); empty for masses

    @property
    def speck_count(self) -> int:
        return int(self.speck_xy.shape[0])

    def mirrored(self, width: int) -> LesionShape:
        """The same lesion after flipping the image left-right."""
        return dataclasses.replace(
            self,
            center_rc=(self.center_rc[0], width - 1 - self.center_rc[1]),
            outline_xy=_mirror_x(self.outline_xy, width),
            speck_xy=_mirror_x(self.speck_xy, width),
        )

    def shifted(self, d_row: float, d_col: float) -> LesionShape:
        """The same lesion after moving the image content by (d_row, d_col)."""
        offset = np.array([d_col, d_row])
        return dataclasses.replace(
            self,
            center_rc=(self.center_rc[0] + d_row, self.center_rc[1] + d_col),
            outline_xy=self.outline_xy + offset,
            speck_xy=self.speck_xy + offset if self.speck_xy.size else self.speck_xy,
        )


def _mirror_x(xy: np.ndarray, width: int) -> np.ndarray:
    if xy.size == 0:
        return xy
    mirrored = xy.copy()
    mirrored[:, 0] = width - 1 - mirrored[:, 0]
    return mirrored


@dataclasses.dataclass(frozen=True)
class LesionStamp:
    """A lesion's added brightness over the window starting at (top, left), plus its annotation shape."""

    shape: LesionShape
    top: int
    left: int
    density: np.ndarray


def footprint_radius(kind: str, malignant: bool, radius_px: float) -> float:
    """Radius to keep free around a lesion when placing it (spicules reach beyond the mass core)."""
    return radius_px * (1.5 if (kind == "mass" and malignant) else 1.1)


def sample_lesion_radius(kind: str, image_rows: int, rng: np.random.Generator) -> float:
    """A realistic lesion radius in pixels for an image of ``image_rows`` rows."""
    low, high = MASS_RADIUS_FRACTION if kind == "mass" else CLUSTER_RADIUS_FRACTION
    return float(image_rows * rng.uniform(low, high))


def draw_lesion(
    kind: str, malignant: bool, center_rc: tuple[float, float], radius_px: float, unit: float, rng: np.random.Generator
) -> LesionStamp:
    """Render one lesion of ``kind`` ("mass" or "calcification") centred at ``center_rc``."""
    if kind == "mass":
        return draw_mass(center_rc, radius_px, malignant, unit, rng)
    if kind == "calcification":
        return draw_calcification_cluster(center_rc, radius_px, malignant, unit, rng)
    raise ValueError(f"lesion kind must be one of {LESION_KINDS}, got {kind!r}")


def _outline(center_rc: tuple[float, float], radii: np.ndarray, theta: np.ndarray, aspect: float, rotation: float) -> np.ndarray:
    x = radii * np.cos(theta)
    y = radii * np.sin(theta) * aspect
    cos_r, sin_r = math.cos(rotation), math.sin(rotation)
    cols = center_rc[1] + x * cos_r - y * sin_r
    rows = center_rc[0] + x * sin_r + y * cos_r
    return np.stack([cols, rows], axis=1)


def _harmonic_radii(theta: np.ndarray, radius: float, amplitudes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    radii = np.ones_like(theta)
    for harmonic, amplitude in enumerate(amplitudes, start=2):
        radii += amplitude * np.cos(harmonic * theta + rng.uniform(0, 2 * math.pi))
    return radius * radii


def _window(center_rc: tuple[float, float], half_size: float) -> tuple[int, int, int]:
    half = int(math.ceil(half_size))
    return int(round(center_rc[0])) - half, int(round(center_rc[1])) - half, 2 * half + 1


def draw_mass(
    center_rc: tuple[float, float], radius_px: float, malignant: bool, unit: float, rng: np.random.Generator
) -> LesionStamp:
    """A mass: smooth oval with a sharp margin (benign) or irregular, blurred, spiculated core (malignant)."""
    contrast = rng.uniform(0.14, 0.26)
    theta = np.linspace(0, 2 * math.pi, 120, endpoint=False)
    if malignant:
        amplitudes = rng.uniform(0.02, 0.09, size=7) * np.sqrt(3.0 / np.arange(2, 9))
        radii = _harmonic_radii(theta, radius_px, amplitudes, rng)
        # Fine jaggedness on top of the lobulation: the margin is irregular at every scale.
        jitter = ndimage.gaussian_filter1d(rng.normal(0, 1, theta.size), 2.0, mode="wrap")
        radii *= 1 + 0.12 * jitter / max(float(np.abs(jitter).max()), 1e-6)
        aspect = rng.uniform(0.75, 1.0)
        margin_blur = radius_px * rng.uniform(0.08, 0.16)
        spicule_reach = radius_px * 1.6
    else:
        radii = _harmonic_radii(theta, radius_px, rng.uniform(0.0, 0.05, size=2), rng)
        aspect = rng.uniform(0.65, 1.0)
        margin_blur = 0.7 * unit
        spicule_reach = 0.0
    outline = _outline(center_rc, radii, theta, aspect, rng.uniform(0, math.pi))
    top, left, size = _window(center_rc, radius_px * 1.25 + spicule_reach + 4 * margin_blur + 3)

    core_canvas = SupersampledCanvas(top, left, size, size, supersample=2)
    core_canvas.polygon(outline)
    core = ndimage.gaussian_filter(core_canvas.coverage(), margin_blur)
    rows = np.arange(top, top + size, dtype=np.float32)[:, None] - center_rc[0]
    cols = np.arange(left, left + size, dtype=np.float32)[None, :] - center_rc[1]
    relative_distance = np.sqrt(rows * rows + cols * cols) / radius_px
    # Denser in the middle (thicker lesion), as a compressed sphere would be.
    dome = 0.7 + 0.3 * np.sqrt(np.clip(1 - relative_distance**2, 0, 1))
    density = core * dome
    if malignant:
        texture = ndimage.gaussian_filter(rng.normal(0, 1, core.shape).astype(np.float32), max(radius_px / 8, 1.0))
        texture /= max(float(np.abs(texture).max()), 1e-6)
        density *= 1 + 0.2 * texture
        density = np.maximum(density, _spicules(center_rc, outline, radius_px, unit, (top, left, size), rng))
    shape = LesionShape(
        kind="mass",
        malignant=malignant,
        center_rc=(float(center_rc[0]), float(center_rc[1])),
        radius_px=float(np.mean(np.hypot(outline[:, 0] - center_rc[1], outline[:, 1] - center_rc[0]))),
        outline_xy=outline,
        speck_xy=np.zeros((0, 2)),
    )
    return LesionStamp(shape, top, left, (contrast * density).astype(np.float32))


def _spicules(
    center_rc: tuple[float, float],
    outline: np.ndarray,
    radius_px: float,
    unit: float,
    window: tuple[int, int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """Thin tapering lines radiating out of the mass core, slightly bent."""
    top, left, size = window
    canvas = SupersampledCanvas(top, left, size, size, supersample=2)
    for _ in range(int(rng.integers(8, 21))):
        start = outline[int(rng.integers(0, len(outline)))]
        heading = math.atan2(start[1] - center_rc[0], start[0] - center_rc[1])
        # Start inside the core so the spicule grows out of it rather than floating next to it.
        point = np.array([center_rc[1], center_rc[0]]) + 0.7 * (start - np.array([center_rc[1], center_rc[0]]))
        segment = radius_px * rng.uniform(0.6, 1.5) / 3
        width = unit * rng.uniform(1.6, 3.0)
        level = rng.uniform(0.55, 0.9)
        for taper in (1.0, 0.7, 0.45):
            heading += rng.uniform(-0.18, 0.18)
            end = point + segment * np.array([math.cos(heading), math.sin(heading)])
            canvas.line(np.stack([point, end]), width * taper, level)
            point = end
    return ndimage.gaussian_filter(canvas.coverage(), 0.5 * unit)


def draw_calcification_cluster(
    center_rc: tuple[float, float], radius_px: float, malignant: bool, unit: float, rng: np.random.Generator
) -> LesionStamp:
    """A cluster of calcifications: 3-6 large round specks (benign) or 12-30 fine pleomorphic ones (malignant)."""
    if malignant:
        count = int(rng.integers(12, 31))
        speck_radii = unit * rng.uniform(1.4, 2.7, size=count)
        spacing, peak = 1.4, rng.uniform(0.28, 0.42)
    else:
        count = int(rng.integers(3, 7))
        speck_radii = unit * rng.uniform(3.5, 6.0, size=count)
        spacing, peak = 1.8, rng.uniform(0.32, 0.45)
    # A cluster must be able to hold its specks without overlaps (loose packing ~ half the disc area).
    radius_px = max(radius_px, spacing * float(speck_radii.max()) * math.sqrt(2.0 * count))
    centres, directions = _place_specks((center_rc[1], center_rc[0]), radius_px, speck_radii, spacing, malignant, rng)
    speck_radii = speck_radii[: len(centres)]

    centroid = centres.mean(axis=0)
    reach = float(np.max(np.hypot(*(centres - centroid).T))) + 3 * float(speck_radii.max())
    theta = np.linspace(0, 2 * math.pi, 36, endpoint=False)
    outline = np.stack([centroid[0] + reach * np.cos(theta), centroid[1] + reach * np.sin(theta)], axis=1)
    top, left, size = _window((float(centroid[1]), float(centroid[0])), reach + 4)

    canvas = SupersampledCanvas(top, left, size, size, supersample=4)
    for (x, y), speck_radius, direction in zip(centres, speck_radii, directions):
        canvas.polygon(_speck_polygon(x, y, speck_radius, malignant, direction, rng), rng.uniform(0.6, 1.0))
    density = ndimage.gaussian_filter(canvas.coverage(), 0.35 * unit) * peak
    shape = LesionShape(
        kind="calcification",
        malignant=malignant,
        center_rc=(float(centroid[1]), float(centroid[0])),
        radius_px=reach,
        outline_xy=outline,
        speck_xy=centres,
    )
    return LesionStamp(shape, top, left, density.astype(np.float32))


def _branching_lines(center_xy: np.ndarray, radius_px: float, rng: np.random.Generator) -> list[np.ndarray]:
    """1-3 short bent polylines inside the cluster, later ones branching off earlier ones."""
    paths: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 4))):
        if paths:
            parent = paths[int(rng.integers(0, len(paths)))]
            start = parent[int(rng.integers(0, len(parent)))]
        else:
            start = center_xy + rng.normal(0, 0.2 * radius_px, 2)
        heading = rng.uniform(0, 2 * math.pi)
        points = [start]
        for _ in range(int(rng.integers(3, 6))):
            heading += rng.uniform(-0.5, 0.5)
            step = radius_px * rng.uniform(0.18, 0.3) * np.array([math.cos(heading), math.sin(heading)])
            points.append(points[-1] + step)
        paths.append(np.array(points))
    return paths


def _place_specks(
    center_xy: tuple[float, float],
    radius_px: float,
    speck_radii: np.ndarray,
    spacing: float,
    malignant: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Speck centres (x, y) inside the cluster disc, no two closer than ``spacing`` x their summed radii.

    Malignant clusters string 40-65 % of their specks along branching lines (the direction of the line is
    returned per speck so the speck can be drawn as a rod along it; NaN for scattered specks). A speck that
    finds no free spot is dropped, so the result may hold fewer specks than asked for.
    """
    centre = np.asarray(center_xy, dtype=np.float64)
    lines = _branching_lines(centre, radius_px, rng) if malignant else []
    on_lines = int(round(len(speck_radii) * rng.uniform(0.4, 0.65))) if malignant else 0
    spread = 0.45 if malignant else 0.6
    placed: list[np.ndarray] = []
    placed_radii: list[float] = []
    directions: list[float] = []
    for index, speck_radius in enumerate(speck_radii):
        for attempt in range(80):
            # A line speck that finds no room on its line after 40 tries is scattered instead.
            if index < on_lines and attempt < 40:
                path = lines[index % len(lines)]
                segment = int(rng.integers(0, len(path) - 1))
                a, b = path[segment], path[segment + 1]
                candidate = a + rng.uniform(0, 1) * (b - a)
                direction = math.atan2(b[1] - a[1], b[0] - a[0])
            else:
                angle = rng.uniform(0, 2 * math.pi)
                distance = min(abs(rng.normal(0, spread)), 1.0) * radius_px
                candidate = centre + distance * np.array([math.cos(angle), math.sin(angle)])
                direction = math.nan
            inside = np.hypot(*(candidate - centre)) <= radius_px - speck_radius
            if inside and all(
                np.hypot(*(candidate - other)) > spacing * (speck_radius + other_radius)
                for other, other_radius in zip(placed, placed_radii)
            ):
                placed.append(candidate)
                placed_radii.append(float(speck_radius))
                directions.append(direction)
                break
    return np.array(placed).reshape(-1, 2), np.array(directions)


def _speck_polygon(x: float, y: float, radius: float, malignant: bool, direction: float, rng: np.random.Generator) -> np.ndarray:
    """Outline of one speck: a near-circle (benign), a jagged blob or, on a line, a short rod (malignant)."""
    if not malignant:
        theta = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        radii = radius * np.ones_like(theta)
        aspect, rotation = rng.uniform(0.8, 1.0), rng.uniform(0, math.pi)
    elif not math.isnan(direction):
        theta = np.linspace(0, 2 * math.pi, 10, endpoint=False)
        radii = radius * rng.uniform(0.8, 1.2, theta.size)
        aspect, rotation = rng.uniform(0.35, 0.55), direction
        radii *= 1.4  # rods are long along the line and thin across it
    else:
        theta = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(4, 8))))
        radii = radius * rng.uniform(0.5, 1.3, theta.size)
        aspect, rotation = rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)
    return _outline((y, x), radii, theta, aspect, rotation)
