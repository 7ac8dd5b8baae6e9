"""Folder lister (the seed's layout): <root>/{neg,pos}/*, optionally under train/ val/ test/.

Labels come from the folder (neg 0, pos 1); val counts as train. Files are DICOM (.dcm/.dicom or no
extension) or PNG. Patient id, laterality and view come from DICOM tags when present (PatientID,
ImageLaterality/Laterality, ViewPosition; a CBIS-DDSM subject name as PatientID names patient, side and view), else
from the file name (stem; LEFT/RIGHT, L/R, CC/MLO/ML).
Breasts and exams (breast_key, exam_key): the exam is the DICOM StudyInstanceUID of the patient (PatientID; a file
with a study but no PatientID: the study stands for the patient). A file without either (a PNG, a header without
them) is an exam and a breast of its own; so is the breast of a file whose laterality stays unknown.
The layout has no annotations: masks are empty and mask_complete is 0 for every record (positives
have a lesion the mask misses; negatives may hold unannotated benign findings, as in the seed's
INbreast neg folder of BI-RADS 1-2). abnormality_type is "none"; pathology follows the label
(malignant / normal).
"""
from __future__ import annotations

import posixpath
from typing import Iterator, Union

from mammo_tfx import storage
from mammo_tfx.ingest.identity import ImageIdentity, read_dicom_identity
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
            # The patient and study are fixed at listing (the ExampleGen assigns patient-grouped splits before it
            # decodes any image); a file that cannot be read is quarantined later, when it is decoded.
            identity = read_dicom_identity(path) or ImageIdentity()
            patient_id, study_id = identity.patient_id, identity.study_id
            yield ScanRecord(
                dataset=DATASET, record_id=relative, image_path=path,
                patient_id=patient_id or study_id or stem, image_id=relative, study_id=study_id,
                exam_known=bool(patient_id or study_id), label=label, source_split=split, prefer_dicom_tags=True,
                laterality=identity.laterality if identity.laterality != "U" else laterality_from_name(stem),
                view=identity.view if identity.view != "UNKNOWN" else view_from_name(stem),
                has_annotations=False)
