"""What listers produce and process_record consumes: plain, picklable dataclasses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mammo_tfx.lesion_classes import LESION_KINDS

DATASETS = ("cbis-ddsm", "inbreast", "mias", "folder", "rsna", "vindr")
LESION_OUTLINES = ("mask_files", "polygon", "disc", "box", "none")
LATERALITIES = ("L", "R", "U")
# Standard views plus the supplementary ones screening datasets hold (RSNA: ML, LM, AT, LMO); each is kept as written
# and sliced; which of them the whole-image stage trains on is ImageHParams.train_views.
VIEWS = ("CC", "MLO", "ML", "LM", "AT", "LMO", "UNKNOWN")
SOURCE_SPLITS = ("train", "test", "none")
QUARANTINE_STATUSES = ("quarantined", "excluded")
QUARANTINE_COLUMNS = ("dataset", "record", "file", "status", "reason")
# How a listed file path was found on disk (CBIS-DDSM: the CSV's path as written, through the retriever's
# metadata.csv, or through the DICOM headers of the scan's folder), or that it was not.
PATH_RESOLUTIONS = ("as_written", "metadata_csv", "headers", "missing", "ambiguous")
UNKNOWN = "unknown"
# Age bands of the fairness slices (mammo_tfx/ingest/demographics.py maps an age to one); the exact age never leaves
# ingestion.
AGE_GROUPS = ("<50", "50-59", "60-69", "70+", UNKNOWN)
IMPLANT_VALUES = ("yes", "no", UNKNOWN)


class BadInputError(Exception):
    """An input file that cannot be used; names the file and says why."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = str(file)
        self.reason = reason

    def __reduce__(self):  # keep it picklable across Beam workers despite the two-argument constructor
        return (type(self), (self.file, self.reason))


class ExcludedInputError(BadInputError):
    """A readable input file that a rule of its dataset leaves out (reported as `excluded`, not as a fault)."""


@dataclass(frozen=True)
class LesionRef:
    """One annotated abnormality of a scan.

    outline says where its location comes from:
      "mask_files": the files of a CBIS-DDSM ROI row (mask and cropped ROI, told apart by content);
      "polygon": `points` as (row, col) source pixels, filled;
      "disc": centre `points[0]` (row, col) and `radius` in source pixels;
      "box": the axis-aligned rectangle between corners `points[0]` (row min, col min) and `points[1]` (row max,
          col max) in source pixels, filled (VinDr-Mammo finding boxes);
      "none": no location known (the scan's mask misses this lesion, mask_complete=0).
    y_axis_up: the row coordinates count from the bottom edge (MIAS); flipped with the real image height.
    """

    kind: str
    malignant: bool
    outline: str = "none"
    points: tuple[tuple[float, float], ...] = ()
    radius: float = 0.0
    mask_files: tuple[str, ...] = ()
    y_axis_up: bool = False

    def __post_init__(self) -> None:
        if self.kind not in LESION_KINDS:
            raise ValueError(f"lesion kind must be one of {LESION_KINDS}, got {self.kind!r}")
        if self.outline not in LESION_OUTLINES:
            raise ValueError(f"lesion outline must be one of {LESION_OUTLINES}, got {self.outline!r}")


@dataclass(frozen=True)
class ScanRecord:
    """One scan to ingest. Holds raw ids and paths; only salted hashes of them reach an example.

    record_id: human-readable name for the quarantine report.
    patient_id / image_id: raw ids hashed into patient_key / image_key.
    study_id: the raw id of the study (exam) the scan belongs to, "" for a dataset with one exam per patient; with
        patient_id and the final laterality it is hashed into breast_key and exam_key (mammo_tfx/ingest/identity.py).
    exam_known: False when the layout knows neither patient nor study of the scan (a folder-layout file without a
        DICOM PatientID or StudyInstanceUID): the scan is then an exam and a breast of its own.
    prefer_dicom_tags: laterality and view come from DICOM tags when the file has them,
        the record's values are the fallback (folder layout).
    infer_laterality: when laterality is still "U" after the above, infer it from which image edge
        the breast touches (MIAS).
    pixel_spacing_mm: (row, col) spacing known from the dataset; None = read it from the file, if any.
    has_annotations: False for datasets without lesion outlines; the (empty) mask is then incomplete.
    mammograms_by_publisher: the dataset's publisher states that every file is a mammogram (RSNA, VinDr-Mammo,
        CBIS-DDSM, INbreast, MIAS), so a DICOM header is refused only where it contradicts one; False (the folder
        layout) also requires the header to name a mammogram unless ingest.folder_requires_mammogram_header is off
        (mammo_tfx/ingest/header_rule.py).
    path_resolutions: (method, listed path) for each file path the dataset's index names for this scan, with
        method in PATH_RESOLUTIONS; counted per dataset in the run summary. Empty when paths need no resolving.
    age_group / site / device / implant: population slices, "unknown" where the dataset does not say. site is
        the publisher's anonymous site id (never a site name); device the acquisition device as the dataset or the
        DICOM header names it: the manufacturer (and model) where known, else the publisher's anonymous machine id.
    """

    dataset: str
    record_id: str
    image_path: str
    patient_id: str
    image_id: str
    label: int
    study_id: str = ""
    exam_known: bool = True
    lesions: tuple[LesionRef, ...] = ()
    laterality: str = "U"
    view: str = "UNKNOWN"
    density: int = 0
    source_split: str = "none"
    prefer_dicom_tags: bool = False
    infer_laterality: bool = False
    pixel_spacing_mm: Optional[tuple[float, float]] = None
    has_annotations: bool = True
    mammograms_by_publisher: bool = False
    path_resolutions: tuple[tuple[str, str], ...] = ()
    age_group: str = UNKNOWN
    site: str = UNKNOWN
    device: str = UNKNOWN
    implant: str = UNKNOWN

    def __post_init__(self) -> None:
        problems = [f"path resolution {method!r} not in {PATH_RESOLUTIONS}"
                    for method, _ in self.path_resolutions if method not in PATH_RESOLUTIONS]
        if self.dataset not in DATASETS:
            problems.append(f"dataset {self.dataset!r} not in {DATASETS}")
        if self.label not in (0, 1):
            problems.append(f"label must be 0 or 1, got {self.label!r}")
        if self.laterality not in LATERALITIES:
            problems.append(f"laterality {self.laterality!r} not in {LATERALITIES}")
        if self.view not in VIEWS:
            problems.append(f"view {self.view!r} not in {VIEWS}")
        if not 0 <= self.density <= 4:
            problems.append(f"density must be 0..4, got {self.density!r}")
        if self.source_split not in SOURCE_SPLITS:
            problems.append(f"source_split {self.source_split!r} not in {SOURCE_SPLITS}")
        if self.age_group not in AGE_GROUPS:
            problems.append(f"age_group {self.age_group!r} not in {AGE_GROUPS}")
        if self.implant not in IMPLANT_VALUES:
            problems.append(f"implant {self.implant!r} not in {IMPLANT_VALUES}")
        if not self.site or not self.device:
            problems.append("site and device must not be empty (use 'unknown')")
        if problems:
            raise ValueError(f"invalid ScanRecord {self.record_id!r}: " + "; ".join(problems))


@dataclass(frozen=True)
class QuarantineEntry:
    """One row of quarantine.csv: a record that did not become an example, and why."""

    dataset: str
    record: str
    file: str
    status: str
    reason: str
    path_resolutions: tuple[tuple[str, str], ...] = ()  # as ScanRecord's, for a scan quarantined at listing

    def __post_init__(self) -> None:
        if self.status not in QUARANTINE_STATUSES:
            raise ValueError(f"quarantine status must be one of {QUARANTINE_STATUSES}, got {self.status!r}")

    def to_row(self) -> dict[str, str]:
        """The quarantine.csv row, keyed by QUARANTINE_COLUMNS."""
        return {column: str(getattr(self, column)) for column in QUARANTINE_COLUMNS}


def quarantined(dataset: str, record: str, file: str, reason: str,
                path_resolutions: tuple[tuple[str, str], ...] = ()) -> QuarantineEntry:
    """A bad-input entry."""
    return QuarantineEntry(dataset=dataset, record=record, file=str(file), status="quarantined", reason=reason,
                           path_resolutions=path_resolutions)


def excluded(dataset: str, record: str, file: str, reason: str) -> QuarantineEntry:
    """A valid record left out by a rule."""
    return QuarantineEntry(dataset=dataset, record=record, file=str(file), status="excluded", reason=reason)
