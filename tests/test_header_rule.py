"""The mammogram header rule: what it refuses (a header contradicting a mammogram), excludes (FOR PROCESSING), accepts
and counts (no Modality, no SOP class, Secondary Capture), the folder layout's stricter rule and its setting, that it
runs before any pixel is decoded, and the run output's counts and mismatch warning."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import tensorflow as tf
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, ExplicitVRLittleEndian, generate_uid

from mammo_tfx.ingest import dicom_io
from mammo_tfx.ingest.beam_graph import summarise
from mammo_tfx.ingest.header_rule import (NO_MODALITY, NO_SOP_CLASS, PUBLISHED_MAMMOGRAMS, SECONDARY_CAPTURE,
                                          UNLISTED_SOP_CLASS, MammogramHeaderRule, describe_header_notes)
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record, process_record_noting_header
from mammo_tfx.ingest.reasons import rule_mismatch_warnings
from mammo_tfx.ingest.records import BadInputError, QuarantineEntry, ScanRecord

DIGITAL_MAMMOGRAPHY = "1.2.840.10008.5.1.4.1.1.1.2"
SECONDARY_CAPTURE_CLASS = "1.2.840.10008.5.1.4.1.1.7"
MAMMOGRAM_TAGS = {"SOPClassUID": DIGITAL_MAMMOGRAPHY, "PresentationIntentType": "FOR PRESENTATION"}


def image(rows: int = 40, cols: int = 30) -> np.ndarray:
    pixels = np.zeros((rows, cols), np.uint16)
    pixels[5:35, 15:] = 4000
    return pixels


def record(path: Path, dataset: str = "rsna", vouched: bool = True) -> ScanRecord:
    return ScanRecord(dataset=dataset, record_id=path.name, image_path=str(path), patient_id="p1", image_id=path.name,
                      label=0, has_annotations=False, mammograms_by_publisher=vouched)


def header_only_object(path: Path, sop_class: str, modality: str) -> Path:
    """A DICOM object without pixel data, such as a structured report or a presentation state."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, meta.MediaStorageSOPInstanceUID, modality
    ds.save_as(str(path), enforce_file_format=True)
    return path


def stripped(write_dicom, path: Path, **tags: object) -> Path:
    """A re-packaged file as RSNA's may be: no Modality, no SOPClassUID in the dataset, a Secondary Capture file
    meta (the conftest writer's)."""
    written = write_dicom(path, image(), bits_stored=12, **tags)
    ds = pydicom.dcmread(written)
    del ds.Modality, ds.SOPClassUID
    ds.save_as(written)
    return written


def outcome(path: Path, options: IngestOptions, **fields) -> QuarantineEntry | tf.train.Example:
    return process_record(record(path, **fields), options)


# ------------------------------------------------------------------------------------------------ refused


def test_headers_that_contradict_a_mammogram_are_quarantined_with_their_reasons(tmp_path, write_dicom, small_options):
    frames = np.vstack([image()] * 3)  # three 40x30 frames
    files = {
        "DICOM Modality is CT, expected MG": write_dicom(tmp_path / "ct.dcm", image(), Modality="CT"),
        "the SOP class is CT Image Storage": write_dicom(tmp_path / "ct-class.dcm", image(), Modality="CT",
                                                         SOPClassUID="1.2.840.10008.5.1.4.1.1.2"),
        "the SOP class is Basic Text SR Storage": header_only_object(
            tmp_path / "sr.dcm", "1.2.840.10008.5.1.4.1.1.88.11", "SR"),
        "the SOP class is Grayscale Softcopy Presentation State Storage": header_only_object(
            tmp_path / "pr.dcm", "1.2.840.10008.5.1.4.1.1.11.1", "MG"),
        "the SOP class is Encapsulated PDF Storage": header_only_object(
            tmp_path / "pdf.dcm", "1.2.840.10008.5.1.4.1.1.104.1", "MG"),
        "not a 2-D mammogram: a multi-frame DICOM of 3 frames": write_dicom(
            tmp_path / "frames.dcm", frames, **MAMMOGRAM_TAGS, Rows=40, NumberOfFrames=3),
        "the SOP class is Breast Tomosynthesis Image Storage": write_dicom(
            tmp_path / "dbt.dcm", image(), SOPClassUID="1.2.840.10008.5.1.4.1.1.13.1.3"),
        "not an image: the DICOM has no pixel data": header_only_object(tmp_path / "empty.dcm", DIGITAL_MAMMOGRAPHY,
                                                                        "MG"),
    }
    for reason, path in files.items():
        for vouched in (True, False):  # a publisher's word never overrides a header that says otherwise
            entry = outcome(path, small_options, vouched=vouched)
            assert isinstance(entry, QuarantineEntry) and entry.status == "quarantined", (path.name, entry)
            assert reason in entry.reason and entry.file == str(path), (path.name, entry.reason)


@pytest.mark.parametrize("tags", [{"PresentationIntentType": "FOR PROCESSING"},
                                  {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1.2.1", "PresentationIntentType": ""}],
                         ids=["intent", "sop-class"])
def test_for_processing_images_are_excluded_where_the_header_says_so(tmp_path, write_dicom, small_options, tags):
    path = write_dicom(tmp_path / "raw.dcm", image(), **{**MAMMOGRAM_TAGS, **tags})
    for dataset, vouched in (("rsna", True), ("folder", False)):
        entry = outcome(path, small_options, dataset=dataset, vouched=vouched)
        assert isinstance(entry, QuarantineEntry) and entry.status == "excluded"
        assert "FOR PROCESSING image" in entry.reason


# ------------------------------------------------------------------------------------------------ accepted, counted


def test_published_datasets_accept_what_is_absent_and_note_it(tmp_path, write_dicom, small_options):
    full = write_dicom(tmp_path / "full.dcm", image(), bits_stored=12, **MAMMOGRAM_TAGS)
    repackaged = stripped(write_dicom, tmp_path / "repackaged.dcm")
    film = write_dicom(tmp_path / "film.dcm", image(), bits_stored=12)  # Secondary Capture, Modality MG
    private = write_dicom(tmp_path / "private.dcm", image(), bits_stored=12, SOPClassUID="1.2.840.113619.4.999")
    expected = {full: (), repackaged: (NO_MODALITY, SECONDARY_CAPTURE), film: (SECONDARY_CAPTURE,),
                private: (UNLISTED_SOP_CLASS,)}
    for path, notes in expected.items():
        result, noted = process_record_noting_header(record(path), small_options)
        assert isinstance(result, tf.train.Example) and noted == notes, (path.name, result)
    # Neither Modality nor any SOP class at all (file meta included).
    ds = pydicom.dcmread(repackaged)
    del ds.file_meta.MediaStorageSOPClassUID
    ds.save_as(tmp_path / "bare.dcm", enforce_file_format=False)
    assert PUBLISHED_MAMMOGRAMS.check(pydicom.dcmread(tmp_path / "bare.dcm"), "bare.dcm") == (NO_MODALITY, NO_SOP_CLASS)


def test_folder_inputs_must_name_a_mammogram_unless_the_setting_relaxes_it(tmp_path, write_dicom, small_options):
    repackaged = stripped(write_dicom, tmp_path / "neg" / "repackaged.dcm")
    entry = outcome(repackaged, small_options, dataset="folder", vouched=False)
    assert isinstance(entry, QuarantineEntry) and entry.status == "quarantined"
    assert "DICOM Modality missing" in entry.reason
    assert "ingest.folder_requires_mammogram_header=false accepts it" in entry.reason
    relaxed = IngestOptions(height=64, width=48, folder_requires_mammogram_header=False)
    result, notes = process_record_noting_header(record(repackaged, dataset="folder", vouched=False), relaxed)
    assert isinstance(result, tf.train.Example) and notes == (NO_MODALITY, SECONDARY_CAPTURE)
    # A digitised film (Secondary Capture, Modality MG, as the real CBIS-DDSM files) names a mammogram: accepted.
    film = write_dicom(tmp_path / "neg" / "film.dcm", image(), bits_stored=12)
    result, notes = process_record_noting_header(record(film, dataset="folder", vouched=False), small_options)
    assert isinstance(result, tf.train.Example) and notes == (SECONDARY_CAPTURE,)


# ------------------------------------------------------------------------------------------------ before decoding


def undecodable(write_dicom, path: Path, **tags: object) -> Path:
    """A file whose header says JPEG 2000 but whose pixel data is no codestream: decoding it fails."""
    written = write_dicom(path, image(), bits_stored=12, **tags)
    ds = pydicom.dcmread(written)
    ds.PixelData = encapsulate([b"\x00\x01not a JPEG 2000 codestream" * 4])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.save_as(written)
    return written


def test_the_header_is_checked_before_any_pixel_is_decoded(tmp_path, write_dicom, small_options, monkeypatch):
    broken_mammogram = undecodable(write_dicom, tmp_path / "mg.dcm", **MAMMOGRAM_TAGS)
    broken_ct = undecodable(write_dicom, tmp_path / "ct.dcm", Modality="CT")
    entry = outcome(broken_mammogram, small_options)
    assert isinstance(entry, QuarantineEntry) and "pixel data cannot be decoded" in entry.reason
    # The same undecodable pixel data behind a refused header: the header's reason, not the decoder's.
    entry = outcome(broken_ct, small_options)
    assert isinstance(entry, QuarantineEntry) and "DICOM Modality is CT" in entry.reason

    decoded: list[str] = []
    real_pixel_array = dicom_io.pixel_array
    monkeypatch.setattr(dicom_io, "pixel_array", lambda ds, **kwargs: decoded.append("x") or real_pixel_array(
        ds, **kwargs))
    refused = [write_dicom(tmp_path / "ct2.dcm", image(), Modality="CT"),
               write_dicom(tmp_path / "raw.dcm", image(), **{**MAMMOGRAM_TAGS,
                                                            "PresentationIntentType": "FOR PROCESSING"}),
               stripped(write_dicom, tmp_path / "folder.dcm")]
    for path in refused:
        assert isinstance(outcome(path, small_options, dataset="folder", vouched=False), QuarantineEntry)
    assert decoded == []
    assert isinstance(outcome(write_dicom(tmp_path / "ok.dcm", image(), **MAMMOGRAM_TAGS), small_options),
                      tf.train.Example)
    assert decoded == ["x"]


def test_the_rule_is_callable_on_a_header_read_without_pixels(tmp_path, write_dicom):
    ds = pydicom.dcmread(write_dicom(tmp_path / "ct.dcm", image(), Modality="CT"), stop_before_pixels=True)
    with pytest.raises(BadInputError, match="Modality is CT"):
        MammogramHeaderRule(strict=True).check(ds, "ct.dcm")


# ------------------------------------------------------------------------------------------------ run output


def test_summary_counts_header_notes_per_dataset_and_the_run_output_says_them():
    counts = [(("ingested", "train", "rsna"), 10), (("header:no_modality", "", "rsna"), 6),
              (("header:secondary_capture", "", "rsna"), 6), (("ingested", "train", "vindr"), 4)]
    summary = summarise(counts)
    assert summary["per_dataset"]["rsna"]["header"] == {"no_modality": 6, "secondary_capture": 6}
    assert "header" not in summary["per_dataset"]["vindr"]
    assert describe_header_notes(summary) == [
        "rsna DICOM headers accepted as mammograms: 6 without Modality, 6 Secondary Capture"]


def test_one_reason_for_most_of_a_dataset_is_reported_as_a_likely_rule_mismatch():
    reason = ("BadInputError: not named a mammogram by its header: DICOM Modality missing, and no publisher vouches "
              "for this source (expected Modality MG; ingest.folder_requires_mammogram_header=false accepts it)")
    rows = [{"dataset": "folder", "record": f"neg/{i}.dcm", "file": f"/data/neg/{i}.dcm", "status": "quarantined",
             "reason": reason} for i in range(3)]
    rows.append({"dataset": "rsna", "record": "1/2", "file": "/rsna/train_images/1/2.dcm", "status": "quarantined",
                 "reason": "BadInputError: not a mammogram: DICOM Modality is CT, expected MG"})
    summary = summarise([(("ingested", "train", "folder"), 2), (("quarantined", "", "folder"), 3),
                         (("ingested", "train", "rsna"), 1), (("quarantined", "", "rsna"), 1)])
    warnings = rule_mismatch_warnings(rows, summary)
    assert len(warnings) == 1  # rsna: 1 of 2 is not more than half
    assert warnings[0].startswith("Likely a mismatch between the data and a rule: 3 of the 5 records listed for "
                                  "folder were quarantined for one reason (not named a mammogram by its header")
    assert "the setting that governs it is ingest.folder_requires_mammogram_header" in warnings[0]
    rsna_only = summarise([(("quarantined", "", "rsna"), 1)])
    assert rule_mismatch_warnings(rows, rsna_only)[0].endswith(
        "no setting governs it: check that the source is what the rsna layout expects.")
