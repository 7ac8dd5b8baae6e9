"""One record -> one tf.train.Example, or a QuarantineEntry; never raises for bad input."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import tensorflow as tf

from mammo_tfx.ingest.decoded import DecodedImage, to_uint16
from mammo_tfx.ingest.demographics import age_group, device_name
from mammo_tfx.ingest.example import ScanFeatures, build_example
from mammo_tfx.ingest.header_rule import PUBLISHED_MAMMOGRAMS, MammogramHeaderRule
from mammo_tfx.ingest.identity import UnitKeys, unit_keys
from mammo_tfx.ingest.image_statistics import image_statistics
from mammo_tfx.ingest.image_io import read_image
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.orientation import breast_side
from mammo_tfx.ingest.phi import salted_key
from mammo_tfx.ingest.records import (UNKNOWN, BadInputError, ExcludedInputError, LesionRef, QuarantineEntry,
                                      ScanRecord, excluded, quarantined)
from mammo_tfx.ingest.resize import ContentBox, content_size, paste, place_content, resize_image
from mammo_tfx.ingest.scan_mask import build_scan_mask


# The folder layout's rule: no publisher vouches for its files, so the header must name a mammogram.
FOLDER_RULE = MammogramHeaderRule(strict=True, relaxed_by="ingest.folder_requires_mammogram_header=false")


def process_record(record: ScanRecord, options: IngestOptions) -> Union[tf.train.Example, QuarantineEntry]:
    """Decode, resize and label one scan. Bad input of this record becomes a quarantine entry naming the
    file; any unexpected error of this record too (so one bad scan never stops a pipeline), and so does a record
    that takes longer than options.record_timeout_s."""
    return process_record_noting_header(record, options)[0]


def process_record_noting_header(record: ScanRecord, options: IngestOptions
                                 ) -> tuple[Union[tf.train.Example, QuarantineEntry], tuple[str, ...]]:
    """process_record's result and, for an ingested DICOM, the notes of the header rule (what its header lacked or
    was although accepted: header_rule.HEADER_NOTES), which ingestion counts per dataset.

    Why a watchdog thread: a Beam worker runs DoFns on threads of its own, where SIGALRM cannot be used, and a
    subprocess per record would cost more than most records take. The record runs on a daemon thread; the caller
    waits at most record_timeout_s for it. A thread cannot be killed, so a record that overruns keeps its thread
    (CPU, and memory bounded by ingest.max_source_pixels) until its work ends, and that result is dropped; being a
    daemon, it never keeps a worker process from exiting. The wait needs the GIL, so a C extension that holds it
    for long delays the quarantine until it lets go."""
    outcome: list[tuple[Union[tf.train.Example, QuarantineEntry], tuple[str, ...]]] = []
    worker = threading.Thread(target=lambda: outcome.append(_outcome(record, options)), daemon=True,
                              name=f"ingest {record.dataset} {record.record_id}")
    worker.start()
    worker.join(options.record_timeout_s)
    if worker.is_alive():
        return quarantined(record.dataset, record.record_id, record.image_path,
                           f"RecordTimeout: not done within {options.record_timeout_s:g} s (ingest.record_timeout_s);"
                           " its decoding was abandoned"), ()
    return outcome[0]


def _outcome(record: ScanRecord, options: IngestOptions
             ) -> tuple[Union[tf.train.Example, QuarantineEntry], tuple[str, ...]]:
    try:
        return _build(record, options)
    except ExcludedInputError as error:
        return excluded(record.dataset, record.record_id, error.file, error.reason), ()
    except BadInputError as error:
        return quarantined(record.dataset, record.record_id, error.file, f"BadInputError: {error.reason}"), ()
    except BaseException as error:  # noqa: BLE001 - by contract, per-record failures are reported, not raised
        # BaseException: this is the top of the record's own thread (KeyboardInterrupt only reaches the main
        # thread), and Rust extensions' panics (pyo3's PanicException) derive from BaseException.
        return quarantined(record.dataset, record.record_id, record.image_path,
                           f"{type(error).__name__}: {error}"), ()


def header_rule_of(record: ScanRecord, options: IngestOptions) -> MammogramHeaderRule:
    """The mammogram header rule a record's DICOM file is held to."""
    if record.mammograms_by_publisher or not options.folder_requires_mammogram_header:
        return PUBLISHED_MAMMOGRAMS
    return FOLDER_RULE


def scan_pathology(label: int, lesions: Sequence[LesionRef]) -> str:
    """Worst lesion of the scan; without lesions the image label decides (malignant or normal)."""
    if label == 1 or any(lesion.malignant for lesion in lesions):
        return "malignant"
    return "benign" if lesions else "normal"


def abnormality_type(lesions: Sequence[LesionRef]) -> str:
    """none, mass, calcification, or mixed when a scan has both kinds."""
    kinds = {lesion.kind for lesion in lesions}
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "mixed"


@dataclass(frozen=True)
class WorkingImage:
    """A scan at the working size: the resized content (uint16), where it sits, and the breast's side."""

    content: np.ndarray
    box: ContentBox
    side: str

    def pixels(self, height: int, width: int) -> np.ndarray:
        return paste(self.content, self.box, height, width)


def working_image(decoded: DecodedImage, height: int, width: int, resize_mode: str) -> WorkingImage:
    """The decoded scan brought to height x width as `resize_mode` says: the one rule ingestion and `predict` use
    (served images repeat it in the graph, trainer_module/image_decoding.py)."""
    size = content_size(decoded.shape, height, width, resize_mode)
    # Decode once, resize once: the intensity map is linear, so it runs on the small image.
    content = to_uint16(resize_image(decoded.pixels, size), decoded.scale, decoded.offset)
    side = breast_side(content)
    return WorkingImage(content, place_content(size, height, width, side), side)


def _build(record: ScanRecord, options: IngestOptions) -> tuple[tf.train.Example, tuple[str, ...]]:
    decoded = read_image(record.image_path, options.dicom_decoding_plugin, options.max_source_pixels,
                         header_rule_of(record, options))
    working_shape = (options.height, options.width)
    working = working_image(decoded, options.height, options.width, options.resize_mode)
    side, box = working.side, working.box
    scan_mask = build_scan_mask(record.lesions, decoded.shape, box, working_shape,
                                options.point_lesion_radius_px, options.dicom_decoding_plugin,
                                options.max_source_pixels)
    patient_id, laterality, view = _identity(record, decoded)
    if laterality == "U" and record.infer_laterality:
        laterality = side
    keys = scan_unit_keys(record, laterality, options.patient_salt)
    spacing = record.pixel_spacing_mm or decoded.pixel_spacing_mm or (0.0, 0.0)
    scan_age_group, device = _population(record, decoded)
    return build_example(ScanFeatures(
        image=working.pixels(*working_shape), mask=scan_mask.mask, label=record.label,
        abnormality_type=abnormality_type(record.lesions), pathology=scan_pathology(record.label, record.lesions),
        dataset=record.dataset, density=record.density, view=view, laterality=laterality,
        patient_key=salted_key(options.patient_salt, record.dataset, patient_id),
        image_key=salted_key(options.patient_salt, record.dataset, record.image_id),
        breast_key=keys.breast_key, exam_key=keys.exam_key,
        source_split=record.source_split, original_shape=decoded.shape, pixel_spacing_mm=spacing,
        content_box=box.as_tuple(), resize_mode=options.resize_mode, bits_stored=decoded.bits_stored,
        mask_resized=scan_mask.mask_resized,
        mask_complete=scan_mask.mask_complete and record.has_annotations,
        age_group=scan_age_group, site=record.site, device=device, implant=record.implant,
        # The content, not the working image: padding is no part of the source, and a request has none.
        image_statistics=image_statistics(working.content),
        photometric_interpretation=decoded.photometric_interpretation or UNKNOWN,
    ), options.png_compress_level), decoded.header_notes


def scan_unit_keys(record: ScanRecord, laterality: str, salt: str) -> UnitKeys:
    """The breast and exam keys of a scan whose laterality is final (DICOM tags and inference applied)."""
    return unit_keys(salt, record.dataset, record.patient_id, record.study_id, laterality, record.image_id,
                     exam_known=record.exam_known)


def _identity(record: ScanRecord, decoded: DecodedImage) -> tuple[str, str, str]:
    """(patient id, laterality, view). The patient id is the record's (fixed at listing, where the splits are
    decided); laterality and view come from DICOM tags first when the layout says so, else the record."""
    if not record.prefer_dicom_tags:
        return record.patient_id, record.laterality, record.view
    return (record.patient_id,
            decoded.laterality or record.laterality,
            decoded.view or record.view)


def _population(record: ScanRecord, decoded: DecodedImage) -> tuple[str, str]:
    """(age group, device): the record's where its layout knows them, else from the DICOM header (PatientAge,
    Manufacturer and ManufacturerModelName); the raw age goes no further than this band."""
    scan_age_group = record.age_group if record.age_group != UNKNOWN else age_group(decoded.age)
    device = record.device if record.device != UNKNOWN else device_name(decoded.manufacturer, decoded.model)
    return scan_age_group, device
