"""CBIS-DDSM as TCIA's NBIA Data Retriever writes it: every download mode ingests, only the planted faults are
quarantined, and each record says how its CSV paths were found."""
from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import QuarantineEntry, ScanRecord
from mammo_tfx.synth.cbis_ddsm import CSV_FILES, write_cbis_ddsm

OPTIONS = IngestOptions(height=48, width=32)
SCALE = 0.08
PATIENTS = 4
SEED = 6  # has scans listed in both the mass and the calc CSVs
# Paths the planted faults leave unresolvable: a row whose files were never written (image, crop, mask) and a
# missing ROI mask.
FAULT_MISSING_PATHS = 4


def _generate(root: Path, mode: str, metadata: str = "title", faults: bool = True):
    return write_cbis_ddsm(str(root), PATIENTS, SEED, faults, SCALE, download_layout=mode, metadata=metadata)


def _move_download(root: Path, depth: int) -> None:
    """Put the retriever's manifest folder `depth` folders below the root (0: its contents at the root)."""
    (manifest,) = root.glob("manifest-*")
    if depth == 0:
        for child in manifest.iterdir():
            shutil.move(str(child), root / child.name)
        manifest.rmdir()
    elif depth == 2:
        (root / "downloads").mkdir()
        shutil.move(str(manifest), root / "downloads" / manifest.name)


def _nest_csv_layout(root: Path) -> None:
    """The old layout one collection folder deeper, below a manifest folder, CSVs left at the root."""
    target = root / "manifest-1600709154662" / "CBIS-DDSM"
    target.mkdir(parents=True)
    for child in root.iterdir():
        if child.is_dir() and child.name != "manifest-1600709154662":
            shutil.move(str(child), target / child.name)


def _ingest(root: Path) -> tuple[dict[str, object], Counter, list[str]]:
    """(record id -> ScanRecord-turned-result or QuarantineEntry, resolution counts, missing CSV paths)."""
    results: dict[str, object] = {}
    methods: Counter = Counter()
    missing: list[str] = []
    for item in list_records("cbis-ddsm", str(root), OPTIONS):
        key = item.record_id if isinstance(item, ScanRecord) else item.record
        assert key not in results, f"record {key} listed twice"
        for method, path in item.path_resolutions:
            methods[method] += 1
            if method == "missing":
                missing.append(path)
        results[key] = process_record(item, OPTIONS) if isinstance(item, ScanRecord) else item
    return results, methods, missing


def _csv_paths(root: Path) -> set[str]:
    """Every distinct file path the case CSVs name."""
    paths = set()
    for name in CSV_FILES.values():
        with open(root / name, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                paths |= {row[column].strip() for column in
                          ("image file path", "cropped image file path", "ROI mask file path")}
    return paths


def _assert_only_faults_quarantined(summary, results: dict[str, object]) -> None:
    quarantined = {key for key, result in results.items() if isinstance(result, QuarantineEntry)}
    assert set(results) == {image.image_id for image in summary.images}  # listed = ingested + quarantined
    assert quarantined == {image.image_id for image in summary.images if image.fault}, {
        key: results[key].reason for key in quarantined}


@pytest.mark.parametrize("mode, metadata, depth, found", [
    ("csv", "none", 1, {"as_written"}),
    ("csv", "none", 2, {"as_written"}),  # nested below manifest-NNNN/CBIS-DDSM, CSVs at the root
    ("classic", "title", 1, {"metadata_csv", "headers"}),
    ("classic", "none", 1, {"headers"}),
    ("descriptive", "title", 1, {"metadata_csv", "headers"}),
    ("descriptive", "snake", 2, {"metadata_csv", "headers"}),
    ("descriptive", "none", 0, {"headers"}),
    ("descriptive", "none", 2, {"headers"}),
])
def test_every_download_mode_ingests_all_but_the_planted_faults(tmp_path, mode, metadata, depth, found):
    summary = _generate(tmp_path, mode, metadata)
    if mode == "csv" and depth == 2:
        _nest_csv_layout(tmp_path)
    elif mode != "csv":
        _move_download(tmp_path, depth)
    results, methods, missing = _ingest(tmp_path)
    _assert_only_faults_quarantined(summary, results)
    assert sum(methods.values()) == len(_csv_paths(tmp_path))  # every CSV path counted once
    assert methods["missing"] == len(missing) == FAULT_MISSING_PATHS
    assert set(methods) - {"missing"} == found, methods
    if mode != "csv" and metadata != "none":
        # Only a crop served as a series of its own (a series UID the CSVs do not know) needs the headers.
        assert methods["metadata_csv"] > methods["headers"] > 0
    by_kind = {image.fault: image.image_id for image in summary.images if image.fault}
    assert "missing from the download" in results[by_kind["row_points_nowhere"]].reason
    assert "truncated" in results[by_kind["truncated_dicom"]].reason
    assert "no pixel data" in results[by_kind["non_image_dicom"]].reason
    assert "file not found" in results[by_kind["missing_mask"]].reason


def _clean_image(summary, single_file: bool = True):
    """A fault-free scan stored under one subject folder (or under two, if not single_file)."""
    return next(image for image in summary.images if image.fault is None and (len(image.files) == 1) == single_file)


def test_an_ambiguous_stem_is_quarantined_naming_the_candidates(tmp_path):
    summary = _generate(tmp_path, "descriptive", metadata="none", faults=False)
    image = _clean_image(summary)
    original = tmp_path / image.files[0]
    # Two `full mammogram images` series in the subject folder, neither under the series UID the CSV names.
    copy = original.parent.parent / "2.000000-full mammogram images-12345" / "1-1.dcm"
    copy.parent.mkdir()
    ds = pydicom.dcmread(original)
    for number, path in enumerate((original, copy), start=1):
        ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.{number}"
        ds.save_as(path)
    results, methods, _ = _ingest(tmp_path)
    entry = results[image.image_id]
    assert isinstance(entry, QuarantineEntry) and "ambiguous" in entry.reason
    assert str(original) in entry.reason and str(copy) in entry.reason
    assert methods["ambiguous"] == 1
    assert [key for key, result in results.items() if isinstance(result, QuarantineEntry)] == [image.image_id]


def test_an_incomplete_download_ingests_the_rest_and_lists_the_missing(tmp_path):
    summary = _generate(tmp_path, "descriptive", faults=False)
    lost_image = _clean_image(summary)
    shutil.rmtree((tmp_path / lost_image.files[0]).parent)
    lost_subject = Path(lost_image.files[0]).parts[2]
    lost_crop = next(folder for folder in sorted(tmp_path.rglob("*-cropped images-*"))
                     if not folder.parent.parent.name.startswith(lost_subject + "_"))
    shutil.rmtree(lost_crop)
    crop_scan = lost_crop.parent.parent.name.rsplit("_", 1)[0]  # the ROI subject folder, minus `_<abnormality>`
    results, methods, missing = _ingest(tmp_path)
    quarantined = {key: result for key, result in results.items() if isinstance(result, QuarantineEntry)}
    assert list(quarantined) == [lost_image.image_id]
    assert "missing from the download" in quarantined[lost_image.image_id].reason
    # The scan without its cropped image is ingested: the mask is all it needs.
    assert not isinstance(results[crop_scan.split("_", 1)[1]], QuarantineEntry)
    assert methods["missing"] == 2 and len(missing) == 2
    assert any(path.startswith(crop_scan) for path in missing)
    assert any(path.split("/", 1)[0] == lost_subject for path in missing)


def test_an_unreadable_metadata_csv_is_reported_and_the_headers_take_over(tmp_path):
    summary = _generate(tmp_path, "classic", faults=False)
    (metadata,) = tmp_path.glob("manifest-*/metadata.csv")
    metadata.write_text("Subject ID,Number of Images\nx,1\n")
    results, methods, _ = _ingest(tmp_path)
    assert "lacks a Series UID or File Location column" in results["<metadata.csv>"].reason
    del results["<metadata.csv>"]
    _assert_only_faults_quarantined(summary, results)
    assert set(methods) == {"headers"}
