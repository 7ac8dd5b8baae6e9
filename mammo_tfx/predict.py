"""`mammo-tfx predict`: malignancy probabilities (and optional heatmap overlays) of mammogram files.

The model is the pushed whole-image SavedModel (trainer_module/export.py): either a SavedModel directory or a
serving base directory with integer versions, of which the newest complete one that loads is used (the
serving package's repository rules). Each file becomes one `image_bytes` request of the `serving_default`
signature (and of `heatmap` when overlays are wanted):
  * PNG and JPEG files are sent exactly as they are, so `predict` answers what the REST server answers
    for the same file (the signature decodes and resizes them in-graph). PNGs are first checked with the
    ingestion reader, which rejects what training never saw (colour, 1-bit, corrupt files).
  * DICOM (any transfer syntax the ingest decoder handles) and PGM files are decoded by the ingestion
    library (MONOCHROME1, modality/VOI LUT, bit depth -> full 16-bit range) and sent as a 16-bit PNG. When
    the export records its working size (keras/model_info.json), the image is first brought to it exactly as
    ingestion does (the export's resize mode, PIL bicubic), so requests stay small and the model sees what it
    trained on; otherwise it is sent at full size and the signature resizes it. A DICOM is first held to ingestion's
    mammogram header rule as the folder layout applies it (a CT slice, a FOR PROCESSING image, a header that does not
    name a mammogram are refused with the reason).
A file that fails is reported in its row's `error` and the others go on.

Breasts and exams: each file is placed in a breast and an exam by mammo_tfx/ingest/identity.py (the DICOM header's
PatientID / StudyInstanceUID / laterality / view, the one rule ingestion uses; file-name tokens where the header is
missing or silent). The result has one row per image (`unit` image), then one per breast and one per exam, scored
as the screening evaluation scores them (mammo_tfx/evaluation/screening.py): a breast's probability is the export's
breast rule (mean or max) over its images' probabilities, an exam's the maximum over its breasts; `recall` is
decided with the thresholds the export records (none for an export without a screening record). The ids shown are
the user's own (`<patient>/<study>/<L|R>`; no study part where the patient's files name none): predict runs on the
user's files on the user's machine. A file that cannot be placed is scored as an image only and says why in its
`placement` column (and on stderr); a file whose laterality is unknown is a breast of its own within its exam.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import Optional, TextIO, Union

import numpy as np
from PIL import UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from mammo_tfx.evaluation.calibration import read_screening_record
from mammo_tfx.evaluation.screening import (BREAST_UNIT, EXAM_UNIT, IMAGE_UNIT, BreastRule, ScoredUnit,
                                            ScreeningOptions, breasts, exams)
from mammo_tfx.ingest.decoded import DecodedImage, check_source_pixels, to_uint16
from mammo_tfx.ingest.example import encode_png
from mammo_tfx.ingest.header_rule import MammogramHeaderRule
from mammo_tfx.ingest.identity import SIDES, breast_id, exam_id, image_identity
from mammo_tfx.ingest.image_io import read_image, sniff_format
from mammo_tfx.ingest.options import DEFAULT_MAX_SOURCE_PIXELS
from mammo_tfx.ingest.process import working_image
from mammo_tfx.ingest.records import BadInputError
from mammo_tfx.ingest.resize import resize_image
from mammo_tfx.names import (DEFAULT_SIGNATURE, HEATMAP, HEATMAP_SIGNATURE, IMAGE_BYTES_INPUT, PROBABILITY,
                             PROBABILITY_SINGLE, RECALL, STRETCH)
from mammo_tfx.predict_overlay import HeatmapGeometry, write_heatmap_overlay
from mammo_tfx.serving.errors import ServingError
from mammo_tfx.serving.model import LoadedModel, load_model
from mammo_tfx.serving.model_info import read_serving_geometry
from mammo_tfx.serving.repository import ModelRepository

logger = logging.getLogger(__name__)

# The model's outputs keep their names; `heatmap` is the overlay file's path. `unit` is image, breast or exam;
# `images` how many scored images a row stands for; `placement` where an image's breast and exam came from, or why
# it has none; `model`, `model_version` and `model_path` which export answered (on every row, so that a row copied
# elsewhere can still be traced to its model).
MODEL_COLUMNS = ("model", "model_version", "model_path")
CSV_COLUMNS = ("unit", "file", "breast", "exam", "laterality", "view", "images", PROBABILITY, PROBABILITY_SINGLE,
               RECALL, HEATMAP, "placement", "error", *MODEL_COLUMNS)
# Longer side of the overlay PNGs: enough to see a lesion, small enough to open anywhere.
OVERLAY_LONG_SIDE = 1024
# Fast PNG compression: the request is decoded once in-process, its size barely matters.
_REQUEST_PNG_COMPRESS_LEVEL = 1
_JPEG_MAGIC = b"\xff\xd8\xff"
# Ingestion's mammogram header rule, as for the folder layout: no publisher vouches for a file handed to predict, so
# its DICOM header must name a mammogram itself (mammo_tfx/ingest/header_rule.py).
HEADER_RULE = MammogramHeaderRule(strict=True)


@dataclasses.dataclass(frozen=True)
class ModelStamp:
    """Which model answered: its name (the serving base directory's, as TF Serving names a model), version and
    SavedModel path."""

    name: str
    version: int
    path: str

    @classmethod
    def of(cls, loaded: LoadedModel) -> "ModelStamp":
        path = os.path.normpath(loaded.path)
        folder, leaf = os.path.split(path)
        return cls(os.path.basename(folder) if leaf.isdigit() else leaf, loaded.version, loaded.path)

    def columns(self) -> list:
        return [self.name, self.version, self.path]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One row of the result: the probabilities, or the reason the file has none."""

    file: str
    probability: Optional[float] = None  # mean over the 4 flips
    probability_single: Optional[float] = None  # the image as given, no flip
    heatmap: Optional[str] = None  # path of the overlay PNG
    error: Optional[str] = None
    breast: str = ""  # breast id, "" when the file could not be placed
    exam: str = ""  # exam id, "" when the file could not be placed
    laterality: str = "U"
    view: str = "UNKNOWN"
    placement: str = ""  # where breast and exam came from, or why the file has none
    recall: Optional[bool] = None  # probability >= the export's image threshold; None without one
    model: Optional[ModelStamp] = None  # which model answered (None: no model was asked)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def placed(self) -> bool:
        return bool(self.exam)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The breast and exam of a file, and where they came from (or why there are none)."""

    breast: str
    exam: str
    laterality: str
    view: str
    note: str


@dataclasses.dataclass(frozen=True)
class UnitPrediction:
    """One breast or exam: its id (and its exam's), its images, its probability and recall decision."""

    unit: str  # BREAST_UNIT or EXAM_UNIT
    id: str
    exam: str
    laterality: str  # L/R for a breast, U for a breast of unknown side, "" for an exam
    images: int
    probability: float
    recall: Optional[bool]


@dataclasses.dataclass(frozen=True)
class PredictionResult:
    """Everything `predict` answers: image rows in the order given, then breast and exam rows, and the rule and
    thresholds they were made with."""

    images: list[Prediction]
    breasts: list[UnitPrediction]
    exams: list[UnitPrediction]
    breast_rule: BreastRule
    thresholds: dict[str, float]
    model: Optional[ModelStamp] = None


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """What is sent to the model for one file, and the picture the overlay is drawn on."""

    image_bytes: bytes  # PNG (8/16-bit) or JPEG, as the signatures take it
    display_image: np.ndarray  # uint8 [rows, cols], the source's aspect, longer side OVERLAY_LONG_SIDE


@dataclasses.dataclass(frozen=True)
class PredictionModel:
    """A loaded export and what its Keras copy tells about its input geometry (None when unknown)."""

    loaded: LoadedModel
    working_size: Optional[tuple[int, int]]  # (rows, cols) the signature resizes every image to
    heatmap_geometry: Optional[HeatmapGeometry]
    resize_mode: str = STRETCH  # how the signatures (and ingestion) bring an image to the working size


def resolve_saved_model(model_dir: str) -> LoadedModel:
    """Load `model_dir` if it is a SavedModel, else the newest complete, loadable version below it.

    Raises FileNotFoundError when there is no model at all and RuntimeError when no version loads.
    """
    if os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
        name = os.path.basename(os.path.normpath(model_dir))
        return load_model(model_dir, int(name) if name.isdigit() else 0)
    # A CLI run is one-shot: no warm-up replay (it only pays off for a long-lived server).
    repository = ModelRepository(model_dir, loader=load_model)
    if repository.poll_once() is None:
        failures = "; ".join(f"version {state.version}: {state.error_message}"
                             for state in repository.version_states())
        if failures:
            raise RuntimeError(f"{model_dir}: no model version could be loaded ({failures})")
        raise FileNotFoundError(f"{model_dir}: neither a SavedModel (no saved_model.pb) nor a serving directory "
                                f"with integer version subdirectories holding one")
    loaded = repository.current()
    newest_failed = [state for state in repository.version_states() if state.state == "END"]
    for state in newest_failed:
        logger.warning("version %d of %s does not load (%s); using version %d", state.version, model_dir,
                       state.error_message, loaded.version)
    return loaded


def read_model_geometry(saved_model_dir: str) -> tuple[Optional[tuple[int, int]], Optional[HeatmapGeometry]]:
    """(working size, heatmap geometry) the export recorded in its keras/model_info.json; (None, None) if it has
    none. Raises ValueError for an export whose model info lacks them."""
    geometry = read_serving_geometry(saved_model_dir)
    if geometry is None:
        return None, None
    rows, cols = geometry.working_size
    return (rows, cols), HeatmapGeometry(rows, cols, geometry.heatmap_stride, geometry.heatmap_pooled_size)


def load_prediction_model(model_dir: str) -> PredictionModel:
    """The model `predict_files` uses, with its input geometry."""
    loaded = resolve_saved_model(model_dir)
    working_size, geometry = read_model_geometry(loaded.path)
    serving_geometry = read_serving_geometry(loaded.path)
    resize_mode = STRETCH if serving_geometry is None else serving_geometry.resize_mode
    logger.info("predicting with %s (version %d, working size %s)", loaded.path, loaded.version,
                "unknown" if working_size is None else f"{working_size[0]}x{working_size[1]}")
    if working_size is None:
        logger.warning("%s has no keras/model_info.json: DICOMs are sent at full size and heatmaps are stretched "
                       "over the image", loaded.path)
    return PredictionModel(loaded, working_size, geometry, resize_mode)


def prepare_model_input(path: str, working_size: Optional[tuple[int, int]],
                        resize_mode: str = STRETCH) -> ModelInput:
    """Read one file into the request bytes and the display image. Raises BadInputError for unusable files, and for
    DICOMs that ingestion's input rule refuses (another modality, a Secondary Capture, FOR PROCESSING)."""
    if _is_jpeg(path):
        return ModelInput(_read_bytes(path), _display_image(_read_jpeg_grey(path)))
    image_format = sniff_format(path)
    decoded = read_image(path, header_rule=HEADER_RULE)
    if image_format == "png":
        return ModelInput(_read_bytes(path), _display_image(decoded))
    if working_size is None:
        request_pixels = to_uint16(decoded.pixels, decoded.scale, decoded.offset)
    else:
        request_pixels = working_image(decoded, *working_size, resize_mode).pixels(*working_size)
    return ModelInput(encode_png(request_pixels, _REQUEST_PNG_COMPRESS_LEVEL), _display_image(decoded))


def predict_files(model_dir: str, files: Sequence[str], heatmap_dir: Optional[str] = None) -> list[Prediction]:
    """One Prediction per file, in order (see predict_units, which also groups them)."""
    return predict_units(model_dir, files, heatmap_dir).images


def predict_units(model_dir: str, files: Sequence[str], heatmap_dir: Optional[str] = None) -> PredictionResult:
    """Image predictions (one per file, in order; overlays `<stem>_heatmap.png` go to heatmap_dir when given),
    grouped into breasts and exams with the export's breast rule and thresholds.

    Per-file failures (unreadable, not an image, rejected by the model) become the row's `error`; a model
    that cannot be found or loaded raises (nothing could be predicted).
    """
    model = load_prediction_model(model_dir)
    record = read_screening_record(model.loaded.path)
    if record is None:
        logger.info("%s records no screening options: breasts take the %s of their images, no recall decisions",
                    model.loaded.path, ScreeningOptions().breast_rule.value)
    rule = record.options.breast_rule if record is not None else ScreeningOptions().breast_rule
    thresholds = dict(record.thresholds) if record is not None else {}
    overlay_names = _OverlayNames(heatmap_dir) if heatmap_dir is not None else None
    stamp = ModelStamp.of(model.loaded)
    predictions = [dataclasses.replace(
        _predict_file(model, path, overlay_names, place_file(path), thresholds.get(IMAGE_UNIT)), model=stamp)
        for path in files]
    return group_predictions(predictions, BreastRule(rule), thresholds, stamp)


def place_file(path: str) -> Placement:
    """The breast and exam of an image file (mammo_tfx/ingest/identity.py's rules): from its DICOM header, else its
    name. A file whose laterality is unknown is a breast of its own in its exam; one that names no patient or study
    has neither."""
    identity, source = image_identity(path)
    if identity is None:
        return Placement("", "", "U", "UNKNOWN", "not placed: no patient or study id in a DICOM header or the file "
                                                 "name; scored as an image only")
    # Without a PatientID the study stands for the patient, as in ingestion.
    patient = identity.patient_id or identity.study_id
    study = identity.study_id if identity.patient_id else ""
    exam = exam_id(patient, study)
    if identity.laterality in SIDES:
        return Placement(breast_id(patient, study, identity.laterality), exam, identity.laterality, identity.view,
                         f"from the {source}")
    return Placement(f"{exam}/U:{path}", exam, "U", identity.view,
                     f"exam from the {source}; laterality unknown: a breast of its own")


def group_predictions(predictions: Sequence[Prediction], rule: BreastRule, thresholds: dict[str, float],
                      model: Optional[ModelStamp] = None) -> PredictionResult:
    """Breast and exam rows of the placed, scored images (screening.breasts / exams); recall where `thresholds`
    (unit -> threshold) has the unit's."""
    scored = [ScoredUnit(key=prediction.file, label=0, score=float(prediction.probability),
                         breast_key=prediction.breast, exam_key=prediction.exam)  # labels are unknown and unused
              for prediction in predictions if prediction.ok and prediction.placed]
    breast_units = breasts(scored, rule)
    exam_units = exams(breast_units)
    sides = {prediction.breast: prediction.laterality for prediction in predictions}
    return PredictionResult(
        images=list(predictions),
        breasts=[UnitPrediction(BREAST_UNIT, unit.key, unit.exam_key, sides[unit.key], unit.images, unit.score,
                                _decision(unit.score, thresholds.get(BREAST_UNIT))) for unit in breast_units],
        exams=[UnitPrediction(EXAM_UNIT, unit.key, unit.key, "", unit.images, unit.score,
                              _decision(unit.score, thresholds.get(EXAM_UNIT))) for unit in exam_units],
        breast_rule=rule, thresholds=dict(thresholds), model=model)


def _decision(probability: float, threshold: Optional[float]) -> Optional[bool]:
    return None if threshold is None else bool(probability >= threshold)


def write_predictions_csv(result: Union[PredictionResult, Sequence[Prediction]],
                          path_or_stream: Union[str, os.PathLike, TextIO]) -> None:
    """CSV of CSV_COLUMNS: the image rows, then the breast and exam rows (a plain sequence of predictions: image
    rows only); empty cells where not applicable."""
    if isinstance(path_or_stream, (str, os.PathLike)):
        with open(path_or_stream, "w", newline="", encoding="utf-8") as handle:
            _write_rows(result, handle)
    else:
        _write_rows(result, path_or_stream)


def exit_code(predictions: Sequence[Prediction]) -> int:
    """1 when every file failed (or none was given), else 0."""
    return 0 if any(prediction.ok for prediction in predictions) else 1


def console_notes(result: PredictionResult, out: Optional[str] = None) -> list[str]:
    """What `predict` says besides the CSV: each failed or unplaced file, then the totals."""
    notes = []
    for prediction in result.images:
        if not prediction.ok:
            notes.append(f"{prediction.file}: {prediction.error}")
        elif not prediction.placed:
            notes.append(f"{prediction.file}: {prediction.placement}")
    failed = sum(not prediction.ok for prediction in result.images)
    thresholds = ("recall at thresholds " + ", ".join(f"{unit} {value:.4g}" for unit, value in
                                                      result.thresholds.items())
                  if result.thresholds else "no recall thresholds recorded")
    notes.append(f"{len(result.images)} images ({failed} failed) in {len(result.breasts)} breasts of "
                 f"{len(result.exams)} exams (breast = {result.breast_rule.value} of its images, exam = max of its "
                 f"breasts; {thresholds})" + (f"; written to {out}" if out is not None else ""))
    return notes


def run_predict(model_dir: str, files: Sequence[str], out: Optional[str] = None,
                heatmap_dir: Optional[str] = None) -> int:
    """The `predict` command: predictions to `out` (stdout when None); returns the process exit code."""
    result = predict_units(model_dir, files, heatmap_dir)
    write_predictions_csv(result, out if out is not None else sys.stdout)
    for line in console_notes(result, out):
        print(line, file=sys.stderr)
    return exit_code(result.images)


def _predict_file(model: PredictionModel, path: str, overlay_names: Optional["_OverlayNames"], place: Placement,
                  image_threshold: Optional[float]) -> Prediction:
    """The prediction of one file, placed; its failure becomes its row's error (one bad file must not cost the
    others their results)."""
    placed = dict(breast=place.breast, exam=place.exam, laterality=place.laterality, view=place.view,
                  placement=place.note)
    try:
        prediction = _predict_one(model, path, overlay_names)
    except BadInputError as error:
        return Prediction(file=path, error=error.reason, **placed)
    except ServingError as error:
        return Prediction(file=path, error=f"model rejected the image: {error.message}", **placed)
    except Exception as error:  # noqa: BLE001 - one bad file must not cost the others their results
        logger.debug("prediction of %s failed", path, exc_info=True)
        return Prediction(file=path, error=f"{type(error).__name__}: {error}", **placed)
    return dataclasses.replace(prediction, recall=_decision(prediction.probability, image_threshold), **placed)


def _predict_one(model: PredictionModel, path: str, overlay_names: Optional["_OverlayNames"]) -> Prediction:
    model_input = prepare_model_input(path, model.working_size, model.resize_mode)
    request = {IMAGE_BYTES_INPUT: np.array([model_input.image_bytes], dtype=object)}
    outputs = model.loaded.predict(DEFAULT_SIGNATURE, request)
    probability = float(outputs[PROBABILITY][0])
    probability_single = float(outputs[PROBABILITY_SINGLE][0])
    overlay_path = None
    if overlay_names is not None:
        heatmap = model.loaded.predict(HEATMAP_SIGNATURE, request)[HEATMAP][0]
        overlay_path = write_heatmap_overlay(model_input.display_image, heatmap, overlay_names.next_path(path),
                                             model.heatmap_geometry, caption=f"whole image: {probability:.3f}")
    return Prediction(file=path, probability=probability, probability_single=probability_single,
                      heatmap=overlay_path)


class _OverlayNames:
    """`<stem>_heatmap.png` in the output folder; a repeated stem (CBIS-DDSM names every file 000000.dcm)
    gets `<stem>-2_heatmap.png`, `-3`, ... so no overlay of this run overwrites another."""

    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._used: set[str] = set()

    def next_path(self, source_path: str) -> str:
        stem = os.path.splitext(os.path.basename(source_path))[0]
        name, copy = f"{stem}_heatmap.png", 1
        while name in self._used:
            copy += 1
            name = f"{stem}-{copy}_heatmap.png"
        self._used.add(name)
        return os.path.join(self._folder, name)


def _is_jpeg(path: str) -> bool:
    # sniff_format knows the ingestion formats only; JPEG is a serving format, recognised by its magic bytes.
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_JPEG_MAGIC)) == _JPEG_MAGIC
    except FileNotFoundError:
        raise BadInputError(path, "file not found") from None
    except OSError as error:
        raise BadInputError(path, f"cannot read file ({type(error).__name__}: {error})") from None


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _read_jpeg_grey(path: str) -> DecodedImage:
    """A JPEG as 8-bit grey (the signature also decodes it to one channel), mapped like an 8-bit PNG.

    Opened with the JPEG plugin directly, as ingestion opens PNGs: the size limit is ingest.max_source_pixels, not
    Pillow's own decompression-bomb limit, which Image.open would apply first."""
    try:
        with JpegImageFile(path) as image:
            width, height = image.size
            check_source_pixels(path, f"JPEG width x height {width}x{height}", width * height,
                                DEFAULT_MAX_SOURCE_PIXELS)
            pixels = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadInputError(path, f"JPEG cannot be decoded, truncated or corrupt ({type(error).__name__}: {error})"
                            ) from None
    return DecodedImage(pixels=pixels, scale=257.0, offset=0.0, bits_stored=8)


def _display_image(decoded: DecodedImage) -> np.ndarray:
    """uint8 grey picture with the source's aspect, longer side OVERLAY_LONG_SIDE, contrast-stretched.

    The stretch (0.5th..99.5th percentile) is for the eye only; mammograms often use a fraction of the range.
    """
    rows, cols = decoded.shape
    factor = OVERLAY_LONG_SIDE / max(rows, cols)
    size = max(1, round(rows * factor)), max(1, round(cols * factor))
    values = to_uint16(resize_image(decoded.pixels, size), decoded.scale, decoded.offset).astype(np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    return np.rint(np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def _write_rows(result: Union[PredictionResult, Sequence[Prediction]], stream: TextIO) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    images, units = (result.images, result.breasts + result.exams) if isinstance(result, PredictionResult) else (
        result, [])
    for prediction in images:
        writer.writerow([IMAGE_UNIT, prediction.file, prediction.breast, prediction.exam, prediction.laterality,
                         prediction.view, 1 if prediction.ok else 0, _number(prediction.probability),
                         _number(prediction.probability_single), _flag(prediction.recall), prediction.heatmap or "",
                         prediction.placement, prediction.error or "", *_stamp(prediction.model)])
    for unit in units:
        writer.writerow([unit.unit, "", unit.id if unit.unit == BREAST_UNIT else "", unit.exam, unit.laterality, "",
                         unit.images, _number(unit.probability), "", _flag(unit.recall), "", "", "",
                         *_stamp(result.model)])


def _stamp(model: Optional[ModelStamp]) -> list:
    return model.columns() if model is not None else [""] * len(MODEL_COLUMNS)


def _flag(value: Optional[bool]) -> str:
    return "" if value is None else str(int(value))


def _number(value: Optional[float]) -> str:
    # 9 significant digits round-trip a float32 exactly: the CSV holds the model's own value.
    return "" if value is None else f"{value:.9g}"

