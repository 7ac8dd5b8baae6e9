"""RSNA Screening Mammography Breast Cancer Detection (Kaggle 2022) lister: `train.csv` + `train_images/`.

`train.csv` columns: site_id, patient_id, image_id, laterality, view, age, cancer, biopsy, invasive, BIRADS, implant,
density, machine_id, difficult_negative_case; blanks where unknown, age a float ("61.0"), density A-D (or blank).
Images are `train_images/<patient_id>/<image_id>.dcm`, compressed DICOM (JPEG 2000 or JPEG lossless).

Label: `cancer` of the image (1 = the breast had a biopsy-proven cancer). There are no lesion outlines, so every
record has has_annotations=False (mask_complete=0): the scans feed the whole-image stage and evaluation, and the patch
sampler takes no patches from them. The competition's `test.csv` + `test_images/` carry no labels; such a folder is
refused rather than ingested with made-up labels.

Population fields: age_group from `age` (the age itself never leaves the lister), site = `site_id` (an anonymous
number), device = "machine <machine_id>" from the CSV for every image: it is the publisher's documented field, and
the de-identified headers' Manufacturer is not documented for this dataset, so mixing both would split one machine's
slice into two names. implant 1/0 -> yes/no.
"""
from __future__ import annotations

from typing import Iterator, Union

from mammo_tfx import storage
from mammo_tfx.ingest.demographics import age_group
from mammo_tfx.ingest.layouts.csv_table import read_csv_rows
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import UNKNOWN, VIEWS, BadInputError, QuarantineEntry, ScanRecord, quarantined

DATASET = "rsna"
TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
IMAGE_FOLDER = "train_images"
REQUIRED_COLUMNS = ("site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "implant",
                    "density", "machine_id")
CANCER_LABELS = {"0": 0, "1": 1}
DENSITIES = {"A": 1, "B": 2, "C": 3, "D": 4}
IMPLANTS = {"1": "yes", "0": "no"}
# Every view the publisher uses is kept as written (and sliced); "UNKNOWN" is ours, not a value of the CSV.
KNOWN_VIEWS = tuple(view for view in VIEWS if view != "UNKNOWN")


def read_train_csv(root: str) -> tuple[str, list[dict[str, str]]]:
    """(path, rows with stripped values) of root/train.csv; BadInputError for the unlabelled test set or no CSV."""
    csv_path = storage.join(root, TRAIN_CSV)
    if not storage.is_file(csv_path):
        test_path = storage.join(root, TEST_CSV)
        if storage.is_file(test_path):
            raise BadInputError(test_path, "this is the RSNA competition's unlabelled test set (test.csv has no "
                                           "'cancer' column); only train.csv with train_images/ can be ingested")
        raise BadInputError(root, f"no RSNA {TRAIN_CSV} here")
    rows = read_csv_rows(csv_path, REQUIRED_COLUMNS)
    return csv_path, rows


def list_rsna(root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """One record per train.csv row; a row with an unknown laterality, view or cancer value is quarantined."""
    del options  # the label rule needs no options; kept for the common lister signature
    csv_path, rows = read_train_csv(root)
    for line, row in enumerate(rows, start=2):
        patient_id, image_id = row.get("patient_id", ""), row.get("image_id", "")
        record_id = f"{patient_id}/{image_id}" if patient_id and image_id else f"{TRAIN_CSV} line {line}"
        problem = _row_problem(row)
        if problem:
            yield quarantined(DATASET, record_id, csv_path, f"line {line}: {problem}")
            continue
        yield ScanRecord(
            dataset=DATASET, record_id=record_id,
            image_path=storage.join(root, IMAGE_FOLDER, patient_id, f"{image_id}.dcm"),
            patient_id=patient_id, image_id=image_id, label=CANCER_LABELS[row["cancer"]],
            laterality=row["laterality"], view=row["view"], density=DENSITIES.get(row["density"].upper(), 0),
            has_annotations=False, mammograms_by_publisher=True,
            age_group=age_group(row["age"]), site=row["site_id"] or UNKNOWN,
            device=f"machine {row['machine_id']}" if row["machine_id"] else UNKNOWN,
            implant=IMPLANTS.get(row["implant"], UNKNOWN))


def _row_problem(row: dict[str, str]) -> str:
    """What makes a row unusable, or "" when it is fine."""
    if not row.get("patient_id") or not row.get("image_id"):
        return "empty patient_id or image_id"
    if row["laterality"] not in ("L", "R"):
        return f"unknown laterality {row['laterality']!r} (expected L or R)"
    if row["view"] not in KNOWN_VIEWS:
        return f"unknown view {row['view']!r} (known: {', '.join(KNOWN_VIEWS)})"
    if row["cancer"] not in CANCER_LABELS:
        return f"cancer must be 0 or 1, got {row['cancer']!r}"
    return ""
