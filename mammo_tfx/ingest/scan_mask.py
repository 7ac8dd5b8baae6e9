"""The class-coded working-size mask of one scan, from all its lesions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mammo_tfx.ingest.masks import draw_outlines, merge_class_layers
from mammo_tfx.lesion_classes import class_code
from mammo_tfx.ingest.options import DEFAULT_MAX_SOURCE_PIXELS, FASTEST_DECODING_PLUGIN
from mammo_tfx.ingest.records import LesionRef
from mammo_tfx.ingest.resize import ContentBox, paste, resize_binary_mask
from mammo_tfx.ingest.roi_files import load_roi_mask


@dataclass(frozen=True)
class ScanMask:
    """mask: uint8 class codes at working size; mask_resized/mask_complete as in contracts.md."""

    mask: np.ndarray
    mask_resized: bool
    mask_complete: bool


def build_scan_mask(lesions: Sequence[LesionRef], image_shape: tuple[int, int], box: ContentBox,
                    working_shape: tuple[int, int], point_radius: float, decoding_plugin: str = FASTEST_DECODING_PLUGIN,
                    max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS) -> ScanMask:
    """Rasterise every lesion at source resolution, union per class, resize each class once, merge.

    Working per class (at most 4 resizes) instead of per lesion keeps scans with dozens of calcification
    points cheap; the precedence only matters between classes.
    """
    source_layers: dict[int, np.ndarray] = {}
    mask_resized = False
    mask_complete = True
    by_class: dict[int, list[LesionRef]] = {}
    for lesion in lesions:
        if lesion.outline == "none":
            mask_complete = False
            continue
        by_class.setdefault(class_code(lesion.kind, lesion.malignant), []).append(lesion)
    for code, class_lesions in by_class.items():
        outlined = [lesion for lesion in class_lesions if lesion.outline != "mask_files"]
        layer = draw_outlines(outlined, image_shape, point_radius) if outlined else np.zeros(image_shape, bool)
        for lesion in class_lesions:
            if lesion.outline == "mask_files":
                roi, resized = load_roi_mask(lesion.mask_files, image_shape, decoding_plugin, max_pixels)
                mask_resized |= resized
                # A mask without foreground locates nothing: the lesion is missing from the scan mask.
                mask_complete &= bool(roi.any())
                layer |= roi
        source_layers[code] = layer
    working_layers = {code: paste(resize_binary_mask(layer, (box.height, box.width)), box, *working_shape)
                      for code, layer in source_layers.items()}
    return ScanMask(mask=merge_class_layers(working_layers, working_shape),
                    mask_resized=mask_resized, mask_complete=mask_complete)
