"""breast_key and exam_key: salted, in every layout, grouping the images of one breast and of one exam."""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image
from tensorflow_metadata.proto.v0 import schema_pb2

from components.mammo_example_gen.executor import describe_units
from mammo_tfx.ingest.beam_graph import summarise, unit_count_keys
from mammo_tfx import names, synth
from mammo_tfx.ingest.identity import (ImageIdentity, breast_id, exam_id, image_identity, name_identity,
                                      read_dicom_identity, unit_keys)
from mammo_tfx.ingest.layouts import LISTERS, list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record, scan_unit_keys
from mammo_tfx.ingest.records import QuarantineEntry, ScanRecord
from tests.conftest import ingest, phantom, value
from tests.test_ingest_layouts import CALC_HEADER, MASS_HEADER, cbis_row, write_pgm

HEX_KEY = re.compile(r"^[0-9a-f]{32}$")
SALT = "test-salt"


# ---------------------------------------------------------------- the key rule
def test_keys_are_salted_hex_and_group_breasts_and_exams():
    left = unit_keys(SALT, "rsna", "10007", "", "L", "img-1")
    left_again = unit_keys(SALT, "rsna", "10007", "", "L", "img-2")  # the other view of the same breast
    right = unit_keys(SALT, "rsna", "10007", "", "R", "img-3")
    other_woman = unit_keys(SALT, "rsna", "10008", "", "L", "img-4")
    for keys in (left, right, other_woman):
        assert HEX_KEY.match(keys.breast_key) and HEX_KEY.match(keys.exam_key)
        assert not keys.own_breast and not keys.own_exam
    assert left.breast_key == left_again.breast_key and left.exam_key == left_again.exam_key
    assert left.breast_key != right.breast_key and left.exam_key == right.exam_key
    assert other_woman.breast_key != left.breast_key and other_woman.exam_key != left.exam_key
    assert left.breast_key != left.exam_key
    # Another salt, another dataset or another study gives other keys.
    assert unit_keys("other-salt", "rsna", "10007", "", "L", "img-1").breast_key != left.breast_key
    assert unit_keys(SALT, "vindr", "10007", "", "L", "img-1").exam_key != left.exam_key
    assert unit_keys(SALT, "rsna", "10007", "study-2", "L", "img-1").exam_key != left.exam_key


def test_unknown_laterality_is_its_own_breast_in_its_exam():
    known = unit_keys(SALT, "folder", "PAT", "1.2.3", "L", "a.dcm")
    first = unit_keys(SALT, "folder", "PAT", "1.2.3", "U", "b.dcm")
    second = unit_keys(SALT, "folder", "PAT", "1.2.3", "U", "c.dcm")
    assert first.own_breast and not first.own_exam
    assert first.exam_key == second.exam_key == known.exam_key
    assert len({first.breast_key, second.breast_key, known.breast_key}) == 3


def test_unplaced_image_is_its_own_exam_and_breast():
    first = unit_keys(SALT, "folder", "stem-a", "", "L", "neg/a.png", exam_known=False)
    second = unit_keys(SALT, "folder", "stem-a", "", "L", "neg/b.png", exam_known=False)
    assert first.own_breast and first.own_exam
    assert first.exam_key != second.exam_key and first.breast_key != second.breast_key
    assert first.breast_key != first.exam_key


def test_no_raw_id_in_keys_and_empty_patient_refused():
    keys = unit_keys(SALT, "cbis-ddsm", "P_00001", "", "L", "P_00001_LEFT_CC")
    assert "P_00001" not in keys.breast_key + keys.exam_key
    with pytest.raises(ValueError, match="empty patient id"):
        unit_keys(SALT, "cbis-ddsm", "", "", "L", "x")


def test_readable_unit_ids():
    assert exam_id("PAT", "1.2.3") == "PAT/1.2.3" and exam_id("PAT") == "PAT"
    assert breast_id("PAT", "1.2.3", "R") == "PAT/1.2.3/R" and breast_id("PAT", "", "L") == "PAT/L"
    with pytest.raises(ValueError, match="laterality"):
        breast_id("PAT", "", "U")


# ---------------------------------------------------------------- every synthetic layout, end to end per record
def _examples_by_truth(layout: str, root: Path, options: IngestOptions):
    summary = synth.generate(layout, root, 3, 11, scale=0.1)
    # Images the dataset's own rule leaves out (INbreast BI-RADS 3) have no label and no example.
    truth = {image.image_id: image for image in summary.clean_images if image.label is not None}
    examples = {}
    for item in list_records(layout, str(root), options):
        if isinstance(item, QuarantineEntry) and item.status == "excluded":
            continue
        assert isinstance(item, ScanRecord), item
        result = process_record(item, options)
        assert isinstance(result, tf.train.Example), result
        examples[item.image_id] = result.features.feature
    assert set(examples) == set(truth)
    return truth, examples


def _partition(mapping: dict[str, object]) -> set[frozenset[str]]:
    groups: dict[object, set[str]] = defaultdict(set)
    for image_id, group in mapping.items():
        groups[group].add(image_id)
    return {frozenset(group) for group in groups.values()}


@pytest.mark.parametrize("layout", synth.LAYOUTS)
def test_every_layout_keys_its_breasts_and_exams(layout, tmp_path):
    options = IngestOptions(height=64, width=48, patient_salt=SALT)
    truth, examples = _examples_by_truth(layout, tmp_path / "a", options)
    for features in examples.values():
        assert HEX_KEY.match(value(features, names.BREAST_KEY)) and HEX_KEY.match(value(features, names.EXAM_KEY))
    # Images share a breast key exactly when they show the same woman's same side, and an exam key exactly when
    # they are the same woman's (every synthetic layout holds one exam per woman).
    assert _partition({i: value(f, names.BREAST_KEY) for i, f in examples.items()}) == _partition(
        {i: (image.patient_id, image.laterality) for i, image in truth.items()})
    assert _partition({i: value(f, names.EXAM_KEY) for i, f in examples.items()}) == _partition(
        {i: image.patient_id for i, image in truth.items()})
    assert all(value(examples[i], names.LATERALITY) == image.laterality for i, image in truth.items())
    # The keys depend on the salt and hold no raw id.
    _, resalted = _examples_by_truth(layout, tmp_path / "b", IngestOptions(height=64, width=48, patient_salt="x"))
    for image_id, features in examples.items():
        assert value(resalted[image_id], names.BREAST_KEY) != value(features, names.BREAST_KEY)
        assert value(resalted[image_id], names.EXAM_KEY) != value(features, names.EXAM_KEY)
        raw = {truth[image_id].patient_id, image_id}
        assert not any(identifier in value(features, key) for identifier in raw
                       for key in (names.BREAST_KEY, names.EXAM_KEY))


# ---------------------------------------------------------------- CBIS-DDSM: one woman across collections and splits
def test_cbis_patient_is_one_woman_across_calc_mass_train_and_test(tmp_path, small_options):
    scans = {"Mass-Training_P_00001_LEFT_CC/1.dcm": ("mass_case_description_train_set.csv", "LEFT", "CC"),
             "Calc-Test_P_00001_LEFT_MLO/1.dcm": ("calc_case_description_test_set.csv", "LEFT", "MLO"),
             "Mass-Test_P_00001_RIGHT_CC/1.dcm": ("mass_case_description_test_set.csv", "RIGHT", "CC"),
             "Calc-Training_P_00002_LEFT_CC/1.dcm": ("calc_case_description_train_set.csv", "LEFT", "CC")}
    rows: dict[str, list] = defaultdict(list)
    for image, (table, side, view) in scans.items():
        (tmp_path / image).parent.mkdir()
        (tmp_path / image).write_bytes(b"")  # listing finds the files; their content is not read
        kind = "calcification" if table.startswith("calc") else "mass"
        rows[table].append(cbis_row(image.split("_", 1)[1][:7], 2, side, view, 1, kind, "BENIGN", image,
                                    "c.dcm", "m.dcm"))
    for table, table_rows in rows.items():
        with open(tmp_path / table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CALC_HEADER if table.startswith("calc") else MASS_HEADER)
            writer.writerows(table_rows)
    records = {item.record_id: item for item in LISTERS["cbis-ddsm"](str(tmp_path), small_options)
               if isinstance(item, ScanRecord)}
    keys = {scan: scan_unit_keys(record, record.laterality, SALT) for scan, record in records.items()}
    assert keys["P_00001_LEFT_CC"].breast_key == keys["P_00001_LEFT_MLO"].breast_key
    assert keys["P_00001_LEFT_CC"].exam_key == keys["P_00001_RIGHT_CC"].exam_key
    assert keys["P_00001_LEFT_CC"].breast_key != keys["P_00001_RIGHT_CC"].breast_key
    assert keys["P_00002_LEFT_CC"].exam_key != keys["P_00001_LEFT_CC"].exam_key
    assert {records[scan].source_split for scan in ("P_00001_LEFT_CC", "P_00001_LEFT_MLO")} == {"train", "test"}


# ---------------------------------------------------------------- MIAS: the pair is the woman
def test_mias_pairs_are_exams_and_the_inferred_side_the_breast(tmp_path, small_options):
    # The publisher's rule: odd numbers are right breasts, even numbers left; the side itself is inferred.
    for number, side in ((1, "R"), (2, "L"), (3, "R"), (4, "L")):
        write_pgm(tmp_path / f"mdb00{number}.pgm", phantom(80, 80, side, bits=8))
    (tmp_path / "Info.txt").write_text("".join(f"mdb00{number} G NORM\n" for number in range(1, 5)))
    results = ingest("mias", tmp_path, small_options)
    assert [value(results[f"mdb00{n}"], names.LATERALITY) for n in range(1, 5)] == ["R", "L", "R", "L"]
    breast = {n: value(results[f"mdb00{n}"], names.BREAST_KEY) for n in range(1, 5)}
    exam = {n: value(results[f"mdb00{n}"], names.EXAM_KEY) for n in range(1, 5)}
    assert exam[1] == exam[2] != exam[3] == exam[4]
    assert len(set(breast.values())) == 4


# ---------------------------------------------------------------- folder: DICOM tags, or the image on its own
def test_folder_keys_from_dicom_tags_with_fallbacks(tmp_path, write_dicom, small_options):
    study = "1.2.840.99.1"
    tags = dict(PatientID="PAT-1", StudyInstanceUID=study)
    write_dicom(tmp_path / "pos" / "lcc.dcm", phantom(80, 60, "L"), 12, ImageLaterality="L", ViewPosition="CC", **tags)
    write_dicom(tmp_path / "pos" / "lmlo.dcm", phantom(80, 60, "L"), 12, ImageLaterality="L", ViewPosition="MLO",
                **tags)
    write_dicom(tmp_path / "pos" / "rcc.dcm", phantom(80, 60, "R"), 12, ImageLaterality="R", ViewPosition="CC", **tags)
    write_dicom(tmp_path / "neg" / "unsided.dcm", phantom(80, 60, "R"), 12, ViewPosition="CC", **tags)
    write_dicom(tmp_path / "neg" / "later.dcm", phantom(80, 60, "L"), 12, ImageLaterality="L", PatientID="PAT-1",
                StudyInstanceUID="1.2.840.99.2")
    write_dicom(tmp_path / "neg" / "study_only.dcm", phantom(80, 60, "L"), 12, ImageLaterality="L", PatientID="",
                StudyInstanceUID="1.2.840.99.3")
    write_dicom(tmp_path / "neg" / "anonymous_LEFT_CC.dcm", phantom(80, 60, "L"), 12, PatientID="")
    Image.fromarray(phantom(80, 60, "L", bits=8)).save(tmp_path / "neg" / "case7_LEFT_CC.png")
    Image.fromarray(phantom(80, 60, "L", bits=8)).save(tmp_path / "neg" / "case7_LEFT_MLO.png")
    assert read_dicom_identity(str(tmp_path / "pos" / "lcc.dcm")) == ImageIdentity("PAT-1", study, "L", "CC")
    assert read_dicom_identity(str(tmp_path / "neg" / "case7_LEFT_CC.png")) is None
    results = ingest("folder", tmp_path, small_options)
    breast = {name: value(features, names.BREAST_KEY) for name, features in results.items()}
    exam = {name: value(features, names.EXAM_KEY) for name, features in results.items()}
    assert breast["pos/lcc.dcm"] == breast["pos/lmlo.dcm"] != breast["pos/rcc.dcm"]
    assert exam["pos/lcc.dcm"] == exam["pos/rcc.dcm"] == exam["neg/unsided.dcm"]
    assert value(results["neg/unsided.dcm"], names.LATERALITY) == "U"
    assert breast["neg/unsided.dcm"] not in (breast["pos/lcc.dcm"], breast["pos/rcc.dcm"])
    assert exam["neg/later.dcm"] != exam["pos/lcc.dcm"]  # another study of the same woman: another exam
    salt = small_options.patient_salt
    assert exam["pos/lcc.dcm"] == unit_keys(salt, "folder", "PAT-1", study, "L", "pos/lcc.dcm").exam_key
    # A study without a PatientID: the study stands for the patient.
    study_only = unit_keys(salt, "folder", "1.2.840.99.3", "1.2.840.99.3", "L", "neg/study_only.dcm")
    assert (exam["neg/study_only.dcm"], breast["neg/study_only.dcm"]) == (study_only.exam_key, study_only.breast_key)
    # No patient nor study known: each file is its own exam and breast, whatever its name says.
    loose = ("neg/anonymous_LEFT_CC.dcm", "neg/case7_LEFT_CC.png", "neg/case7_LEFT_MLO.png")
    assert len({exam[name] for name in loose} | {breast[name] for name in loose}) == 6
    assert not {exam[name] for name in loose} & {exam[name] for name in exam if name not in loose}
    assert all(value(results[name], names.LATERALITY) == "L" for name in loose)


def test_unplaced_scans_are_counted_in_the_ingest_summary(tmp_path, write_dicom, small_options):
    write_dicom(tmp_path / "pos" / "unsided.dcm", phantom(80, 60, "R"), 12, PatientID="PAT-1")
    write_dicom(tmp_path / "pos" / "sided.dcm", phantom(80, 60, "R"), 12, PatientID="PAT-1", ImageLaterality="R")
    (tmp_path / "neg").mkdir()
    Image.fromarray(phantom(80, 60, "L", bits=8)).save(tmp_path / "neg" / "loose.png")
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for record in LISTERS["folder"](str(tmp_path), small_options):
        example = process_record(record, small_options)
        assert isinstance(example, tf.train.Example)
        counts[("ingested", "train", record.dataset)] += 1
        for key in unit_count_keys(record, example, small_options.patient_salt):
            counts[key] += 1
    summary = summarise(list(counts.items()))
    assert summary["ingested"] == summary["listed"] == 3
    assert summary["per_dataset"]["folder"]["units"] == {"own_breast": 2, "own_exam": 1}
    assert describe_units(summary) == [
        "folder: 2 scans with unknown laterality or exam are breasts of their own; "
        "1 scans without a patient or study id are exams of their own"]


def test_keys_never_hold_the_raw_folder_ids(tmp_path, write_dicom, small_options):
    write_dicom(tmp_path / "pos" / "scan.dcm", phantom(80, 60, "L"), 12, PatientID="Doe^Jane-77",
                StudyInstanceUID="1.2.3.4.5", ImageLaterality="L")
    features = ingest("folder", tmp_path, small_options)["pos/scan.dcm"]
    serialized = tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
    assert b"Doe^Jane-77" not in serialized and b"1.2.3.4.5" not in serialized
    assert all(HEX_KEY.match(value(features, key)) for key in (names.BREAST_KEY, names.EXAM_KEY))


def test_cbis_subject_names_in_folder_dicoms_name_the_woman(tmp_path, write_dicom, small_options):
    # CBIS-DDSM's DICOMs carry the subject name as PatientID and one StudyInstanceUID per image.
    write_dicom(tmp_path / "neg" / "1-130.dcm", phantom(80, 60, "L"), 12, PatientID="Mass-Test_P_00173_LEFT_CC",
                StudyInstanceUID="1.3.6.1.1")
    write_dicom(tmp_path / "neg" / "1-133.dcm", phantom(80, 60, "R"), 12, PatientID="Calc-Training_P_00173_RIGHT_MLO",
                StudyInstanceUID="1.3.6.1.2")
    write_dicom(tmp_path / "pos" / "1-280.dcm", phantom(80, 60, "L"), 12, PatientID="Mass-Test_P_00820_LEFT_CC",
                StudyInstanceUID="1.3.6.1.3")
    assert read_dicom_identity(str(tmp_path / "neg" / "1-133.dcm")) == ImageIdentity("P_00173", "", "R", "MLO")
    results = ingest("folder", tmp_path, small_options)
    first, second, other = results["neg/1-130.dcm"], results["neg/1-133.dcm"], results["pos/1-280.dcm"]
    assert value(first, names.PATIENT_KEY) == value(second, names.PATIENT_KEY) != value(other, names.PATIENT_KEY)
    assert value(first, names.EXAM_KEY) == value(second, names.EXAM_KEY) != value(other, names.EXAM_KEY)
    assert value(first, names.BREAST_KEY) != value(second, names.BREAST_KEY)
    assert (value(second, names.LATERALITY), value(second, names.VIEW)) == ("R", "MLO")


def test_image_identity_prefers_the_header_and_fills_its_gaps_from_the_name(tmp_path, write_dicom):
    study_only = write_dicom(tmp_path / "case7_LEFT_CC.dcm", np.zeros((8, 8), np.uint16), PatientID="",
                             StudyInstanceUID="1.2.3")
    assert image_identity(str(study_only)) == (ImageIdentity("", "1.2.3", "L", "CC"), "DICOM header")
    silent = write_dicom(tmp_path / "case8_R_MLO.dcm", np.zeros((8, 8), np.uint16), PatientID="",
                         ImageLaterality="L")
    # The name names the patient; the header's laterality wins over the name's.
    assert image_identity(str(silent)) == (ImageIdentity("CASE8", "", "L", "MLO"), "file name")
    assert name_identity("data/10006/462822612.dcm") == ImageIdentity("10006")
    assert name_identity("x/Calc-Test_P_00005_RIGHT_MLO_1/1.3/000000.dcm") == ImageIdentity("P_00005", "", "R", "MLO")
    assert name_identity("scan_0001.png") is None and name_identity("LCC.png") is None
    assert image_identity(str(tmp_path / "missing.png")) == (None, "")


def test_schema_declares_the_keys_as_every_example_writes_them(tmp_path, write_dicom, small_options):
    schema = schema_pb2.Schema()
    text_format.Parse((Path(__file__).resolve().parents[1] / "schemas" / "schema.pbtxt").read_text(), schema)
    features = {feature.name: feature for feature in schema.feature}
    for key in (names.BREAST_KEY, names.EXAM_KEY):
        feature = features[key]
        assert feature.type == schema_pb2.BYTES and feature.presence.min_fraction == 1.0
        assert [dim.size for dim in feature.shape.dim] == [1] and not feature.HasField("domain")
    write_dicom(tmp_path / "pos" / "scan.dcm", phantom(80, 60, "L"), 12, ImageLaterality="L")
    example = ingest("folder", tmp_path, small_options)["pos/scan.dcm"]
    assert set(example) == set(features)
