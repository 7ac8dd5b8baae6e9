"""VinDr-Mammo lister (PhysioNet): breast-level_annotations.csv, finding_annotations.csv, metadata.csv and
images/<study_id>/<image_id>.dicom.

Label: the breast BI-RADS ("BI-RADS 1".."BI-RADS 5") through IngestOptions.vindr_{negative,positive}_birads, by
default 1-2 negative, 4-5 positive, 3 excluded. A value outside BI-RADS 1-5 and both sets is quarantined.

Findings (finding_annotations.csv, one row per box, categories written as a Python list, e.g. "['Mass']"):
  Mass, Suspicious Lymph Node, Architectural Distortion and the asymmetries (Asymmetry, Focal Asymmetry, Global
  Asymmetry) are drawn as mass-class boxes: they are soft-tissue densities, as INbreast's distortion and asymmetry
  ROIs are; Suspicious Calcification is a calcification box. Skin thickening, skin retraction and nipple retraction
  are signs at the skin line, not lesions a patch classifier should learn: no mask. A finding is malignant when its
  own BI-RADS is positive, or, without one, when the breast is. A drawable finding without a box keeps the image and
  marks its mask incomplete.

study_id groups the patient: VinDr publishes no patient id and holds one study per woman; the study is also the
exam of breast_key / exam_key. The official split is kept
(training -> train, test -> test). metadata.csv (DICOM header extracts; its exact header is not documented, so the
plausible spellings are accepted) gives the age band and the device (manufacturer and model); a missing file or
column leaves them unknown. The DICOM itself must be a FOR PRESENTATION mammogram (checked at decoding).
"""
from __future__ import annotations

import ast
import re
from typing import Iterator, Optional, Union

from mammo_tfx import storage
from mammo_tfx.ingest.demographics import age_group, device_name
from mammo_tfx.ingest.layouts.csv_table import read_csv_rows
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import (UNKNOWN, BadInputError, LesionRef, QuarantineEntry, ScanRecord, excluded,
                                      quarantined)

DATASET = "vindr"
BREAST_CSV = "breast-level_annotations.csv"
FINDING_CSV = "finding_annotations.csv"
METADATA_CSV = "metadata.csv"
IMAGES_FOLDER = "images"
IMAGE_SUFFIX = ".dicom"
BREAST_COLUMNS = ("study_id", "image_id", "laterality", "view_position", "breast_birads", "breast_density", "split")
FINDING_COLUMNS = ("image_id", "finding_categories", "xmin", "ymin", "xmax", "ymax")
KNOWN_BIRADS = ("1", "2", "3", "4", "5")
SPLITS = {"training": "train", "test": "test"}
DENSITIES = {"A": 1, "B": 2, "C": 3, "D": 4}
FINDING_KINDS = {
    "mass": "mass",
    "suspicious calcification": "calcification",
    "architectural distortion": "mass",
    "asymmetry": "mass",
    "focal asymmetry": "mass",
    "global asymmetry": "mass",
    "suspicious lymph node": "mass",
}
# Findings that are no lesion of the mask classes (see the module docstring).
NON_LESION_FINDINGS = ("no finding", "skin thickening", "skin retraction", "nipple retraction")
# metadata.csv header spellings accepted, compared without case, spaces or punctuation.
METADATA_IMAGE_KEYS = ("imageid", "sopinstanceuid")
METADATA_AGE = ("patientsage", "patientage", "age")
METADATA_MANUFACTURER = ("manufacturer",)
METADATA_MODEL = ("manufacturersmodelname", "manufacturermodelname", "modelname", "model")
_BIRADS = re.compile(r"^\s*(?:bi-?rads)?\s*([0-9][a-c]?)\s*$", re.IGNORECASE)
_DENSITY = re.compile(r"^\s*(?:density)?\s*([A-D])\s*$", re.IGNORECASE)


def birads_number(text: str) -> Optional[str]:
    """"BI-RADS 4" -> "4" (also "4", "BIRADS 4"); None for anything else."""
    match = _BIRADS.match(text)
    return match.group(1).lower() if match else None


def density_code(text: str) -> int:
    """"DENSITY C" -> 3; 0 (unknown) for a blank or unknown value."""
    match = _DENSITY.match(text)
    return DENSITIES[match.group(1).upper()] if match else 0


def finding_categories(text: str) -> tuple[str, ...]:
    """The categories of "['Mass', 'Suspicious Calcification']" (a bare name is one category), lower-cased."""
    try:
        value = ast.literal_eval(text) if text.startswith("[") else [text]
    except (ValueError, SyntaxError):
        raise ValueError(f"finding_categories {text!r} is not a list of names") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"finding_categories {text!r} is not a list of names")
    return tuple(name.strip().lower() for name in value if name.strip())


def finding_lesions(row: dict[str, str], breast_malignant: bool, options: IngestOptions) -> tuple[LesionRef, ...]:
    """The mask lesions of one finding row (none for skin signs and "No Finding"); ValueError for a value that
    cannot be read."""
    categories = finding_categories(row["finding_categories"])
    unknown = [name for name in categories if name not in FINDING_KINDS and name not in NON_LESION_FINDINGS]
    if unknown:
        raise ValueError(f"unknown finding categories {unknown}")
    kinds = sorted({FINDING_KINDS[name] for name in categories if name in FINDING_KINDS})
    if not kinds:
        return ()
    finding_birads = birads_number(row.get("finding_birads", ""))
    malignant = finding_birads in options.vindr_positive_birads if finding_birads else breast_malignant
    corners = [row[column] for column in ("ymin", "xmin", "ymax", "xmax")]
    if not any(corners):
        return tuple(LesionRef(kind=kind, malignant=malignant, outline="none") for kind in kinds)
    try:
        top, left, bottom, right = (float(value) for value in corners)
    except ValueError:
        raise ValueError(f"finding box {corners} (ymin, xmin, ymax, xmax) is not numeric") from None
    return tuple(LesionRef(kind=kind, malignant=malignant, outline="box", points=((top, left), (bottom, right)))
                 for kind in kinds)


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _first_value(row: dict[str, str], spellings: tuple[str, ...]) -> str:
    for spelling in spellings:
        if row.get(spelling):
            return row[spelling]
    return ""


def read_metadata(root: str) -> dict[str, tuple[str, str]]:
    """image_id -> (age band, device) from metadata.csv; empty when the file, its image key or its rows are
    unusable (population fields are then unknown, never an error)."""
    path = storage.join(root, METADATA_CSV)
    if not storage.is_file(path):
        return {}
    try:
        rows = read_csv_rows(path, ())
    except BadInputError:
        return {}
    population = {}
    for raw in rows:
        row = {_normalised(name): value for name, value in raw.items()}
        image_id = _first_value(row, METADATA_IMAGE_KEYS)
        if not image_id:
            continue
        device = device_name(_first_value(row, METADATA_MANUFACTURER), _first_value(row, METADATA_MODEL))
        population[image_id] = (age_group(_first_value(row, METADATA_AGE)), device)
    return population


def list_vindr(root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """One record per breast-level row; BI-RADS in neither configured set -> excluded."""
    breast_path = storage.join(root, BREAST_CSV)
    if not storage.is_file(breast_path):
        raise BadInputError(root, f"no {BREAST_CSV} here (a VinDr-Mammo folder holds it beside images/)")
    breast_rows = read_csv_rows(breast_path, BREAST_COLUMNS)
    finding_path = storage.join(root, FINDING_CSV)
    findings: dict[str, list[tuple[int, dict[str, str]]]] = {}
    if storage.is_file(finding_path):
        for line, row in enumerate(read_csv_rows(finding_path, FINDING_COLUMNS), start=2):
            findings.setdefault(row["image_id"], []).append((line, row))
    population = read_metadata(root)
    study_folders: dict[str, set[str]] = {}
    for line, row in enumerate(breast_rows, start=2):
        study_id, image_id = row["study_id"], row["image_id"]
        record_id = image_id or f"{BREAST_CSV} line {line}"
        if not study_id or not image_id:
            yield quarantined(DATASET, record_id, breast_path, f"line {line}: empty study_id or image_id")
            continue
        image_path = storage.join(root, IMAGES_FOLDER, study_id, image_id + IMAGE_SUFFIX)
        problem = _row_problem(row)
        if problem:
            yield quarantined(DATASET, record_id, breast_path, f"line {line}: {problem}")
            continue
        birads = birads_number(row["breast_birads"])
        if birads in options.vindr_negative_birads:
            label = 0
        elif birads in options.vindr_positive_birads:
            label = 1
        elif birads in KNOWN_BIRADS:
            yield excluded(DATASET, record_id, breast_path,
                           f"BI-RADS {birads} is neither negative {list(options.vindr_negative_birads)} nor positive "
                           f"{list(options.vindr_positive_birads)}")
            continue
        else:
            yield quarantined(DATASET, record_id, breast_path,
                              f"line {line}: unknown breast_birads {row['breast_birads']!r}")
            continue
        if study_id not in study_folders:
            folder = storage.join(root, IMAGES_FOLDER, study_id)
            study_folders[study_id] = set(storage.list_dir(folder)) if storage.is_dir(folder) else set()
        if image_id + IMAGE_SUFFIX not in study_folders[study_id]:
            yield quarantined(DATASET, record_id, image_path, "image file missing (listed in "
                                                              f"{BREAST_CSV} line {line})")
            continue
        try:
            lesions = tuple(lesion for finding_line, finding in findings.get(image_id, ())
                            for lesion in _finding_lesions_at(finding, finding_line, bool(label), options))
        except ValueError as error:
            yield quarantined(DATASET, record_id, finding_path, str(error))
            continue
        age, device = population.get(image_id, (UNKNOWN, UNKNOWN))
        yield ScanRecord(
            dataset=DATASET, record_id=record_id, image_path=image_path, patient_id=study_id, image_id=image_id,
            study_id=study_id, label=label, lesions=lesions, laterality=row["laterality"].upper(),
            view=row["view_position"].upper(), density=density_code(row["breast_density"]),
            source_split=SPLITS[row["split"].lower()], mammograms_by_publisher=True,
            age_group=age, device=device)


def _row_problem(row: dict[str, str]) -> str:
    """Why a breast-level row cannot be used ("" when it can)."""
    if row["laterality"].upper() not in ("L", "R"):
        return f"unknown laterality {row['laterality']!r}"
    if row["view_position"].upper() not in ("CC", "MLO"):
        return f"unknown view_position {row['view_position']!r}"
    if row["split"].lower() not in SPLITS:
        return f"unknown split {row['split']!r}"
    return ""


def _finding_lesions_at(row: dict[str, str], line: int, breast_malignant: bool,
                        options: IngestOptions) -> tuple[LesionRef, ...]:
    try:
        return finding_lesions(row, breast_malignant, options)
    except ValueError as error:
        raise ValueError(f"line {line}: {error}") from None
