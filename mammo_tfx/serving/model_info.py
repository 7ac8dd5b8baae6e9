"""An export's `keras/model_info.json`: the typed record of what the export is and how its signatures prepare and
decide, written (trainer_module/model_io.py) and read (predict, calibration, the model card, the screening
evaluator, the Trainer's stage 2) through this module only.

The geometry is in working-image pixels: the size the signatures bring every image to, how (the ingestion's resize
mode), and the grid of the `heatmap` signature's cells (trainer_module/export.py). The hparams are kept as the
mappings of trainer_module's hparam classes (`to_dict()`), the screening record as
mammo_tfx/evaluation/calibration.py's `ScreeningRecord.to_dict()`: their owners read them; this module owns which
keys the file has. A key the record needs that the file lacks is an error naming the file, never a silent default.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from mammo_tfx.names import KERAS_DIR, MODEL_INFO_FILE, RESIZE_MODES, STRETCH
from mammo_tfx.serving.limits import ImageLimits

PATCH_KIND = "patch"
WHOLE_IMAGE_KIND = "whole_image"
KINDS = (PATCH_KIND, WHOLE_IMAGE_KIND)

KIND_INFO_KEY = "kind"
PATCH_HPARAMS_INFO_KEY = "patch_hparams"
IMAGE_HPARAMS_INFO_KEY = "image_hparams"
IMAGE_LIMITS_INFO_KEY = "image_limits"
WORKING_SIZE_INFO_KEY = "working_size"
HEATMAP_STRIDE_INFO_KEY = "heatmap_stride"
HEATMAP_POOLED_SIZE_INFO_KEY = "heatmap_pooled_size"
RESIZE_MODE_INFO_KEY = "resize_mode"
SCREENING_INFO_KEY = "screening"
GEOMETRY_INFO_KEYS = (WORKING_SIZE_INFO_KEY, HEATMAP_STRIDE_INFO_KEY, HEATMAP_POOLED_SIZE_INFO_KEY,
                      RESIZE_MODE_INFO_KEY)
_REQUIRED_KEYS = {
    PATCH_KIND: (KIND_INFO_KEY, PATCH_HPARAMS_INFO_KEY, IMAGE_LIMITS_INFO_KEY),
    WHOLE_IMAGE_KIND: (KIND_INFO_KEY, PATCH_HPARAMS_INFO_KEY, IMAGE_LIMITS_INFO_KEY, IMAGE_HPARAMS_INFO_KEY,
                       *GEOMETRY_INFO_KEYS, SCREENING_INFO_KEY),
}


def model_info_path(export_dir: str) -> str:
    return os.path.join(export_dir, KERAS_DIR, MODEL_INFO_FILE)


@dataclasses.dataclass(frozen=True)
class ServingGeometry:
    working_size: tuple[int, int]  # (rows, cols)
    heatmap_stride: int  # pixels between neighbouring heatmap cells
    heatmap_pooled_size: int  # side of the square each heatmap cell scores
    resize_mode: str = STRETCH  # how a served image is brought to the working size: as ingestion did

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode}")

    def to_info(self) -> Dict[str, Any]:
        return {WORKING_SIZE_INFO_KEY: list(self.working_size), HEATMAP_STRIDE_INFO_KEY: self.heatmap_stride,
                HEATMAP_POOLED_SIZE_INFO_KEY: self.heatmap_pooled_size, RESIZE_MODE_INFO_KEY: self.resize_mode}

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> "ServingGeometry":
        rows, cols = info[WORKING_SIZE_INFO_KEY]
        return cls((int(rows), int(cols)), int(info[HEATMAP_STRIDE_INFO_KEY]),
                   int(info[HEATMAP_POOLED_SIZE_INFO_KEY]), str(info[RESIZE_MODE_INFO_KEY]))


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What an export records beside its SavedModel. A whole-image export has image hparams, a serving geometry
    and a screening key (None: the export has no fitted calibration and thresholds, e.g. an untrained one); a
    patch export has none of them."""

    kind: str
    patch_hparams: Mapping[str, Any]  # trainer_module's PatchHParams.to_dict()
    image_limits: ImageLimits  # what the export's signatures refuse
    image_hparams: Optional[Mapping[str, Any]] = None  # ImageHParams.to_dict(), whole image only
    geometry: Optional[ServingGeometry] = None  # whole image only
    screening: Optional[Mapping[str, Any]] = None  # ScreeningRecord.to_dict(), whole image only

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {', '.join(KINDS)}, got {self.kind}")
        whole_image = self.kind == WHOLE_IMAGE_KIND
        if whole_image != (self.image_hparams is not None) or whole_image != (self.geometry is not None):
            raise ValueError("a whole-image model info has image hparams and a serving geometry, a patch one neither")
        if not whole_image and self.screening is not None:
            raise ValueError("a patch model info has no screening record")

    @property
    def is_whole_image(self) -> bool:
        return self.kind == WHOLE_IMAGE_KIND

    def to_dict(self) -> Dict[str, Any]:
        info: Dict[str, Any] = {KIND_INFO_KEY: self.kind, PATCH_HPARAMS_INFO_KEY: dict(self.patch_hparams),
                                IMAGE_LIMITS_INFO_KEY: self.image_limits.to_dict()}
        if self.is_whole_image:
            info[IMAGE_HPARAMS_INFO_KEY] = dict(self.image_hparams or {})
            info.update(self.geometry.to_info())
            info[SCREENING_INFO_KEY] = None if self.screening is None else dict(self.screening)
        return info

    @classmethod
    def from_dict(cls, info: Mapping[str, Any], source: str) -> "ModelInfo":
        """The record of `info`, read from `source` (named in errors): a missing key or a malformed value is a
        ValueError naming the file."""
        kind = info.get(KIND_INFO_KEY)
        if kind not in KINDS:
            raise ValueError(f"{source} records the model kind {kind}, expected one of {', '.join(KINDS)}")
        missing = [key for key in _REQUIRED_KEYS[kind] if key not in info]
        if missing:
            raise ValueError(f"{source} lacks {missing}: the export predates recording them; export the model again")
        whole_image = kind == WHOLE_IMAGE_KIND
        try:
            return cls(kind=kind, patch_hparams=dict(info[PATCH_HPARAMS_INFO_KEY]),
                       image_limits=ImageLimits.from_dict(info[IMAGE_LIMITS_INFO_KEY]),
                       image_hparams=dict(info[IMAGE_HPARAMS_INFO_KEY]) if whole_image else None,
                       geometry=ServingGeometry.from_info(info) if whole_image else None,
                       screening=info[SCREENING_INFO_KEY] if whole_image else None)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source} is malformed: {error}") from error


def write_model_info(export_dir: str, info: ModelInfo) -> str:
    """Writes `info` as the export's keras/model_info.json; returns its path."""
    path = model_info_path(export_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(info.to_dict(), handle, indent=2)
    return path


def read_model_info(export_dir: str) -> ModelInfo:
    """The export's model info; FileNotFoundError for a SavedModel without one (not exported by trainer_module),
    ValueError naming the file when it lacks a key or holds a malformed value."""
    path = model_info_path(export_dir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} does not exist: {export_dir} is not a model exported by trainer_module")
    with tf.io.gfile.GFile(path) as handle:
        try:
            document = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON: {error}") from error
    if not isinstance(document, Mapping):
        raise ValueError(f"{path} holds no JSON object")
    return ModelInfo.from_dict(document, path)


def read_serving_geometry(export_dir: str) -> Optional[ServingGeometry]:
    """The serving geometry of a whole-image export; None for a SavedModel without model info. Raises ValueError
    for another kind of model or a model info that lacks the geometry."""
    try:
        info = read_model_info(export_dir)
    except FileNotFoundError:
        return None
    if not info.is_whole_image:
        raise ValueError(f"{export_dir} holds a {info.kind} model, expected a whole-image export")
    return info.geometry
