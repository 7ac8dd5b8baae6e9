"""Input limits of ingestion: pixel counts checked on headers before decoding, native DICOM pixel data length,
transfer syntaxes without a decoder, and the per-record wall-time limit."""
from __future__ import annotations

import struct
import threading
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless

from mammo_tfx.ingest.dicom_io import read_dicom
from mammo_tfx.ingest.image_io import read_image
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest import process
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.real_samples import real_cases_dir
from mammo_tfx.ingest.records import BadInputError, QuarantineEntry, ScanRecord
from mammo_tfx.ingest.roi_files import load_roi_mask
from tests.conftest import rewrite_dicom_tags

LIMIT_REASON = "ingest.max_source_pixels"


def bad_input_reason(read, *args) -> str:
    with pytest.raises(BadInputError) as caught:
        read(*args)
    assert caught.value.file == str(args[0])
    return caught.value.reason


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """An 8-bit greyscale PNG that promises width x height but holds a few bytes of image data."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def test_dicom_header_over_the_pixel_limit_is_rejected_before_decoding(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((20, 10), np.uint16))
    assert read_dicom(str(path), max_pixels=200).shape == (20, 10)
    assert LIMIT_REASON in bad_input_reason(read_dicom, str(path), "pylibjpeg", 199)
    # An absurd header over a few bytes of pixel data: 4 GPixel would be 8 GB if anything allocated it.
    rewrite_dicom_tags(path, Rows=65535, Columns=65535)
    reason = bad_input_reason(read_dicom, str(path))
    assert "65535x65535x1x1" in reason and LIMIT_REASON in reason


def test_frames_and_samples_count_towards_the_limit(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((10, 10), np.uint16), NumberOfFrames=3)
    assert "10x10x3x1" in bad_input_reason(read_dicom, str(path), "pylibjpeg", 299)
    assert "multi-frame" in bad_input_reason(read_dicom, str(path), "pylibjpeg", 300)


@pytest.mark.parametrize("delta, word", [(-2, "truncated"), (4, "corrupt")])
def test_native_pixel_data_must_match_the_header(tmp_path, write_dicom, delta, word):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((6, 5), np.uint16))
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData + b"\0" * delta if delta > 0 else ds.PixelData[:delta]
    ds.save_as(path)
    reason = bad_input_reason(read_dicom, str(path))
    assert f"PixelData holds {60 + delta} bytes but the header needs 60" in reason and word in reason


def test_pad_byte_to_an_even_length_is_accepted(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "a.dcm", np.arange(15, dtype=np.uint8).reshape(3, 5))
    assert len(pydicom.dcmread(path).PixelData) == 16  # 15 bytes of pixels + the pad byte
    np.testing.assert_array_equal(read_dicom(str(path)).pixels, np.arange(15).reshape(3, 5))


def test_transfer_syntax_without_an_installed_decoder_is_named(tmp_path, write_dicom, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((6, 5), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds.save_as(path)
    # This stack installs a plugin for every syntax pydicom decodes; make JPEG-LS's look as on a machine without
    # pylibjpeg-libjpeg, pyjpegls and gdcm (pydicom's own registry, as its import-time plugin check leaves it).
    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg-libjpeg",)})
    reason = bad_input_reason(read_dicom, str(path))
    assert f"no installed decoder plugin handles transfer syntax {JPEGLSLossless} (JPEG-LS Lossless " in reason
    assert "pylibjpeg - requires pylibjpeg-libjpeg" in reason


def test_unknown_transfer_syntax_is_named(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((6, 5), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4"
    ds.save_as(path)
    assert "1.2.3.4" in bad_input_reason(read_dicom, str(path))


def test_png_limit_is_ours_not_pillows(tmp_path):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 10), np.uint8)).save(small)
    assert read_image(str(small), max_pixels=200).shape == (20, 10)
    assert LIMIT_REASON in bad_input_reason(read_image, str(small), "", 199)
    # 20000x10000 = 200 MP: Pillow's own check would raise its DecompressionBombError; ours names the limit, and a
    # limit raised above Pillow's lets such a header through to the (here too short) image data.
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(20000, 10000))
    assert "20000x10000" in bad_input_reason(read_image, str(huge)) and LIMIT_REASON in bad_input_reason(
        read_image, str(huge))
    assert "truncated or corrupt" in bad_input_reason(read_image, str(huge), "", 200_000_000)


def test_pgm_header_over_the_limit_is_rejected_before_the_raster(tmp_path):
    path = tmp_path / "a.pgm"
    path.write_bytes(b"P5\n60000 60000\n255\n" + b"\0" * 16)
    reason = bad_input_reason(read_image, str(path))
    assert "60000x60000" in reason and LIMIT_REASON in reason


def test_oversize_roi_mask_is_one_of_the_row_problems(tmp_path, write_dicom):
    mask = write_dicom(tmp_path / "mask.dcm", np.zeros((8, 8), np.uint8))
    rewrite_dicom_tags(mask, Rows=40000, Columns=40000)
    with pytest.raises(BadInputError, match=f"mask.dcm: .*40000x40000x1x1.*{LIMIT_REASON}"):
        load_roi_mask([str(mask)], (8, 8))


def record_of(path) -> ScanRecord:
    return ScanRecord(dataset="folder", record_id=path.name, image_path=str(path), patient_id="p", image_id=path.name,
                      label=0, has_annotations=False)


def test_a_record_over_the_wall_time_limit_is_quarantined_and_the_next_goes_on(tmp_path, write_dicom, monkeypatch):
    scan = record_of(min(real_cases_dir().rglob("*.dcm")))
    # The decode of this record waits until the test lets it go, so it is still running when the limit is reached,
    # however fast the machine: the caller's answer cannot have waited for it.
    release, decode_finished = threading.Event(), threading.Event()

    def held_read_image(*args, **kwargs):
        release.wait()
        try:
            return read_image(*args, **kwargs)
        finally:
            decode_finished.set()

    monkeypatch.setattr(process, "read_image", held_read_image)
    # Released by the test once answered, or after 30 s, so a caller that waits for the decode fails, not hangs.
    safety = threading.Timer(30, release.set)
    safety.start()
    try:
        result = process_record(scan, IngestOptions(height=64, width=48, record_timeout_s=0.05))
        assert not decode_finished.is_set()  # answered while the decode was still held
    finally:
        release.set()
        safety.cancel()
    assert isinstance(result, QuarantineEntry)
    assert result.file == scan.image_path and result.status == "quarantined"
    assert "RecordTimeout: not done within 0.05 s (ingest.record_timeout_s)" in result.reason
    assert decode_finished.wait(60)  # the abandoned decode ends on its own thread; its result is dropped
    monkeypatch.undo()
    # The same scan within a generous limit becomes an example: the limit, not the input, quarantined it.
    assert not isinstance(process_record(scan, IngestOptions(height=64, width=48, record_timeout_s=120)),
                          QuarantineEntry)
    tiny = write_dicom(tmp_path / "tiny.dcm", np.zeros((6, 5), np.uint16))
    assert not isinstance(process_record(record_of(tiny), IngestOptions(height=64, width=48)), QuarantineEntry)
