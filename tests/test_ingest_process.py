"""process_record end to end: example contents, pad mode, PHI, quarantine, picklability, real DICOMs."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import tensorflow as tf

from mammo_tfx.ingest.layouts import LISTERS
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.orientation import breast_side
from mammo_tfx.ingest.phi import salted_key
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.real_samples import build_real_sample_folder
from mammo_tfx.ingest.records import BadInputError, LesionRef, QuarantineEntry, ScanRecord

CONTRACT_KEYS = {"image_png", "mask_png", "label", "abnormality_type", "pathology", "dataset", "density", "view",
                 "laterality", "patient_key", "image_key", "breast_key", "exam_key", "source_split", "height", "width",
                 "original_height", "original_width", "pixel_spacing_mm", "content_box", "resize_mode", "bits_stored",
                 "mask_resized", "mask_complete", "age_group", "site", "device", "implant"}


def wide_breast(rows: int = 40, cols: int = 100) -> np.ndarray:
    image = np.zeros((rows, cols), np.uint16)
    image[5:35, 60:] = 4095  # breast against the right edge
    return image


def record_for(path, **fields) -> ScanRecord:
    values = dict(dataset="folder", record_id="rec-1", image_path=str(path), patient_id="Doe^John-123",
                  image_id="secret/dir/Doe_John_scan.dcm", label=1,
                  lesions=(LesionRef(kind="mass", malignant=True, outline="polygon",
                                     points=((10.0, 70.0), (10.0, 90.0), (30.0, 90.0), (30.0, 70.0))),))
    values.update(fields)
    return ScanRecord(**values)


def decode(features, key, dtype=tf.uint8) -> np.ndarray:
    return tf.io.decode_png(features[key].bytes_list.value[0], dtype=dtype).numpy()[..., 0]


def test_example_has_every_contract_feature(tmp_path, write_dicom, small_options):
    path = write_dicom(tmp_path / "a.dcm", wide_breast(), bits_stored=12, PixelSpacing=[0.1, 0.1])
    example = process_record(record_for(path), small_options)
    assert isinstance(example, tf.train.Example)
    features = example.features.feature
    assert set(features) == CONTRACT_KEYS
    image = decode(features, "image_png", tf.uint16)
    assert image.shape == (64, 48) and image.dtype == np.uint16 and image.max() > 60000
    mask = decode(features, "mask_png")
    assert mask.shape == (64, 48) and set(np.unique(mask)) == {0, 3}
    assert list(features["content_box"].int64_list.value) == [0, 0, 64, 48]
    assert list(features["pixel_spacing_mm"].float_list.value) == pytest.approx([0.1, 0.1])
    assert (features["original_height"].int64_list.value[0], features["original_width"].int64_list.value[0]) == (40, 100)
    assert features["patient_key"].bytes_list.value[0].decode() == salted_key(small_options.patient_salt, "folder", "Doe^John-123")
    assert all(features[key].bytes_list.value[0] == b"unknown" for key in ("age_group", "site", "device", "implant"))


def test_pad_mode_keeps_aspect_and_pads_away_from_the_breast(tmp_path, write_dicom):
    options = IngestOptions(height=64, width=48, resize_mode="pad")
    path = write_dicom(tmp_path / "a.dcm", wide_breast(), bits_stored=12)
    features = process_record(record_for(path), options).features.feature
    top, left, height, width = features["content_box"].int64_list.value
    assert (top, height, width) == (0, 19, 48)  # 40x100 scaled by 0.48
    image, mask = decode(features, "image_png", tf.uint16), decode(features, "mask_png")
    assert not image[height:].any() and not mask[height:].any()  # padding at the bottom is background
    assert mask[:height].max() == 3 and features["resize_mode"].bytes_list.value[0] == b"pad"
    tall = np.zeros((100, 40), np.uint16)
    tall[:, 30:] = 4095
    features = process_record(record_for(write_dicom(tmp_path / "t.dcm", tall, bits_stored=12), lesions=()),
                              options).features.feature
    top, left, height, width = features["content_box"].int64_list.value
    assert (top, left, height, width) == (0, 48 - 26, 64, 26)  # breast on the right: padding on the left
    assert not decode(features, "image_png", tf.uint16)[:, :left].any()


def test_no_phi_in_examples(tmp_path, write_dicom, small_options):
    path = write_dicom(tmp_path / "Doe_John_scan.dcm", wide_breast(), bits_stored=12, PatientName="Doe^John",
                       PatientID="Doe^John-123", PatientBirthDate="19600101", AccessionNumber="ACC999")
    options = IngestOptions(height=64, width=48, patient_salt="s1")
    example = process_record(record_for(path, prefer_dicom_tags=True), options)
    blob = example.SerializeToString()
    for secret in (b"Doe", b"John", b"19600101", b"ACC999", b"secret/dir", str(tmp_path).encode()):
        assert secret not in blob
    keys = {k: example.features.feature[k].bytes_list.value[0].decode() for k in ("patient_key", "image_key")}
    assert all(len(key) == 32 and int(key, 16) >= 0 for key in keys.values())
    other_salt = process_record(record_for(path, prefer_dicom_tags=True), IngestOptions(height=64, width=48, patient_salt="s2"))
    assert other_salt.features.feature["patient_key"].bytes_list.value[0].decode() != keys["patient_key"]


def test_bad_input_and_unexpected_errors_become_quarantine_entries(tmp_path, write_dicom, small_options):
    missing = process_record(record_for(tmp_path / "gone.dcm"), small_options)
    assert isinstance(missing, QuarantineEntry) and missing.status == "quarantined"
    assert missing.file == str(tmp_path / "gone.dcm") and missing.reason.startswith("BadInputError: file not found")
    path = write_dicom(tmp_path / "a.dcm", wide_breast(), bits_stored=12)
    broken_outline = LesionRef(kind="mass", malignant=True, outline="polygon", points=((1.0, 1.0),))
    entry = process_record(record_for(path, lesions=(broken_outline,)), small_options)
    assert isinstance(entry, QuarantineEntry) and entry.reason.startswith("ValueError: polygon outline with too few")
    assert entry.to_row() == {"dataset": "folder", "record": "rec-1", "file": str(path), "status": "quarantined",
                              "reason": entry.reason}


def test_everything_returned_is_picklable(tmp_path, write_dicom, small_options):
    path = write_dicom(tmp_path / "a.dcm", wide_breast(), bits_stored=12)
    record = record_for(path)
    for thing in (record, small_options, process_record(record, small_options),
                  process_record(record_for(tmp_path / "gone.dcm"), small_options)):
        assert pickle.loads(pickle.dumps(thing)) == thing
    error = pickle.loads(pickle.dumps(BadInputError("f.dcm", "broken")))
    assert (error.file, error.reason) == ("f.dcm", "broken")


def test_real_cbis_dicoms_through_the_folder_layout(tmp_path):
    copies = build_real_sample_folder(tmp_path / "copies", per_class=1, copies=3)
    assert len(copies) == 6 and len({link.resolve() for link in copies}) == 2
    links = build_real_sample_folder(tmp_path, per_class=1)
    assert [link.parent.name for link in links] == ["neg", "pos"]
    options = IngestOptions(height=288, width=224)
    records = list(LISTERS["folder"](str(tmp_path), options))  # tmp_path/copies is no class folder
    assert len(records) == 2 and all(isinstance(r, ScanRecord) for r in records)
    for record in records:
        example = process_record(record, options)
        features = example.features.feature
        image = decode(features, "image_png", tf.uint16)
        assert image.shape == (288, 224) and image.dtype == np.uint16
        assert image.std() > 1000 and features["bits_stored"].int64_list.value[0] == 16
        assert features["original_height"].int64_list.value[0] > 4000
        laterality = features["laterality"].bytes_list.value[0].decode()
        assert laterality in ("L", "R") and breast_side(image) == laterality
        blob = example.SerializeToString()
        assert b"Mass-" not in blob and b"P_00" not in blob and b".dcm" not in blob
        assert features["label"].int64_list.value[0] == (record.record_id.startswith("pos/"))
