"""Heatmap overlays for `mammo-tfx predict --heatmaps`: the mammogram in grey, the patch heatmap on top.

The export's `heatmap` signature returns the patch classifier's malignant probability on a coarse grid in
working-image coordinates: cell (i, j) scores the square of `pooled_size` pixels (the patch, less the border
cells its head does not pool) whose top-left corner is at pixel (i, j) * stride (trainer_module/export.py).
Each cell is drawn as a stride x stride block centred on that square, so a hot cell sits over the tissue that
produced it; the border the classifier never centred on stays uncoloured. The overlay PNG has exactly the size (hence the aspect) of the display image; the colour bar
is drawn inside it, on the side away from the breast, so it hides background rather than tissue.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mammo_tfx.ingest.orientation import breast_side

logger = logging.getLogger(__name__)

HEATMAP_COLORMAP = "jet"
HEATMAP_ALPHA = 0.4
COLORBAR_LABEL = "probability of malignancy"
_DPI = 100


@dataclasses.dataclass(frozen=True)
class HeatmapGeometry:
    """Where heatmap cells lie in the working image the model saw (all in working-image pixels)."""

    working_rows: int
    working_cols: int
    stride: int  # pixels between neighbouring cells
    pooled_size: int  # side of the square each cell scores: the trunk cells the patch head pools

    def expected_shape(self) -> tuple[int, int]:
        """Heatmap shape the export produces for its working size (VALID pooling of pooled_size/stride cells)."""
        window = self.pooled_size // self.stride
        return self.working_rows // self.stride - window + 1, self.working_cols // self.stride - window + 1


def heatmap_extent(heatmap_shape: tuple[int, int], display_shape: tuple[int, int],
                   geometry: Optional[HeatmapGeometry]) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the heatmap in display pixels, as matplotlib's `extent` wants it.

    Without a known geometry (an export that is not trainer_module's), or when the heatmap does not have
    the shape that geometry predicts, the heatmap is stretched over the whole image.
    """
    display_rows, display_cols = display_shape
    if geometry is None or tuple(heatmap_shape) != geometry.expected_shape():
        if geometry is not None:
            logger.warning("heatmap shape %s is not the %s the export's geometry predicts; stretching it over "
                           "the image", tuple(heatmap_shape), geometry.expected_shape())
        return 0.0, float(display_cols), float(display_rows), 0.0
    row_scale = display_rows / geometry.working_rows
    col_scale = display_cols / geometry.working_cols
    # First cell centre at pooled_size/2; each cell drawn stride wide around its centre.
    first = geometry.pooled_size / 2 - geometry.stride / 2
    rows, cols = heatmap_shape
    top, bottom = first * row_scale, (first + rows * geometry.stride) * row_scale
    left, right = first * col_scale, (first + cols * geometry.stride) * col_scale
    return left, right, bottom, top


def write_heatmap_overlay(display_image: np.ndarray, heatmap: np.ndarray, path: str,
                          geometry: Optional[HeatmapGeometry] = None, caption: Optional[str] = None) -> str:
    """Write the overlay PNG of `heatmap` ([h, w] in [0, 1]) on `display_image` (uint8 [rows, cols]); returns path.

    The PNG is rows x cols pixels; `caption` (e.g. the image-level probability) is printed under the colour bar.
    """
    if display_image.ndim != 2 or display_image.dtype != np.uint8:
        raise ValueError(f"display image must be 2-D uint8, got {display_image.dtype} {display_image.shape}")
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heatmap.shape}")
    rows, cols = display_image.shape
    figure = Figure(figsize=(cols / _DPI, rows / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_axis_off()
    axes.imshow(display_image, cmap="gray", vmin=0, vmax=255, extent=(0, cols, rows, 0), interpolation="antialiased")
    heat = axes.imshow(np.clip(heatmap, 0.0, 1.0), cmap=colormaps[HEATMAP_COLORMAP], vmin=0.0, vmax=1.0,
                       alpha=HEATMAP_ALPHA, extent=heatmap_extent(heatmap.shape, (rows, cols), geometry),
                       interpolation="bilinear")
    # imshow widens the limits to the last artist's extent; the figure must show exactly the image.
    axes.set_xlim(0, cols)
    axes.set_ylim(rows, 0)
    _draw_colorbar(figure, axes, heat, breast_side(display_image), rows, caption)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=_DPI, format="png")
    return path


def _draw_colorbar(figure: Figure, axes, mappable, side: str, rows: int, caption: Optional[str]) -> None:
    font_points = max(6.0, rows / 70)
    # Bar on the side away from the breast; tick labels towards the image centre so they stay inside.
    bar_left = 0.9 if side == "L" else 0.04
    colorbar_axes = axes.inset_axes((bar_left, 0.45, 0.035, 0.5))
    colorbar = figure.colorbar(mappable, cax=colorbar_axes)
    colorbar.solids.set_alpha(1.0)  # the legend shows the colours at full strength, not blended with grey
    ticks_side = "left" if side == "L" else "right"
    colorbar_axes.yaxis.set_ticks_position(ticks_side)
    colorbar_axes.yaxis.set_label_position(ticks_side)
    colorbar_axes.tick_params(colors="white", labelsize=font_points)
    colorbar.set_label(COLORBAR_LABEL, color="white", fontsize=font_points)
    if caption:
        axes.text(bar_left + 0.0175, 0.42, caption, transform=axes.transAxes, color="white", fontsize=font_points,
                  ha="right" if side == "L" else "left", va="top")
