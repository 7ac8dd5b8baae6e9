"""CBIS-DDSM lister: the four case-description CSVs, one ScanRecord per full image.

Mass and calc CSVs name some columns differently (`breast_density` vs `breast density`); headers are
normalised (lower case, spaces -> underscores). Paths in the CSVs may carry trailing whitespace or newlines.
The CSVs may stand anywhere under the root (the shallowest copy of each is read); the files they name are
found wherever the NBIA Data Retriever put them (see cbis_download: as written, through metadata.csv, or
through the DICOM headers of the scan's own folder), and each record says how its paths were found.

Rows are grouped by scan: patient, breast side and view identify one DDSM scan, which CBIS-DDSM stores
once per abnormality type (a Mass-... and a Calc-... folder holding the same image). So a scan with
several abnormalities, mass and calc rows alike, becomes one record with several lesions; its first
image file found is decoded. If the rows of a scan disagree on the split (train/test), the record is marked
"test" so no test image can leak into training.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

from mammo_tfx.ingest.layouts.cbis_download import ROLE_IMAGE, ROLE_ROI, DownloadIndex, Resolved, read_csv_rows
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


@dataclass(frozen=True)
class _RoiRow:
    """The lesion of one CSV row, before its files are found."""

    kind: str
    malignant: bool
    paths: tuple[str, ...]  # mask column first: the usual holder of the mask; the content decides in the end
    csv_folder: str  # relative to the root


@dataclass
class _ScanGroup:
    """Rows of one scan, in CSV order."""

    image_paths: dict[str, str] = field(default_factory=dict)  # CSV path -> folder of its CSV (relative to root)
    splits: set[str] = field(default_factory=set)
    patient_id: str = ""
    laterality: str = "U"
    view: str = "UNKNOWN"
    density: int = 0
    rois: list[_RoiRow] = field(default_factory=list)
    problem: Optional[tuple[str, str]] = None  # (file, reason) of the first bad row


def clean_path(raw: str) -> str:
    """A CSV path without surrounding whitespace/newlines, with forward slashes."""
    return raw.strip().replace("\\", "/").lstrip("/")


def _read_case_csv(path: str) -> list[dict[str, str]]:
    header, rows = read_csv_rows(path)
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


def _row_lesion(row: dict[str, str], csv_kind: str, folder: str) -> tuple[_RoiRow, int]:
    """(lesion, density) of one row; ValueError names what is wrong."""
    pathology = row["pathology"].strip().upper()
    if pathology not in PATHOLOGIES:
        raise ValueError(f"unknown pathology {row['pathology']!r}")
    kind = KINDS.get(row.get("abnormality_type", "").strip().lower(), csv_kind)
    density_text = row.get("breast_density", "").strip()
    density = int(density_text) if density_text.isdigit() and 1 <= int(density_text) <= 4 else 0
    paths = tuple(clean_path(row[column]) for column in ("roi_mask_file_path", "cropped_image_file_path")
                  if clean_path(row[column]))
    return _RoiRow(kind, PATHOLOGIES[pathology], paths, folder), density


def _split_of(relative_path: str, csv_split: str) -> str:
    top = relative_path.split("/", 1)[0].lower()
    if "training" in top:
        return "train"
    if "test" in top:
        return "test"
    return csv_split


def list_cbis_ddsm(root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """One ScanRecord per scan of the CSVs found; a bad row, or a file not found or ambiguous, quarantines its scan."""
    del options  # labels need no options here; kept for the common lister signature
    index = DownloadIndex(root)
    for file, reason in index.problems:
        yield quarantined(DATASET, "<metadata.csv>", file, f"{reason}; paths resolved without it")
    case_csvs = index.find([name for name, _, _ in CSV_NAMES])
    if not case_csvs:
        raise BadInputError(root, "no CBIS-DDSM case-description CSV (e.g. mass_case_description_train_set.csv) "
                                  "here or in any folder below")
    groups: dict[str, _ScanGroup] = {}
    scan_of_path: dict[str, str] = {}
    for name, csv_kind, csv_split in CSV_NAMES:
        if name not in case_csvs:
            continue
        csv_path = index.full_path(case_csvs[name])
        folder = posixpath.dirname(case_csvs[name])  # relative to the root, as the index keys its files
        for line, row in enumerate(_read_case_csv(csv_path), start=2):
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
            group.image_paths.setdefault(relative, folder)
            group.splits.add(_split_of(relative, csv_split))
            try:
                roi, density = _row_lesion(row, csv_kind, folder)
            except ValueError as error:
                group.problem = group.problem or (csv_path, f"{where}: {error}")
                continue
            group.density = group.density or density
            group.rois.append(roi)
    for scan, group in groups.items():
        if group.problem is not None:
            yield quarantined(DATASET, scan, group.problem[0], group.problem[1])
        else:
            yield _resolved_record(index, scan, group)


def _resolved_record(index: DownloadIndex, scan: str, group: _ScanGroup) -> Union[ScanRecord, QuarantineEntry]:
    """The scan's record with every CSV path resolved; quarantined if its image is missing or a path ambiguous."""
    images = [resolved for path, folder in group.image_paths.items()
              for resolved in index.resolve([path], ROLE_IMAGE, folder)]
    rois = [index.resolve(roi.paths, ROLE_ROI, roi.csv_folder) for roi in group.rois]
    everything: list[Resolved] = images + [resolved for row in rois for resolved in row]
    resolutions = tuple(dict.fromkeys((resolved.method, resolved.csv_path) for resolved in everything))
    ambiguous = [resolved for resolved in everything if resolved.method == "ambiguous"]
    if ambiguous:
        first = ambiguous[0]
        return quarantined(DATASET, scan, first.candidates[0],
                           f"ambiguous: {len(first.candidates)} files under {first.csv_path.split('/', 1)[0]}/ "
                           f"could be the CSV's {first.csv_path}: {', '.join(first.candidates)}; not guessing "
                           "(add the retriever's metadata.csv, or remove the extra series)", resolutions)
    found = [resolved for resolved in images if resolved.method != "missing"]
    if not found:
        return quarantined(DATASET, scan, images[0].file,
                           # The row's record column names the scan: a reason without it groups with its kind.
                           "file not found: missing from the download (not at the CSV path, not in a metadata.csv, "
                           "no full mammogram DICOM in the scan's subject folder)", resolutions)
    lesions = tuple(
        LesionRef(kind=roi.kind, malignant=roi.malignant, outline="mask_files" if files else "none",
                  mask_files=tuple(resolved.file for resolved in files))
        for roi, files in zip(group.rois, rois))
    return ScanRecord(
        dataset=DATASET, record_id=scan, image_path=found[0].file, patient_id=group.patient_id, image_id=scan,
        label=int(any(lesion.malignant for lesion in lesions)), lesions=lesions, laterality=group.laterality,
        view=group.view, density=group.density,
        source_split=group.splits.pop() if len(group.splits) == 1 else "test", path_resolutions=resolutions,
        mammograms_by_publisher=True)
