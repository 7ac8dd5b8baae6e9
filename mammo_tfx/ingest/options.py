"""Ingestion options: one frozen dataclass that travels as JSON in the ExampleGen's custom config."""
from __future__ import annotations

from dataclasses import dataclass

from mammo_tfx.ingest.salt import DEFAULT_PATIENT_SALT, HOW_TO_SET
from mammo_tfx.names import RESIZE_MODES
from mammo_tfx.options import Options, secret_field

# Datasets labelled by a configurable BI-RADS rule: IngestOptions.<dataset>_{negative,positive}_birads.
BIRADS_RULE_DATASETS = ("inbreast", "vindr")

# 50 megapixels: 2.5x the largest real mammograms (about 5k x 4k = 20 MP), yet a decoded image stays near 100 MB
# (uint16) plus its float32 intensity pass, so one hostile header cannot exhaust a worker's memory.
# `dicom_decoding_plugin` value: the fastest installed plugin per transfer syntax.
FASTEST_DECODING_PLUGIN = "auto"
DEFAULT_MAX_SOURCE_PIXELS = 50_000_000
# A real record decodes and resizes in 1-3 s; 300 s tolerates a slow bucket read or a busy worker, while a record
# that hangs costs at most 5 minutes of one worker thread.
DEFAULT_RECORD_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class IngestOptions(Options):
    """How records are decoded, resized, labelled and keyed.

    height/width: working size (rows x cols) of image_png and mask_png.
    resize_mode: "stretch" resizes exactly to the working size (the seed's choice, aspect not kept);
        "pad" keeps the aspect ratio, scales to fit and pads with 0 at the bottom and on the side away
        from the breast (see resize.py).
    patient_salt: salt of the SHA-256 patient/image keys; a secret, held in memory only (never in `to_dict()`, a
        configuration or a repr): the ExampleGen executor reads it where it runs (mammo_tfx/ingest/salt.py).
    patient_salt_file: a file holding the salt (a mounted secret, or a bucket object only the pipeline can read);
        "" reads `MAMMO_TFX_PATIENT_SALT`, or else uses the public default salt.
    patient_salt_fingerprint: the fingerprint of the salt the pipeline was built for (salt.salt_fingerprint), set
        by the runner or the Kubeflow compile: a new salt changes the ExampleGen's properties, so its cached
        output is not re-used, and the executor refuses a salt of another fingerprint. "" checks nothing.
    inbreast_negative_birads / inbreast_positive_birads: INbreast BI-RADS values that make an image
        negative / positive; any other value (by default 3) is excluded.
    vindr_negative_birads / vindr_positive_birads: VinDr-Mammo breast BI-RADS values (the number of
        "BI-RADS 4") that make an image negative / positive; any other known value (by default 3) is excluded.
    png_compress_level: zlib level of the PNG encoder (1 = fast, 9 = small).
    point_lesion_radius_px: radius, in source pixels, of the disc drawn for a point annotation
        (INbreast ROIs with at most 2 points).
    dicom_decoding_plugin: pydicom decoding plugin for compressed DICOM. "auto": the fastest installed one for
        the file's transfer syntax (pyjpegls for JPEG-LS, pylibjpeg for RLE and JPEG 2000; docs/benchmarks.md,
        "Decode cost per transfer syntax"); a plugin name prefers that plugin; "" lets pydicom choose. Falls back
        to pydicom's choice when the plugin cannot decode the transfer syntax.
    max_source_pixels: largest source image (rows x columns x frames x samples, read from the DICOM/PNG/PGM
        header, before any pixel buffer is allocated) that is decoded; larger images and ROI masks are quarantined.
    record_timeout_s: wall-time limit of one record (decode, resize, masks, example); a record that exceeds it
        is quarantined with the reason and the run goes on (see process.py for what happens to its work).
    external_datasets: layouts held out of training (the CLI's --external): every record of such a dataset goes to
        the test split, so no image of it trains, validates, calibrates or enters the Transform mean; the evaluation
        reports and gates it as `external` (docs/training.md, "External datasets").
    folder_requires_mammogram_header: a `folder`-layout DICOM must name itself a mammogram (Modality MG and a SOP
        class present), as no publisher vouches for such files; False holds them to the public datasets' rule,
        which refuses only a header that contradicts a mammogram (mammo_tfx/ingest/header_rule.py).
    """

    height: int = 1152
    width: int = 896
    resize_mode: str = "stretch"
    patient_salt: str = secret_field(DEFAULT_PATIENT_SALT, HOW_TO_SET)
    patient_salt_file: str = ""
    patient_salt_fingerprint: str = ""
    inbreast_negative_birads: tuple[str, ...] = ("1", "2")
    inbreast_positive_birads: tuple[str, ...] = ("4a", "4b", "4c", "5", "6")
    vindr_negative_birads: tuple[str, ...] = ("1", "2")
    vindr_positive_birads: tuple[str, ...] = ("4", "5")
    png_compress_level: int = 1
    point_lesion_radius_px: int = 3
    dicom_decoding_plugin: str = FASTEST_DECODING_PLUGIN
    max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
    record_timeout_s: float = DEFAULT_RECORD_TIMEOUT_S
    folder_requires_mammogram_header: bool = True
    external_datasets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; normalise so equality and hashing keep working after a round trip.
        for dataset in BIRADS_RULE_DATASETS:
            for name in (f"{dataset}_negative_birads", f"{dataset}_positive_birads"):
                value = getattr(self, name)
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"IngestOptions.{name} must be a sequence of strings, got {value!r}")
                object.__setattr__(self, name, tuple(v.strip().lower() for v in value))
            overlap = set(getattr(self, f"{dataset}_negative_birads")) & set(getattr(self, f"{dataset}_positive_birads"))
            if overlap:
                raise ValueError(f"{dataset} BI-RADS values {sorted(overlap)} are both negative and positive in "
                                 "IngestOptions")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"IngestOptions working size must be at least 8x8, got {self.height}x{self.width}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"IngestOptions.resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"IngestOptions.png_compress_level must be 0..9, got {self.png_compress_level}")
        if self.point_lesion_radius_px < 1:
            raise ValueError(f"IngestOptions.point_lesion_radius_px must be >= 1, got {self.point_lesion_radius_px}")
        if self.max_source_pixels < 1:
            raise ValueError(f"IngestOptions.max_source_pixels must be >= 1, got {self.max_source_pixels}")
        if not self.record_timeout_s > 0:
            raise ValueError(f"IngestOptions.record_timeout_s must be > 0 seconds, got {self.record_timeout_s}")
        if isinstance(self.external_datasets, str):
            raise ValueError(f"IngestOptions.external_datasets must be a list of layout names, got "
                             f"{self.external_datasets}")
        object.__setattr__(self, "external_datasets", tuple(dict.fromkeys(self.external_datasets)))
        if not self.patient_salt:
            raise ValueError("IngestOptions.patient_salt must not be empty")
