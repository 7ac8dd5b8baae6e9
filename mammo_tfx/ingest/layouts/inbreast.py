"""INbreast lister: INbreast.csv (semicolon-separated) + AllDICOMs + AllXML (OsiriX plists).

ROI kinds: a ROI named Calcification(s) or Cluster is a calcification; every other name (Mass,
Spiculated Region, Distortion, Asymmetry, ...) is treated as a mass, the nearest of the two lesion
classes. INbreast gives no per-lesion pathology, so each lesion takes the image label.
ROIs with at most 2 points are calcification points, drawn as small discs; the others are polygons.
"""
from __future__ import annotations

import plistlib
import re
from typing import Iterator, Union

from mammo_tfx import storage
from mammo_tfx.ingest.identity import INBREAST_DICOM_NAME
from mammo_tfx.ingest.layouts.csv_table import read_csv_rows
from mammo_tfx.ingest.layouts.naming import laterality_from_name, view_from_name
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import (BadInputError, LesionRef, QuarantineEntry, ScanRecord, excluded,
                                      quarantined)

DATASET = "inbreast"
RELEASE_FOLDER = "INbreast Release 1.0"
REQUIRED_COLUMNS = ("Laterality", "View", "File Name", "ACR", "Bi-Rads")
_POINT = re.compile(r"^\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*(?:,\s*[-+0-9.eE]+\s*)?\)$")


def find_release_folder(root: str) -> str:
    """root itself if it holds INbreast.csv, else root/'INbreast Release 1.0'."""
    for folder in (root, storage.join(root, RELEASE_FOLDER)):
        if storage.is_file(storage.join(folder, "INbreast.csv")):
            return folder
    raise BadInputError(root, f"no INbreast.csv here or in a '{RELEASE_FOLDER}' subfolder")


def read_inbreast_csv(path: str) -> list[dict[str, str]]:
    """Rows with stripped header names and values (the file pads both with spaces)."""
    return read_csv_rows(path, REQUIRED_COLUMNS, delimiter=";", missing_hint=" (is it ';'-separated?)")


def parse_point(text: str) -> tuple[float, float]:
    """An OsiriX "(x, y)" string as (row, col) = (y, x)."""
    match = _POINT.match(text.strip())
    if match is None:
        raise ValueError(f"bad point {text!r}, expected '(x, y)'")
    return float(match.group(2)), float(match.group(1))


def roi_kind(name: str) -> str:
    lowered = name.strip().lower()
    return "calcification" if lowered.startswith("calcification") or lowered == "cluster" else "mass"


def read_roi_lesions(xml_path: str, malignant: bool) -> tuple[LesionRef, ...]:
    """The lesions of an INbreast XML; BadInputError naming the file when it cannot be parsed."""
    try:
        plist = plistlib.loads(storage.read_bytes(xml_path))
        rois = plist["Images"][0].get("ROIs", [])
        lesions = []
        for roi in rois:
            points = tuple(parse_point(text) for text in roi.get("Point_px", []))
            kind = roi_kind(str(roi.get("Name", "")))
            if not points:
                lesions.append(LesionRef(kind=kind, malignant=malignant, outline="none"))
            elif len(points) <= 2:
                centre = (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
                lesions.append(LesionRef(kind=kind, malignant=malignant, outline="disc", points=(centre,)))
            else:
                lesions.append(LesionRef(kind=kind, malignant=malignant, outline="polygon", points=points))
        return tuple(lesions)
    except Exception as error:  # plistlib/expat/KeyError/TypeError/ValueError: all mean "unusable XML"
        raise BadInputError(xml_path, f"ROI XML cannot be parsed ({type(error).__name__}: {error})") from None


def _names(folder: str) -> list[str]:
    """The names in folder, none when it is missing (one listing instead of a lookup per record in a bucket)."""
    return storage.list_dir(folder) if storage.is_dir(folder) else []


def _dicom_index(dicom_folder: str) -> dict[str, tuple[str, str]]:
    """File Name -> (DICOM path, patient hex id)."""
    index = {}
    for name in _names(dicom_folder):
        match = INBREAST_DICOM_NAME.match(name)
        if match:
            index[match.group("file")] = (storage.join(dicom_folder, name), match.group("patient"))
    return index


def list_inbreast(root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """One record per CSV row; BI-RADS outside both configured sets -> excluded."""
    folder = find_release_folder(root)
    csv_path = storage.join(folder, "INbreast.csv")
    dicoms = _dicom_index(storage.join(folder, "AllDICOMs"))
    xml_folder = storage.join(folder, "AllXML")
    xml_names = set(_names(xml_folder))
    for line, row in enumerate(read_inbreast_csv(csv_path), start=2):
        file_name = row["File Name"]
        record_id = file_name or f"INbreast.csv line {line}"
        birads = row["Bi-Rads"].strip().lower()
        if not file_name:
            yield quarantined(DATASET, record_id, csv_path, f"line {line}: empty File Name")
            continue
        if birads in options.inbreast_negative_birads:
            label = 0
        elif birads in options.inbreast_positive_birads:
            label = 1
        else:
            yield excluded(DATASET, record_id, csv_path,
                           f"BI-RADS {birads or '(blank)'} is neither negative {list(options.inbreast_negative_birads)}"
                           f" nor positive {list(options.inbreast_positive_birads)}")
            continue
        if file_name not in dicoms:
            yield quarantined(DATASET, record_id, storage.join(folder, "AllDICOMs", f"{file_name}_*_MG_*_ANON.dcm"),
                              "no DICOM file for this File Name")
            continue
        dicom_path, patient_hex = dicoms[file_name]
        xml_name = f"{file_name}.xml"
        try:
            lesions = read_roi_lesions(storage.join(xml_folder, xml_name), bool(label)) if xml_name in xml_names else ()
        except BadInputError as error:
            yield quarantined(DATASET, record_id, error.file, error.reason)
            continue
        dicom_name = storage.basename(dicom_path)
        side = row["Laterality"].upper() if row["Laterality"].upper() in ("L", "R") else laterality_from_name(dicom_name)
        view = {"CC": "CC", "MLO": "MLO", "ML": "MLO"}.get(row["View"].upper(), view_from_name(dicom_name))
        acr = row["ACR"]
        yield ScanRecord(
            dataset=DATASET, record_id=record_id, image_path=dicom_path, patient_id=patient_hex,
            image_id=file_name, label=label, lesions=lesions, laterality=side, view=view,
            density=int(acr) if acr in ("1", "2", "3", "4") else 0, mammograms_by_publisher=True)
