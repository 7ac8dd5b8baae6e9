"""Class-coded lesion masks: rasterising outlines, merging by precedence.

The codes and their precedence are mammo_tfx/lesion_classes.py's (docs/contracts.md).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mammo_tfx.ingest.records import LesionRef
from mammo_tfx.lesion_classes import PAINT_ORDER


def draw_outlines(lesions: Sequence[LesionRef], shape: tuple[int, int], point_radius: float) -> np.ndarray:
    """Union of the polygon/disc/box outlines of `lesions` as a boolean array of `shape` (rows, cols).

    Polygons take (row, col) vertices; discs a centre and radius (a non-positive radius means a point
    annotation and uses point_radius); boxes two opposite corners. y_axis_up coordinates are flipped with the
    real image height.
    """
    rows, cols = shape
    canvas = Image.new("L", (cols, rows), 0)
    pen = ImageDraw.Draw(canvas)
    for lesion in lesions:
        points = [((rows - r) if lesion.y_axis_up else r, c) for r, c in lesion.points]
        if lesion.outline == "polygon" and len(points) >= 3:
            pen.polygon([(c, r) for r, c in points], fill=255, outline=255)
        elif lesion.outline == "disc" and points:
            r, c = points[0]
            radius = lesion.radius if lesion.radius > 0 else point_radius
            pen.ellipse((c - radius, r - radius, c + radius, r + radius), fill=255, outline=255)
        elif lesion.outline == "box" and len(points) == 2:
            (top, left), (bottom, right) = points
            pen.rectangle((min(left, right), min(top, bottom), max(left, right), max(top, bottom)), fill=255,
                          outline=255)
        elif lesion.outline in ("polygon", "disc", "box"):
            raise ValueError(f"{lesion.outline} outline with too few points: {lesion.points!r}")
    return np.asarray(canvas) > 0


def merge_class_layers(layers: Mapping[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """One uint8 class-coded mask from boolean per-class layers: painted in PAINT_ORDER, so the class of highest
    precedence wins where layers overlap."""
    unknown = set(layers) - set(PAINT_ORDER)
    if unknown:
        raise ValueError(f"unknown mask class codes {sorted(unknown)}")
    merged = np.zeros(shape, dtype=np.uint8)
    for code in PAINT_ORDER:
        if code in layers:
            merged[layers[code]] = code
    return merged
