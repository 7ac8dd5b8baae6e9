"""An export's `keras/model_info.json` (written by trainer_module/model_io.py): reading it, and the serving geometry
of a whole-image export, which `predict` needs without importing the model code.

The geometry is in working-image pixels: the size the signatures resize every image to, and the grid of the
`heatmap` signature's cells (trainer_module/export.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf

from mammo_tfx.names import KERAS_DIR, MODEL_INFO_FILE

KIND_INFO_KEY = "kind"
WHOLE_IMAGE_KIND = "whole_image"
WORKING_SIZE_INFO_KEY = "working_size"
HEATMAP_STRIDE_INFO_KEY = "heatmap_stride"
HEATMAP_POOLED_SIZE_INFO_KEY = "heatmap_pooled_size"


def model_info_path(export_dir: str) -> str:
    return os.path.join(export_dir, KERAS_DIR, MODEL_INFO_FILE)


def read_model_info(export_dir: str) -> dict:
    """The export's model info; FileNotFoundError for a SavedModel without one (not exported by trainer_module)."""
    path = model_info_path(export_dir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} does not exist: {export_dir!r} is not a model exported by trainer_module")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


@dataclasses.dataclass(frozen=True)
class ServingGeometry:
    working_size: tuple[int, int]  # (rows, cols)
    heatmap_stride: int  # pixels between neighbouring heatmap cells
    heatmap_pooled_size: int  # side of the square each heatmap cell scores

    def to_info(self) -> Dict[str, Any]:
        return {WORKING_SIZE_INFO_KEY: list(self.working_size), HEATMAP_STRIDE_INFO_KEY: self.heatmap_stride,
                HEATMAP_POOLED_SIZE_INFO_KEY: self.heatmap_pooled_size}


def read_serving_geometry(export_dir: str) -> Optional[ServingGeometry]:
    """The serving geometry of a whole-image export; None for a SavedModel without model info. Raises ValueError
    for another kind of model, or an export written before the geometry was recorded."""
    try:
        info = read_model_info(export_dir)
    except FileNotFoundError:
        return None
    if info.get(KIND_INFO_KEY) != WHOLE_IMAGE_KIND:
        raise ValueError(f"{export_dir} holds a {info.get(KIND_INFO_KEY)!r} model, expected a whole-image export")
    keys = (WORKING_SIZE_INFO_KEY, HEATMAP_STRIDE_INFO_KEY, HEATMAP_POOLED_SIZE_INFO_KEY)
    missing = [key for key in keys if key not in info]
    if missing:
        raise ValueError(f"{model_info_path(export_dir)} lacks {missing}: the export predates recording its serving "
                         "geometry; export the model again")
    rows, cols = info[WORKING_SIZE_INFO_KEY]
    return ServingGeometry((rows, cols), info[HEATMAP_STRIDE_INFO_KEY], info[HEATMAP_POOLED_SIZE_INFO_KEY])
