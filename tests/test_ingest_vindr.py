"""VinDr-Mammo: the lister on hand-written CSVs (labels, boxes, categories, metadata spellings) and on the synthetic
release (every listed image an example or a report row, faults with their reasons, DICOM quirks), plus ExampleGen."""
from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from components.mammo_example_gen.executor import read_quarantine_rows
from mammo_tfx import synth
from mammo_tfx.names import QUARANTINE_FILE
from mammo_tfx.ingest.decoded import to_uint16
from mammo_tfx.ingest.dicom_io import read_dicom
from mammo_tfx.ingest.layouts.vindr import finding_categories, list_vindr, read_metadata
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.orientation import breast_side
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import QuarantineEntry, ScanRecord
from mammo_tfx.synth.dicom_io import DIGITAL_MAMMOGRAPHY_STORAGE
from mammo_tfx.synth.vindr import write_vindr
from pipeline.sources import DataSource
from tests.conftest import feature, ingest, mask_of, phantom, read_split, run_executor, value

BREAST_HEADER = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
                 "breast_birads", "breast_density", "split"]
FINDING_EXTRA = ["finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax"]
ROWS, COLS = 200, 100
SEED, STUDIES = 9, 6  # seed 9: BI-RADS 1-5, MONOCHROME1 images and both official splits among 6 studies


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def build_vindr(root: Path, write_dicom) -> Path:
    """One study with 7 images: boxes, skin signs, BI-RADS 3, two-category and benign findings, a bad category and
    a bad BI-RADS value; metadata.csv with the DICOM attribute spellings."""
    breasts = {  # image_id: (laterality, view, breast BI-RADS, density, split)
        "i1": ("L", "CC", "BI-RADS 4", "DENSITY C", "training"),
        "i2": ("L", "MLO", "BI-RADS 2", "DENSITY B", "training"),
        "i3": ("R", "CC", "BI-RADS 3", "DENSITY C", "training"),
        "i4": ("R", "MLO", "BI-RADS 5", "DENSITY D", "test"),
        "i5": ("R", "CC", "BI-RADS 1", "DENSITY A", "training"),
        "i6": ("L", "CC", "BI-RADS 0", "DENSITY C", "training"),
        "i7": ("L", "CC", "BI-RADS 1", "", "test"),
    }
    findings = {  # image_id: [(categories, finding BI-RADS, (xmin, ymin, xmax, ymax) or None)]
        "i1": [("['Mass']", "BI-RADS 4", (10, 40, 30, 80))],
        "i2": [("['Skin Thickening']", "BI-RADS 2", (0, 0, 20, 20)), ("['No Finding']", "", None)],
        "i3": [("['Mass']", "BI-RADS 3", (10, 10, 20, 20))],
        "i4": [("['Mass', 'Suspicious Calcification']", "", (50, 100, 70, 140)),
               ("['Focal Asymmetry']", "BI-RADS 3", (20, 20, 40, 40)),
               ("['Architectural Distortion']", "BI-RADS 5", None)],
        "i5": [("['Unicorn']", "", (1, 1, 2, 2))],
        "i7": [("['No Finding']", "", None)],
    }
    breast_rows, finding_rows = [], []
    for image_id, (side, view, birads, density, split) in breasts.items():
        row = dict(zip(BREAST_HEADER, ["s1", "se1", image_id, side, view, str(ROWS), str(COLS), birads, density,
                                       split]))
        breast_rows.append(row)
        for categories, finding_birads, box in findings.get(image_id, ()):
            corners = [str(v) for v in box] if box else ["", "", "", ""]
            finding_rows.append({**row, **dict(zip(FINDING_EXTRA, [categories, finding_birads, *corners]))})
        write_dicom(root / "images" / "s1" / f"{image_id}.dicom", phantom(ROWS, COLS, side), bits_stored=12,
                    Modality="MG", PresentationIntentType="FOR PRESENTATION", SOPClassUID=DIGITAL_MAMMOGRAPHY_STORAGE)
    write_csv(root / "breast-level_annotations.csv", BREAST_HEADER, breast_rows)
    write_csv(root / "finding_annotations.csv", BREAST_HEADER + FINDING_EXTRA, finding_rows)
    write_csv(root / "metadata.csv", ["SOP Instance UID", "Patient's Age", "Manufacturer", "Manufacturer's Model Name"],
              [{"SOP Instance UID": "i1", "Patient's Age": "061Y", "Manufacturer": "SIEMENS",
                "Manufacturer's Model Name": "Mammomat Inspiration"},
               {"SOP Instance UID": "i4", "Patient's Age": "", "Manufacturer": "Planmed",
                "Manufacturer's Model Name": "Planmed Nuance"}])
    return root


def listed(root: Path, options: IngestOptions) -> dict[str, object]:
    return {item.record_id if isinstance(item, ScanRecord) else item.record: item
            for item in list_vindr(str(root), options)}


def test_lister_labels_boxes_categories_and_bad_values(tmp_path, write_dicom, small_options):
    items = listed(build_vindr(tmp_path, write_dicom), small_options)
    assert {key: item.label for key, item in items.items() if isinstance(item, ScanRecord)} == \
        {"i1": 1, "i2": 0, "i4": 1, "i7": 0}
    assert items["i3"].status == "excluded" and "BI-RADS 3" in items["i3"].reason
    assert items["i5"].status == "quarantined" and "unknown finding categories ['unicorn']" in items["i5"].reason
    assert items["i5"].file.endswith("finding_annotations.csv")
    assert items["i6"].status == "quarantined" and "unknown breast_birads 'BI-RADS 0'" in items["i6"].reason
    first = items["i1"]
    assert (first.laterality, first.view, first.density, first.source_split, first.patient_id) == \
        ("L", "CC", 3, "train", "s1")
    assert [(l.kind, l.malignant, l.outline, l.points) for l in first.lesions] == \
        [("mass", True, "box", ((40.0, 10.0), (80.0, 30.0)))]
    assert items["i2"].lesions == ()  # skin thickening is no mask lesion; "No Finding" none at all
    # Two categories on one box: one lesion of each kind, malignant by the breast (no finding BI-RADS); the
    # asymmetry's own BI-RADS 3 makes it benign; a distortion without a box locates nothing.
    assert sorted((l.kind, l.malignant, l.outline) for l in items["i4"].lesions) == [
        ("calcification", True, "box"), ("mass", False, "box"), ("mass", True, "box"), ("mass", True, "none")]
    assert items["i4"].source_split == "test" and items["i7"].density == 0


def test_birads_rule_is_configurable_and_checked(tmp_path, write_dicom):
    root = build_vindr(tmp_path, write_dicom)
    options = IngestOptions(height=32, width=24, vindr_negative_birads=("1",), vindr_positive_birads=("3", "4", "5"))
    items = listed(root, options)
    assert items["i3"].label == 1 and items["i2"].status == "excluded" and "BI-RADS 2" in items["i2"].reason
    # The finding rule follows: the asymmetry's BI-RADS 3 is now positive.
    assert all(lesion.malignant for lesion in items["i4"].lesions)
    with pytest.raises(ValueError, match="vindr BI-RADS values \\['4'\\] are both"):
        IngestOptions(vindr_negative_birads=("4",))
    with pytest.raises(ValueError, match="vindr_positive_birads must be a sequence of strings"):
        IngestOptions(vindr_positive_birads="45")


def test_box_mask_lands_where_the_box_is_after_resize(tmp_path, write_dicom, small_options):
    results = ingest("vindr", build_vindr(tmp_path, write_dicom), small_options)
    mask = mask_of(results["i1"])
    # Box rows 40..80 of 200, cols 10..30 of 100, stretched to 64 x 48: rows 12.8..25.6, cols 4.8..14.4.
    rows, cols = np.nonzero(mask == 3)  # 3 = malignant mass
    assert set(np.unique(mask)) == {0, 3}
    assert abs(rows.min() - 12.8) <= 1 and abs(rows.max() - 25.6) <= 1
    assert abs(cols.min() - 4.8) <= 1 and abs(cols.max() - 14.4) <= 1
    assert value(results["i1"], "mask_complete") == 1 and value(results["i1"], "pathology") == "malignant"
    assert value(results["i4"], "mask_complete") == 0  # the distortion has no box
    assert value(results["i2"], "mask_complete") == 1 and not mask_of(results["i2"]).any()


def test_population_fields_from_metadata(tmp_path, write_dicom, small_options):
    root = build_vindr(tmp_path, write_dicom)
    items = listed(root, small_options)
    assert (items["i1"].age_group, items["i1"].device) == ("60-69", "SIEMENS Mammomat Inspiration")
    assert (items["i4"].age_group, items["i4"].device) == ("unknown", "Planmed Nuance")
    assert (items["i7"].age_group, items["i7"].device) == ("unknown", "unknown")  # no metadata row
    assert all((item.site, item.implant) == ("unknown", "unknown") for item in items.values()
               if isinstance(item, ScanRecord))
    example = process_record(items["i1"], small_options)
    assert value(example.features.feature, "age_group") == "60-69"
    assert b"061Y" not in example.SerializeToString()
    assert [key for key in example.features.feature if "age" in key.split("_")] == ["age_group"]
    (root / "metadata.csv").unlink()
    assert listed(root, small_options)["i1"].age_group == "unknown"


@pytest.mark.parametrize("header", [("image_id", "PatientAge", "Manufacturer", "ManufacturerModelName"),
                                    ("sop_instance_uid", "age", "manufacturer", "model"),
                                    ("Image ID", "Patient Age", "Manufacturer", "Model Name")])
def test_metadata_header_spellings(tmp_path, header):
    write_csv(tmp_path / "metadata.csv", list(header), [dict(zip(header, ["i9", "45", "IMS", "GIOTTO"]))])
    assert read_metadata(str(tmp_path)) == {"i9": ("<50", "IMS GIOTTO")}


def test_metadata_without_image_key_leaves_population_unknown(tmp_path):
    write_csv(tmp_path / "metadata.csv", ["Patient's Age", "Manufacturer"], [{"Patient's Age": "050Y",
                                                                             "Manufacturer": "X"}])
    assert read_metadata(str(tmp_path)) == {}


def test_finding_categories_are_python_style_lists():
    assert finding_categories("['Mass', 'Suspicious Calcification']") == ("mass", "suspicious calcification")
    assert finding_categories("Mass") == ("mass",)
    with pytest.raises(ValueError, match="not a list of names"):
        finding_categories("['Mass'")


def test_missing_breast_csv_is_a_clear_error(tmp_path, small_options):
    with pytest.raises(Exception, match="no breast-level_annotations.csv"):
        list(list_vindr(str(tmp_path), small_options))


# ---------------------------------------------------------------- the synthetic release


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> synth.SynthSummary:
    return synth.generate("vindr", tmp_path_factory.mktemp("vindr"), STUDIES, SEED, inject_faults=True, scale=0.2)


@pytest.fixture(scope="module")
def ingested_release(release) -> dict[str, object]:
    return ingest("vindr", Path(release.out_dir), IngestOptions(height=64, width=48))


def test_synthetic_release_has_the_publishers_quirks(release):
    root = Path(release.out_dir)
    broken = {Path(fault.path) for fault in release.faults}
    syntaxes, photometrics = Counter(), Counter()
    for image in release.images:
        path = root / image.files[0]
        if path in broken:
            continue
        ds = pydicom.dcmread(path)
        syntaxes[ds.file_meta.TransferSyntaxUID] += 1
        photometrics[ds.PhotometricInterpretation] += 1
        assert ds.Modality == "MG" and len(ds.WindowCenter) == len(ds.WindowWidth) == 2
        assert "PixelPaddingValue" in ds and "RescaleSlope" in ds
    assert set(syntaxes) == {ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless}
    assert set(photometrics) == {"MONOCHROME1", "MONOCHROME2"}
    labels = Counter(image.label for image in release.clean_images)
    assert labels[0] > labels[1] > 0 and labels[None] > 0  # mostly negatives, some BI-RADS 3, few positives


def test_synthetic_release_ingests_with_its_truth(release, ingested_release):
    for image in release.clean_images:
        result = ingested_release[image.image_id]
        if image.label is None:
            assert result.status == "excluded" and "BI-RADS 3" in result.reason
            continue
        assert not isinstance(result, QuarantineEntry), result
        assert (value(result, "label"), value(result, "laterality"), value(result, "view"),
                value(result, "source_split"), value(result, "density")) == \
            (image.label, image.laterality, image.view, image.source_split, image.density)
        # Every transfer syntax and both photometric interpretations decode with the breast bright on its own side.
        image_png = Image.open(io.BytesIO(result["image_png"].bytes_list.value[0]))
        assert breast_side(np.asarray(image_png)) == image.laterality
        assert value(result, "mask_complete") == 1
        assert bool(mask_of(result).any()) == bool(image.lesions)
        assert value(result, "age_group") in ("<50", "50-59", "60-69", "70+", "unknown")
        assert value(result, "device") != "unknown"


def test_synthetic_faults_end_with_their_reasons(release, ingested_release):
    expected = {"truncated_dicom": ("quarantined", "truncated"),
                "missing_image": ("quarantined", "image file missing"),
                "unknown_value": ("quarantined", "unknown laterality 'B'"),
                "non_mammogram_dicom": ("quarantined", "Modality is OT, expected MG"),
                "for_processing_dicom": ("excluded", "FOR PROCESSING")}
    for image in release.images:
        if image.fault in expected:
            status, reason = expected[image.fault]
            result = ingested_release[image.image_id]
            assert result.status == status and reason in result.reason, (image.fault, result)
    no_box = next(image for image in release.images if image.fault == "no_box_finding")
    result = ingested_release[no_box.image_id]
    assert value(result, "label") == 1 and value(result, "mask_complete") == 0 and not mask_of(result).any()


@pytest.mark.e2e
def test_example_gen_ingests_vindr(tmp_path):
    summary = write_vindr(str(tmp_path / "vindr"), 3, SEED, True, 0.15)
    examples, quarantine = run_executor([DataSource.parse(f"vindr={tmp_path / 'vindr'}")], str(tmp_path / "out"))
    splits = {split: read_split(examples.uri, split) for split in ("train", "eval", "test")}
    report = read_quarantine_rows(os.path.join(quarantine.uri, QUARANTINE_FILE))
    n_examples = sum(len(s) for s in splits.values())
    kept = [image for image in summary.images if image.label is not None
            and image.fault in (None, "no_box_finding")]
    assert n_examples == len(kept) and n_examples + len(report) == len(summary.images)
    assert Counter(row["status"] for row in report) == {
        "quarantined": 4, "excluded": 1 + sum(image.label is None for image in summary.clean_images)}
    assert {feature(e, "dataset") for s in splits.values() for e in s} == {"vindr"}
    # The official test studies stay in the test split.
    test_keys = {feature(e, "image_key") for e in splits["test"]}
    assert test_keys and len(test_keys) == sum(image.source_split == "test" for image in kept)
    assert {feature(e, "device") for s in splits.values() for e in s} <= {
        "SIEMENS Mammomat Inspiration", "IMS s.r.l. GIOTTO IMAGE 3DL", "Planmed Nuance"}


@pytest.mark.parametrize("window", [{}, {"WindowCenter": ["2000", "2500"], "WindowWidth": ["3000", "4000"]}])
def test_padding_is_black_in_a_monochrome1_image(tmp_path, write_dicom, window):
    # MONOCHROME1: stored 0 is white. A detector frame padded with 0 must still show black, with or without a
    # (multi-valued) window; the breast keeps its grey levels.
    stored = np.full((40, 30), 3000, np.uint16)
    stored[:, :5] = 0
    path = write_dicom(tmp_path / "m1.dicom", stored, bits_stored=12, photometric="MONOCHROME1",
                       PixelPaddingValue=0, **window)
    decoded = read_dicom(str(path))
    full = to_uint16(decoded.pixels, decoded.scale, decoded.offset)
    assert (full[:, :5] == 0).all() and (full[:, 5:] > 0).all()
    unpadded = read_dicom(str(write_dicom(tmp_path / "plain.dicom", stored, bits_stored=12,
                                          photometric="MONOCHROME1", **window)))
    assert (to_uint16(unpadded.pixels, unpadded.scale, unpadded.offset)[:, :5] == 65535).all()
    assert (to_uint16(unpadded.pixels, unpadded.scale, unpadded.offset)[:, 5:] == full[:, 5:]).all()
