"""CBIS-DDSM lister: the four case-description CSVs, one ScanRecord per full image.

Mass and calc CSVs name some columns differently (`breast_density` vs `breast density`); headers are
normalised (lower case, spaces -> underscores). Paths in the CSVs are relative to the folder holding
them and may carry trailing whitespace or newlines.

Rows are grouped by scan: patient, breast side and view identify one DDSM scan, which CBIS-DDSM stores
once per abnormality type (a Mass-... and a Calc-... folder holding the same image). So a scan with
several abnormalities, mass and calc rows alike, becomes one record with several lesions; its first
image file is decoded. If the rows of a scan disagree on the split (train/test), the record is marked
"test" so no test image can leak into training.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import BadInputError, LesionRef, QuarantineEntry, ScanRecord, quarantined

DATASET = "cbis-ddsm"
CSV_NAMES = (
    ("mass_case_description_train_set.csv", "mass", "train"),
    ("calc_case_description_train_set.csv", "calcification", "train"),
    ("mass_case_description_test_set.csv", "mass", "test"),
    ("calc_case_description_test_set.csv", "calcification", "test"),
)
REQUIRED_COLUMNS = ("patient_id", "left_or_right_breast", "image_view", "pathology", "image_file_path",
                    "cropped_image_file_path", "roi_mask_file_path")
PATHOLOGIES = {"MALIGNANT": True, "BENIGN": False, "BENIGN_WITHOUT_CALLBACK": False}  # value: malignant?
SIDES = {"LEFT": "L", "RIGHT": "R"}
KINDS = {"mass": "mass", "calcification": "calcification", "calc": "calcification"}


@dataclass
class _ScanGroup:
    """Rows of one scan, in CSV order."""

    image_paths: list[str] = field(default_factory=list)
    splits: set[str] = field(default_factory=set)
    patient_id: str = ""
    laterality: str = "U"
    view: str = "UNKNOWN"
    density: int = 0
    lesions: list[LesionRef] = field(default_factory=list)
    problem: Optional[tuple[str, str]] = None  # (file, reason) of the first bad row


def find_csv_folder(root: str) -> str:
    """The folder holding the CSVs: root itself, or root/CBIS-DDSM."""
    for folder in (root, os.path.join(root, "CBIS-DDSM")):
        if any(os.path.isfile(os.path.join(folder, name)) for name, _, _ in CSV_NAMES):
            return folder
    raise BadInputError(root, "no CBIS-DDSM case-description CSV (e.g. mass_case_description_train_set.csv) "
                              "here or in a CBIS-DDSM subfolder")


def clean_path(raw: str) -> str:
    """A CSV path without surrounding whitespace/newlines, with forward slashes."""
    return raw.strip().replace("\\", "/").lstrip("/")


def _read_csv(path: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [{(key or "").strip().lower().replace(" ", "_"): (value or "") for key, value in row.items()}
                    for row in reader]
            header = [(name or "").strip().lower().replace(" ", "_") for name in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadInputError(path, f"CSV cannot be read ({type(error).__name__}: {error})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise BadInputError(path, f"CSV lacks columns {missing}")
    return rows


def _row_scan(row: dict[str, str]) -> tuple[str, str, str]:
    """(patient id, laterality, view) of a row; ValueError names what is wrong."""
    patient_id = row["patient_id"].strip()
    if not patient_id:
        raise ValueError("empty patient_id")
    side = SIDES.get(row["left_or_right_breast"].strip().upper())
    if side is None:
        raise ValueError(f"unknown breast side {row['left_or_right_breast']!r}")
    view = row["image_view"].strip().upper()
    if view not in ("CC", "MLO"):
        raise ValueError(f"unknown image view {row['image_view']!r}")
    return patient_id, side, view


def _row_lesion(row: dict[str, str], csv_kind: str, folder: str) -> tuple[LesionRef, int]:
    """(lesion, density) of one row; ValueError names what is wrong."""
    pathology = row["pathology"].strip().upper()
    if pathology not in PATHOLOGIES:
        raise ValueError(f"unknown pathology {row['pathology']!r}")
    kind = KINDS.get(row.get("abnormality_type", "").strip().lower(), csv_kind)
    density_text = row.get("breast_density", "").strip()
    density = int(density_text) if density_text.isdigit() and 1 <= int(density_text) <= 4 else 0
    # Mask column first: it is the usual holder of the mask; the content decides in the end.
    files = tuple(os.path.join(folder, clean_path(row[column]))
                  for column in ("roi_mask_file_path", "cropped_image_file_path") if clean_path(row[column]))
    outline = "mask_files" if files else "none"
    return LesionRef(kind=kind, malignant=PATHOLOGIES[pathology], outline=outline, mask_files=files), density


def _split_of(relative_path: str, csv_split: str) -> str:
    top = relative_path.split("/", 1)[0].lower()
    if "training" in top:
        return "train"
    if "test" in top:
        return "test"
    return csv_split


def list_cbis_ddsm(root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """One ScanRecord per scan of the CSVs found; a bad row quarantines its scan."""
    del options  # labels need no options here; kept for the common lister signature
    folder = find_csv_folder(root)
    groups: dict[str, _ScanGroup] = {}
    scan_of_path: dict[str, str] = {}
    for name, csv_kind, csv_split in CSV_NAMES:
        csv_path = os.path.join(folder, name)
        if not os.path.isfile(csv_path):
            continue
        for line, row in enumerate(_read_csv(csv_path), start=2):
            relative = clean_path(row["image_file_path"])
            where = f"{name} line {line}"
            if not relative:
                yield quarantined(DATASET, where, csv_path, "row has an empty image file path")
                continue
            try:
                patient_id, side, view = _row_scan(row)
                scan = f"{patient_id}_{row['left_or_right_breast'].strip().upper()}_{view}"
            except ValueError as error:
                scan = relative  # no scan identity: the row is its own (quarantined) record
                groups.setdefault(scan, _ScanGroup()).problem = (csv_path, f"{where}: {error}")
                continue
            group = groups.setdefault(scan, _ScanGroup())
            group.patient_id, group.laterality, group.view = patient_id, side, view
            if scan_of_path.setdefault(relative, scan) != scan:
                group.problem = group.problem or (csv_path, f"{where}: image {relative} also belongs to scan "
                                                            f"{scan_of_path[relative]}")
            if relative not in group.image_paths:
                group.image_paths.append(relative)
            group.splits.add(_split_of(relative, csv_split))
            try:
                lesion, density = _row_lesion(row, csv_kind, folder)
            except ValueError as error:
                group.problem = group.problem or (csv_path, f"{where}: {error}")
                continue
            group.density = group.density or density
            group.lesions.append(lesion)
    for scan, group in groups.items():
        if group.problem is not None:
            yield quarantined(DATASET, scan, group.problem[0], group.problem[1])
            continue
        lesions = tuple(group.lesions)
        yield ScanRecord(
            dataset=DATASET, record_id=scan, image_path=os.path.join(folder, group.image_paths[0]),
            patient_id=group.patient_id, image_id=scan, label=int(any(lesion.malignant for lesion in lesions)),
            lesions=lesions, laterality=group.laterality, view=group.view, density=group.density,
            source_split=group.splits.pop() if len(group.splits) == 1 else "test")
