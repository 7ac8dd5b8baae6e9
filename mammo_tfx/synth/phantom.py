"""Render one synthetic mammogram: breast outline, skin line, fibroglandular texture, pectoral muscle, lesions.

Output is a float image in [0, 1] where brighter means denser (MONOCHROME2), plus the lesions' annotation shapes.
Smooth structures are computed on a 4x coarser grid and upsampled, so a 1600x1000 phantom takes a fraction of a
second.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image
from scipy import ndimage

from mammo_tfx.synth.geometry import VIEWS, BreastGeometry, sample_breast_geometry
from mammo_tfx.synth.lesions import (
    LESION_KINDS,
    WORKING_ROWS,
    LesionShape,
    draw_lesion,
    footprint_radius,
    sample_lesion_radius,
)
from mammo_tfx.synth.raster import add_window, fill_polygon_mask

LATERALITIES: tuple[str, ...] = ("L", "R")
DENSITIES: tuple[int, ...] = (1, 2, 3, 4)
# Share of the breast taken by dense (fibroglandular) tissue for ACR density A-D.
DENSE_FRACTION = {1: 0.12, 2: 0.3, 3: 0.5, 4: 0.72}
COARSE_FACTOR = 4


@dataclasses.dataclass(frozen=True)
class LesionRequest:
    """A lesion the caller wants in the phantom; the renderer chooses its size, contrast and position."""

    kind: str
    malignant: bool

    def __post_init__(self) -> None:
        if self.kind not in LESION_KINDS:
            raise ValueError(f"lesion kind must be one of {LESION_KINDS}, got {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class PhantomRequest:
    height: int
    width: int
    laterality: str
    view: str
    density: int
    lesions: tuple[LesionRequest, ...] = ()

    def __post_init__(self) -> None:
        if self.laterality not in LATERALITIES:
            raise ValueError(f"laterality must be one of {LATERALITIES}, got {self.laterality!r}")
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        if self.density not in DENSITIES:
            raise ValueError(f"density must be one of {DENSITIES}, got {self.density!r}")
        if self.height < 32 or self.width < 32:
            raise ValueError(f"phantom too small: {self.height}x{self.width} (minimum 32x32)")


@dataclasses.dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # float32 height x width in [0, 1], bright = dense
    breast_mask: np.ndarray  # bool, breast tissue including the pectoral muscle
    lesions: tuple[LesionShape, ...]


def render_phantom(request: PhantomRequest, rng: np.random.Generator) -> Phantom:
    """Draw the requested breast with its lesions. Deterministic for a given ``rng`` state."""
    height, width = request.height, request.width
    unit = height / WORKING_ROWS
    geometry = sample_breast_geometry(height, width, request.view, rng)
    image, breast_mask = _render_breast(geometry, request.density, unit, rng)

    shapes: list[LesionShape] = []
    placed: list[tuple[float, float, float]] = []
    for lesion in request.lesions:
        radius = sample_lesion_radius(lesion.kind, height, rng)
        keep_free = footprint_radius(lesion.kind, lesion.malignant, radius)
        center = geometry.sample_lesion_center(keep_free, rng, placed)
        placed.append((center[0], center[1], keep_free))
        stamp = draw_lesion(lesion.kind, lesion.malignant, center, radius, unit, rng)
        # Lesions only add density where there is breast; spicules reaching past the skin must not show.
        patch = stamp.density * breast_mask[
            np.clip(np.arange(stamp.top, stamp.top + stamp.density.shape[0]), 0, height - 1)[:, None],
            np.clip(np.arange(stamp.left, stamp.left + stamp.density.shape[1]), 0, width - 1)[None, :],
        ]
        add_window(image, patch, stamp.top, stamp.left)
        shapes.append(stamp.shape)

    # Quantum/film grain, scaled so that it looks the same after resizing to the working size.
    image += rng.normal(0, 0.006, image.shape).astype(np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    if request.laterality == "R":
        image = np.ascontiguousarray(image[:, ::-1])
        breast_mask = np.ascontiguousarray(breast_mask[:, ::-1])
        shapes = [shape.mirrored(width) for shape in shapes]
    return Phantom(image=image, breast_mask=breast_mask, lesions=tuple(shapes))


def quantize(image: np.ndarray, bits: int) -> np.ndarray:
    """Map a [0, 1] float image to unsigned integers using the full ``bits``-bit range (uint8 up to 8 bits)."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.round(np.clip(image, 0, 1) * ((1 << bits) - 1)).astype(dtype)


def lesion_mask(lesion: LesionShape, height: int, width: int) -> np.ndarray:
    """Boolean annotation mask of a lesion (filled outline) for a ``height x width`` image."""
    return fill_polygon_mask(lesion.outline_xy, height, width)


def _upsample(coarse: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(coarse.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def _normalise(field: np.ndarray) -> np.ndarray:
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _fibroglandular(geometry: BreastGeometry, density: int, rng: np.random.Generator) -> np.ndarray:
    """Dense-tissue fraction (0..1) on the coarse grid: ducts radiating from the nipple plus lobular clumps.

    More tissue near the nipple axis and in the middle third of the breast, less under the skin and right at the
    chest wall (retromammary fat), as on real mammograms. The amount is set by the density class.
    """
    rows_c = math.ceil(geometry.height / COARSE_FACTOR)
    cols_c = math.ceil(geometry.width / COARSE_FACTOR)
    rows = (np.arange(rows_c, dtype=np.float32)[:, None] + 0.5) * COARSE_FACTOR
    cols = (np.arange(cols_c, dtype=np.float32)[None, :] + 0.5) * COARSE_FACTOR
    toward_wall = (geometry.extent - cols) / geometry.extent
    across = geometry.axis_offset(rows)
    rho = np.sqrt(toward_wall**2 + across**2)
    phi = np.arctan2(across, toward_wall)

    # Noise stretched along rho in polar coordinates = streaks that converge on the nipple (ducts).
    polar = ndimage.gaussian_filter(rng.normal(0, 1, (256, 96)).astype(np.float32), (1.2, 7.0), mode=("wrap", "nearest"))
    ducts = ndimage.map_coordinates(
        polar, [(phi + math.pi) / (2 * math.pi) * 256, rho / 1.6 * 96], order=1, mode="nearest"
    )
    clump_sigma = max(rows_c / 45, 1.0)
    clumps = ndimage.gaussian_filter(rng.normal(0, 1, (rows_c, cols_c)).astype(np.float32), clump_sigma)
    fine = ndimage.gaussian_filter(rng.normal(0, 1, (rows_c, cols_c)).astype(np.float32), clump_sigma / 3)
    # Right behind the nipple the polar streaks would converge into an artificial star: fade them out there.
    duct_weight = 0.45 * np.clip(rho / 0.35, 0, 1)
    field = duct_weight * _normalise(ducts) + 0.8 * _normalise(clumps) + 0.35 * _normalise(fine)

    depth = np.clip(toward_wall / 0.95, 0, 1)
    envelope = np.exp(-((across / 0.75) ** 2)) * (np.clip(np.sin(math.pi * depth), 0, 1) ** 0.7 + 0.15)
    radius = geometry.normalized_radius(rows, cols)
    envelope = envelope * np.clip((1 - radius) / 0.12, 0, 1)
    score = field + 2.2 * envelope
    inside = radius < 0.95
    if not np.any(inside):
        return np.zeros_like(score)
    threshold = np.quantile(score[inside], 1 - DENSE_FRACTION[density])
    # A soft threshold: dense tissue fades into fat over a band instead of forming hard-edged islands.
    return (1 / (1 + np.exp(-(score - threshold) / 0.55))).astype(np.float32)


def _render_breast(
    geometry: BreastGeometry, density: int, unit: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    height, width = geometry.height, geometry.width
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    radius = geometry.normalized_radius(rows, cols)
    # Approximate distance to the skin in pixels: the elliptical radius is ~linear in distance near the edge.
    centre_distance = np.sqrt(cols * cols + (rows - geometry.center_row) ** 2)
    skin_distance = (1 - radius) * centre_distance / np.maximum(radius, 1e-3)

    glandular = _upsample(_fibroglandular(geometry, density, rng), height, width)
    grain = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)).astype(np.float32), max(1.2 * unit, 0.5))
    grain /= max(float(grain.std()), 1e-6)

    fat_level = rng.uniform(0.24, 0.3)
    gland_level = rng.uniform(0.2, 0.27)
    # The compressed breast thins out towards the skin, so the periphery is darker ...
    thickness = np.clip((1 - radius) / 0.14, 0, 1) ** 0.6
    tissue = fat_level * (0.55 + 0.45 * thickness) + gland_level * glandular * thickness
    tissue += 0.012 * grain * (0.4 + glandular)
    # ... except for the skin itself, a thin bright line.
    skin_width = max(2.5 * unit, 0.8)
    tissue += 0.1 * np.exp(-((skin_distance / skin_width) ** 2))

    # Soft 1-pixel transition from the breast to the dark background of the detector/film.
    alpha = np.clip(skin_distance + 0.5, 0, 1)
    pectoral = geometry.pectoral_level(rows, cols)
    if geometry.pectoral_width > 0:
        edge_sharpness = min(geometry.pectoral_width, geometry.pectoral_height) / max(1.5 * unit, 0.5)
        muscle_weight = 1 / (1 + np.exp(np.clip((pectoral - 1) * edge_sharpness, -50, 50)))
        # Brightest in the corner, where the muscle is thickest.
        muscle = rng.uniform(0.5, 0.6) + 0.08 * np.clip(1 - pectoral, 0, 1) + 0.01 * grain
        tissue = tissue * (1 - muscle_weight) + muscle * muscle_weight
        alpha = np.maximum(alpha, muscle_weight)
    background = rng.uniform(0.015, 0.04) + 0.004 * grain
    image = (background * (1 - alpha) + tissue * alpha).astype(np.float32)
    breast_mask = (radius < 1) | (pectoral < 1)
    return image, breast_mask
