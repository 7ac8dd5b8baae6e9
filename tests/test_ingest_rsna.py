"""RSNA Screening Mammography: lister, labels, population fields, compressed DICOMs (JPEG 2000, JPEG lossless,
MONOCHROME1, SIGMOID VOI), planted faults, the unlabelled test set, patch-sampler counts and ExampleGen end to end."""
from __future__ import annotations

import csv
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tensorflow as tf
from libjpeg import decode as libjpeg_decode
from pydicom.pixels import apply_voi_lut
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1

from components.patch_sampler.executor import INCOMPLETE_MASK_SCANS, SCANS, SampleScanPatches
from mammo_tfx import names, synth
from mammo_tfx.ingest.demographics import age_group
from mammo_tfx.ingest.dicom_io import read_dicom
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import AGE_GROUPS, BadInputError, QuarantineEntry, ScanRecord
from mammo_tfx.patches import PatchSamplingOptions
from mammo_tfx.synth.dicom_io import (DIGITAL_MAMMOGRAPHY_STORAGE, SECONDARY_CAPTURE_STORAGE, DicomIdentity,
                                      save_dicom)
from mammo_tfx.synth.jpeg_lossless import encode_jpeg_lossless
from mammo_tfx.synth.rsna import MACHINES, Machine, compressed_dicom
from pipeline.sources import DataSource
from tests.conftest import run_executor

OPTIONS = IngestOptions(height=64, width=48, patient_salt="rsna-test-salt")
REPACKAGED_MACHINES = {str(machine.machine_id) for machine in MACHINES if machine.repackaged}
PATIENTS = 8
SEED = 4


@pytest.fixture(scope="module")
def rsna(tmp_path_factory: pytest.TempPathFactory) -> tuple[synth.SynthSummary, list[dict[str, str]]]:
    """A small generated RSNA folder with every planted fault, and its train.csv rows."""
    root = tmp_path_factory.mktemp("rsna")
    summary = synth.generate("rsna", root, PATIENTS, SEED, inject_faults=True, scale=0.1)
    with open(root / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return summary, rows


@pytest.fixture(scope="module")
def listed(rsna) -> list[ScanRecord | QuarantineEntry]:
    return list(list_records("rsna", rsna[0].out_dir, OPTIONS))


@pytest.fixture(scope="module")
def outcomes(listed) -> dict[str, tf.train.Example | QuarantineEntry]:
    """record id -> the example or quarantine entry of every listed record."""
    return {item.record_id if isinstance(item, ScanRecord) else item.record:
            process_record(item, OPTIONS) if isinstance(item, ScanRecord) else item for item in listed}


def _value(example: tf.train.Example, key: str) -> object:
    values = example.features.feature[key]
    return values.bytes_list.value[0].decode() if values.bytes_list.value else values.int64_list.value[0]


# ------------------------------------------------------------------------------------------------ listing, labels


def test_every_row_is_listed_with_its_cancer_label_and_population_fields(rsna, listed) -> None:
    summary, rows = rsna
    assert len(listed) == len(rows) == summary.n_images
    by_id = {f"{row['patient_id']}/{row['image_id']}": row for row in rows}
    records = [item for item in listed if isinstance(item, ScanRecord)]
    assert len(records) == len(rows) - 3  # the unknown view, laterality and cancer rows are quarantined at listing
    for record in records:
        row = by_id[record.record_id]
        assert record.dataset == "rsna" and record.label == int(row["cancer"])
        assert record.image_path == os.path.join(summary.out_dir, "train_images", row["patient_id"],
                                                 f"{row['image_id']}.dcm")
        assert (record.laterality, record.view) == (row["laterality"], row["view"])
        assert not record.has_annotations and not record.lesions and record.mammograms_by_publisher
        assert record.source_split == "none"  # the publisher's train set: hashed over all our splits
        assert record.age_group == age_group(row["age"])
        assert record.site == row["site_id"] and record.device == f"machine {row['machine_id']}"
        assert record.implant == {"1": "yes", "0": "no"}[row["implant"]]
        assert record.density == {"": 0, "A": 1, "B": 2, "C": 3, "D": 4}[row["density"]]
    assert {record.view for record in records} > {"CC", "MLO"}  # supplementary views are kept


def test_generated_set_has_screening_proportions_and_every_file_variant(rsna) -> None:
    summary, rows = rsna
    clean = summary.clean_images
    cancers = {image.patient_id for image in clean if image.label == 1}
    assert 3 <= len(cancers) < PATIENTS
    assert sum(image.label == 0 for image in clean) > sum(image.label == 1 for image in clean)
    assert {row["site_id"] for row in rows} == {"1", "2"} and len({row["machine_id"] for row in rows}) == 6
    assert {row["difficult_negative_case"] for row in rows} <= {"True", "False"}
    headers = [pydicom.dcmread(Path(summary.out_dir) / image.files[0], stop_before_pixels=True) for image in clean]
    assert {str(h.file_meta.TransferSyntaxUID) for h in headers} == {JPEG2000Lossless, JPEGLosslessSV1}
    assert {h.PhotometricInterpretation for h in headers} == {"MONOCHROME1", "MONOCHROME2"}
    assert {h.get("VOILUTFunction", "LINEAR") for h in headers} == {"LINEAR", "SIGMOID"}
    assert all("VOILUTSequence" not in h and "WindowCenter" in h for h in headers)


def test_both_kinds_of_header_are_written_and_ingested(rsna, outcomes) -> None:
    """Full digital-mammography headers and stripped, re-packaged ones (no Modality, a Secondary Capture file meta):
    every clean file of either kind becomes an example."""
    summary, _ = rsna
    kinds = Counter()
    for image in summary.clean_images:
        header = pydicom.dcmread(Path(summary.out_dir) / image.files[0], stop_before_pixels=True)
        if "Modality" in header:
            assert header.Modality == "MG" and header.SOPClassUID == DIGITAL_MAMMOGRAPHY_STORAGE
            assert header.PresentationIntentType == "FOR PRESENTATION"
            kinds["full"] += 1
        else:
            assert "SOPClassUID" not in header and "PresentationIntentType" not in header
            assert header.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE_STORAGE
            kinds["repackaged"] += 1
        assert isinstance(outcomes[f"{image.patient_id}/{image.image_id}"], tf.train.Example), image
    assert kinds["full"] > 0 and kinds["repackaged"] > 0


def test_the_unlabelled_competition_test_set_is_refused(tmp_path: Path) -> None:
    (tmp_path / "test_images" / "10008").mkdir(parents=True)
    (tmp_path / "test.csv").write_text("site_id,patient_id,image_id,laterality,view,age,implant,machine_id,"
                                       "prediction_id\n2,10008,736471439,L,MLO,81,0,21,10008_L\n")
    with pytest.raises(BadInputError, match="unlabelled test set") as caught:
        list(list_records("rsna", str(tmp_path), OPTIONS))
    assert caught.value.file == str(tmp_path / "test.csv")
    with pytest.raises(BadInputError, match="no RSNA train.csv"):
        list(list_records("rsna", str(tmp_path / "test_images"), OPTIONS))


# ------------------------------------------------------------------------------------------------ faults, examples


def test_planted_faults_are_quarantined_with_reasons_naming_the_file(rsna, outcomes) -> None:
    summary, _ = rsna
    expected = {"truncated_dicom": "truncated or corrupt", "missing_image": "file not found",
                "unknown_view": "unknown view 'XCCL'", "unknown_laterality": "unknown laterality 'B'",
                "bad_label": "cancer must be 0 or 1", "non_mammogram_dicom": "DICOM Modality is OT"}
    faulty = {image.fault: image for image in summary.images if image.fault}
    assert set(faulty) == set(expected)
    for kind, phrase in expected.items():
        image = faulty[kind]
        entry = outcomes[f"{image.patient_id}/{image.image_id}"]
        assert isinstance(entry, QuarantineEntry) and entry.status == "quarantined", kind
        assert phrase in entry.reason, (kind, entry.reason)
        if kind.startswith(("unknown", "bad")):  # a bad CSV row: the CSV and its line
            assert entry.file.endswith("train.csv") and entry.reason.startswith("line "), (kind, entry)
        else:  # a bad image: its DICOM file
            assert entry.file.endswith(f"{image.image_id}.dcm"), (kind, entry)
    clean = [outcome for outcome in outcomes.values() if isinstance(outcome, tf.train.Example)]
    assert len(clean) == len(summary.clean_images)


def test_examples_carry_population_slices_but_no_identity_or_exact_age(rsna, outcomes) -> None:
    _, rows = rsna
    by_id = {f"{row['patient_id']}/{row['image_id']}": row for row in rows}
    examples = {record: outcome for record, outcome in outcomes.items() if isinstance(outcome, tf.train.Example)}
    for record, example in examples.items():
        row = by_id[record]
        assert _value(example, names.DATASET) == "rsna" and _value(example, names.MASK_COMPLETE) == 0
        assert _value(example, names.LABEL) == int(row["cancer"]) and _value(example, names.VIEW) == row["view"]
        assert _value(example, names.AGE_GROUP) in AGE_GROUPS and _value(example, names.SITE) == row["site_id"]
        assert _value(example, names.DEVICE) == f"machine {row['machine_id']}"
        # Nothing but the image/mask PNGs holds bytes that could spell an id or the age.
        text = b" ".join(value for key, feature in example.features.feature.items()
                         if key not in (names.IMAGE_PNG, names.MASK_PNG) for value in feature.bytes_list.value)
        for secret in (row["patient_id"], row["image_id"], row["age"]):
            assert not secret or secret.encode() not in text, (secret, record)
        ages = [value for feature in example.features.feature.values() for value in feature.float_list.value]
        assert row["age"] == "" or float(row["age"]) not in ages


def test_patch_sampler_counts_rsna_scans_as_incomplete_masks(outcomes) -> None:
    example = next(outcome for outcome in outcomes.values() if isinstance(outcome, tf.train.Example))
    produced = list(SampleScanPatches(PatchSamplingOptions(patch_size=16), "train").process(
        example.SerializeToString()))
    tallies = Counter(dict([output.value for output in produced if getattr(output, "tag", None) == "tally"]))
    assert tallies == {SCANS: 1, INCOMPLETE_MASK_SCANS: 1}  # decoded, no outline: no patch at all
    assert not [output for output in produced if isinstance(output, bytes)]


# ------------------------------------------------------------------------------------------------ DICOM decoding


def _write(tmp_path: Path, pixels: np.ndarray, machine: Machine, window: tuple[int, int]) -> str:
    tags: dict[str, object] = {"Modality": "MG", "WindowCenter": str(window[0]), "WindowWidth": str(window[1])}
    if machine.voi_function == "SIGMOID":
        tags["VOILUTFunction"] = "SIGMOID"
    identity = DicomIdentity(DIGITAL_MAMMOGRAPHY_STORAGE, "2.25.1", "2.25.2", "2.25.3")
    path = str(tmp_path / f"machine{machine.machine_id}.dcm")
    save_dicom(compressed_dicom(pixels, machine, identity, tags), path)
    return path


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: f"{m.transfer_syntax.name[:14]}-{m.bits_stored}bit-"
                                                          f"{m.photometric}-{m.voi_function}")
def test_each_syntax_decodes_losslessly_and_displays_by_the_standard_rule(tmp_path: Path, machine: Machine) -> None:
    rng = np.random.default_rng(machine.machine_id)
    top = (1 << machine.bits_stored) - 1
    pixels = rng.integers(0, top + 1, (48, 40)).astype(np.uint16)  # the generator's smallest image
    pixels[0, :3] = (0, top, 0)  # the largest jumps a predictor sees
    window = (top // 2, top // 3)
    path = _write(tmp_path, pixels, machine, window)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == machine.transfer_syntax
    decoded = read_dicom(path)
    # Independent display value: pydicom's own VOI (LINEAR or SIGMOID as the header says) on pydicom's own decode,
    # scaled to [0, 1], inverted for MONOCHROME1; ours is the reader's pixels through its affine.
    np.testing.assert_array_equal(ds.pixel_array, pixels)
    reference = apply_voi_lut(ds.pixel_array, ds).astype(np.float64) / top
    if machine.photometric == "MONOCHROME1":
        reference = 1.0 - reference
    ours = (decoded.pixels.astype(np.float64) * decoded.scale + decoded.offset) / 65535.0
    np.testing.assert_allclose(ours, reference, atol=2e-3)
    if machine.voi_function == "SIGMOID":  # the textbook formula, on the stored values
        sigmoid = 1.0 / (1.0 + np.exp(-4.0 * (pixels.astype(np.float64) - window[0]) / window[1]))
        expected = 1.0 - sigmoid if machine.photometric == "MONOCHROME1" else sigmoid
        np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.mark.parametrize("precision", [8, 12, 16])
def test_jpeg_lossless_encoder_round_trips_through_libjpeg(precision: int) -> None:
    rng = np.random.default_rng(precision)
    pixels = rng.integers(0, 1 << precision, (23, 31)).astype(np.uint8 if precision == 8 else np.uint16)
    pixels[1, :4] = (0, (1 << precision) - 1, 0, 1 << (precision - 1))  # differences of every category, 16 included
    codestream = encode_jpeg_lossless(pixels, precision)
    assert codestream[:4] == b"\xff\xd8\xff\xc4" and codestream.endswith(b"\xff\xd9")
    np.testing.assert_array_equal(libjpeg_decode(codestream), pixels)
    with pytest.raises(ValueError, match="precision"):
        encode_jpeg_lossless(pixels, precision - 1)


# ------------------------------------------------------------------------------------------------ ExampleGen


@pytest.mark.e2e
def test_example_gen_ingests_rsna_with_patient_grouped_splits(rsna, tmp_path: Path) -> None:
    summary, rows = rsna
    clean = {f"{image.patient_id}/{image.image_id}" for image in summary.clean_images}
    examples, quarantine = run_executor([DataSource.parse(f"rsna={summary.out_dir}")], str(tmp_path))
    split_of_patient: dict[str, set[str]] = defaultdict(set)
    views, labels = Counter(), Counter()
    for split in ("train", "eval", "test"):
        files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            split_of_patient[_value(example, names.PATIENT_KEY)].add(split)
            views[_value(example, names.VIEW)] += 1
            labels[_value(example, names.LABEL)] += 1
    assert sum(views.values()) == len(summary.clean_images) == quarantine.get_int_custom_property("ingested")
    assert quarantine.get_int_custom_property("quarantined") == len(summary.faults)
    assert quarantine.get_int_custom_property("listed") == len(rows)
    assert len(split_of_patient) == PATIENTS and all(len(splits) == 1 for splits in split_of_patient.values())
    # The re-packaged headers are counted in the summary, never silently accepted.
    with open(os.path.join(quarantine.uri, names.INGEST_SUMMARY_FILE)) as handle:
        header_counts = json.load(handle)["per_dataset"]["rsna"]["header"]
    repackaged = sum(row["machine_id"] in REPACKAGED_MACHINES and f"{row['patient_id']}/{row['image_id']}" in clean
                     for row in rows)
    assert header_counts == {"no_modality": repackaged, "secondary_capture": repackaged} and repackaged > 0
    assert set(views) > {"CC", "MLO"} and labels[1] == sum(image.label == 1 for image in summary.clean_images)
