"""Folder lister (the seed's layout): <root>/{neg,pos}/*, optionally under train/ val/ test/.

Labels come from the folder (neg 0, pos 1); val counts as train. Files are DICOM (.dcm/.dicom or no
extension) or PNG. Patient id, laterality and view come from DICOM tags when present (PatientID,
ImageLaterality/Laterality, ViewPosition), else from the file name (stem; LEFT/RIGHT, L/R, CC/MLO/ML).
The layout has no annotations: masks are empty and mask_complete is 0 for every record (positives
have a lesion the mask misses; negatives may hold unannotated benign findings, as in the seed's
INbreast neg folder of BI-RADS 1-2). abnormality_type is "none"; pathology follows the label
(malignant / normal).
"""
from __future__ import annotations

import posixpath
from typing import Iterator, Union

import pydicom

from mammo_tfx import storage
from mammo_tfx.ingest.layouts.naming import laterality_from_name, view_from_name
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import BadInputError, QuarantineEntry, ScanRecord, quarantined

DATASET = "folder"
CLASS_FOLDERS = (("neg", 0), ("pos", 1))
SPLIT_FOLDERS = (("train", "train"), ("val", "train"), ("test", "test"))
IMAGE_EXTENSIONS = (".dcm", ".dicom", ".png", "")


def _class_folders(root: str) -> list[tuple[str, int, str]]:
    """(folder, label, source split) for every class folder present."""
    found = []
    for split_name, split in (("", "none"),) + SPLIT_FOLDERS:
        for class_name, label in CLASS_FOLDERS:
            folder = storage.join(root, split_name, class_name)
            if storage.is_dir(folder):
                found.append((folder, label, split))
    if not found:
        raise BadInputError(root, "no neg/ or pos/ folder here or under train/, val/, test/")
    return found


def _dicom_patient_id(path: str) -> str:
    """PatientID from the DICOM header (no pixel data read), "" for non-DICOM or unreadable files.

    The patient is fixed at listing time because the ExampleGen assigns patient-grouped splits before it decodes
    any image; a file that cannot be read is quarantined later, when it is decoded."""
    try:
        with storage.open_binary(path) as handle:
            dataset = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception:  # PNGs and broken files: the stem stands in, decoding reports the real problem
        return ""
    return str(dataset.get("PatientID", "") or "").strip()


def list_folder(root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """One record per file of the class folders (searched recursively, hidden files skipped)."""
    del options
    for folder, label, split in _class_folders(root):
        for info in storage.walk_files(folder):
            path = info.path
            relative = storage.relpath(path, root)
            stem, extension = posixpath.splitext(storage.basename(path))
            if extension.lower() not in IMAGE_EXTENSIONS:
                yield quarantined(DATASET, relative, path, f"unsupported file type {extension!r} "
                                                           "(expected DICOM or PNG)")
                continue
            yield ScanRecord(
                dataset=DATASET, record_id=relative, image_path=path,
                patient_id=_dicom_patient_id(path) or stem, image_id=relative,
                label=label, laterality=laterality_from_name(stem),
                view=view_from_name(stem), source_split=split, prefer_dicom_tags=True,
                has_annotations=False)
