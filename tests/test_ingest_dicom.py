"""DICOM decoding: bit depths, MONOCHROME1, windowing, VOI LUT, compressed syntaxes, bad files; the population
values (age band, device) taken from the header."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import tensorflow as tf
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from mammo_tfx.ingest.decoded import to_uint16
from mammo_tfx.ingest.dicom_io import decoding_plugin_for, read_dicom
from mammo_tfx.ingest.image_io import read_image
from mammo_tfx.ingest.options import FASTEST_DECODING_PLUGIN
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import BadInputError, ScanRecord


def full16(path, plugin="pylibjpeg"):
    decoded = read_dicom(str(path), plugin)
    return to_uint16(decoded.pixels, decoded.scale, decoded.offset), decoded


def scaled_12bit(pixels: np.ndarray) -> np.ndarray:
    """Expected full-range values of 12-bit pixels (float32 arithmetic may differ by 1 from exact rounding)."""
    return pixels.astype(np.float64) * (65535 / 4095)


def ramp(dtype, top: int, shape=(6, 5)) -> np.ndarray:
    return np.linspace(0, top, shape[0] * shape[1]).round().astype(dtype).reshape(shape)


def test_8bit_is_multiplied_by_257(tmp_path, write_dicom):
    pixels = ramp(np.uint8, 255)
    image, decoded = full16(write_dicom(tmp_path / "a.dcm", pixels))
    assert decoded.bits_stored == 8
    np.testing.assert_array_equal(image, pixels.astype(np.uint32) * 257)


def test_12bit_is_scaled_to_full_range(tmp_path, write_dicom):
    pixels = ramp(np.uint16, 4095)
    image, decoded = full16(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12))
    assert decoded.bits_stored == 12
    np.testing.assert_allclose(image, scaled_12bit(pixels), atol=1)
    assert image.max() == 65535 and image.min() == 0


def test_16bit_is_unchanged(tmp_path, write_dicom):
    pixels = ramp(np.uint16, 65535)
    image, _ = full16(write_dicom(tmp_path / "a.dcm", pixels))
    np.testing.assert_array_equal(image, pixels)


def test_monochrome1_is_inverted(tmp_path, write_dicom):
    pixels = ramp(np.uint16, 4095)
    image, _ = full16(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_allclose(image, 65535 - scaled_12bit(pixels), atol=1)


def test_rescale_slope_intercept_keeps_full_range(tmp_path, write_dicom):
    pixels = ramp(np.uint16, 4095)
    image, _ = full16(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12, RescaleSlope=2, RescaleIntercept=-100))
    np.testing.assert_allclose(image, scaled_12bit(pixels), atol=1)


def test_linear_window_clips_and_stretches(tmp_path, write_dicom):
    pixels = np.array([[0, 1000, 1500, 2000, 4095]], dtype=np.uint16)
    image, _ = full16(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12, WindowCenter=1500, WindowWidth=1001))
    # Window [1000, 2000] (centre 1500, width 1001): below -> 0, above -> 65535, centre -> about mid-grey.
    assert image[0, 0] == 0 and image[0, 1] <= 70 and image[0, 4] == 65535 and image[0, 3] >= 65465
    assert abs(int(image[0, 2]) - 32768) < 100


def test_window_follows_rescale(tmp_path, write_dicom):
    pixels = np.array([[0, 1000, 2000]], dtype=np.uint16)
    # Modality value = stored - 1000, window centred on modality 0 = stored 1000.
    image, _ = full16(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12, RescaleIntercept=-1000,
                                  WindowCenter=0, WindowWidth=100, VOILUTFunction="LINEAR_EXACT"))
    assert image[0, 0] == 0 and image[0, 2] == 65535 and abs(int(image[0, 1]) - 32768) < 2


def test_voi_lut_sequence_wins_over_window(tmp_path, write_dicom):
    pixels = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.LUTData = [65535, 0, 65535, 0]  # a deliberately non-monotonic LUT that only a real LUT produces
    item["LUTData"].VR = "US"
    path = write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12, VOILUTSequence=Sequence([item]),
                       WindowCenter=2, WindowWidth=4)
    image, _ = full16(path)
    np.testing.assert_array_equal(image, [[65535, 0, 65535, 0]])


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_syntaxes_decode_losslessly(tmp_path, write_dicom, syntax):
    pixels = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 5) % 4096  # J2K needs >= 64 px
    path = write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.compress(syntax)
    ds.save_as(path)
    # The default (the fastest plugin for the syntax), a preferred plugin and pydicom's own choice: same pixels.
    for plugin in (FASTEST_DECODING_PLUGIN, "pylibjpeg", ""):
        image, _ = full16(path, plugin)
        np.testing.assert_allclose(image, scaled_12bit(pixels), atol=1)


def test_the_default_plugin_is_the_fastest_installed_for_the_syntax():
    # docs/benchmarks.md, "Decode cost per transfer syntax": pyjpegls decodes JPEG-LS ~3.5x as fast as pylibjpeg;
    # pylibjpeg is the fastest for RLE (pydicom's own) and JPEG 2000 (Pillow).
    chosen = {syntax: decoding_plugin_for(get_decoder(syntax))
              for syntax in (JPEGLSLossless, RLELossless, JPEG2000Lossless, ExplicitVRLittleEndian)}
    assert chosen == {JPEGLSLossless: "pyjpegls", RLELossless: "pylibjpeg", JPEG2000Lossless: "pylibjpeg",
                      ExplicitVRLittleEndian: ""}
    # A named plugin is honoured where it decodes the syntax; elsewhere pydicom chooses.
    assert decoding_plugin_for(get_decoder(JPEG2000Lossless), "pillow") == "pillow"
    assert decoding_plugin_for(get_decoder(RLELossless), "pillow") == ""


def test_tags_are_read(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "a.dcm", ramp(np.uint8, 255), ImageLaterality="R", ViewPosition="MLO",
                       PixelSpacing=[0.07, 0.08])
    decoded = read_dicom(str(path))
    assert (decoded.laterality, decoded.view, decoded.patient_id) == ("R", "MLO", "TEST-PATIENT")
    assert decoded.pixel_spacing_mm == pytest.approx((0.07, 0.08))


def test_dicom_without_pixel_data_names_the_file(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "nopix.dcm", ramp(np.uint8, 255))
    ds = pydicom.dcmread(path)
    for keyword in ("PixelData", "Rows", "Columns"):  # like a structured report: no image module at all
        delattr(ds, keyword)
    ds.save_as(path)
    with pytest.raises(BadInputError, match="no pixel data") as caught:
        read_image(str(path))
    assert caught.value.file == str(path)


@pytest.mark.parametrize("compress", [None, RLELossless])
def test_truncated_dicom_names_the_file(tmp_path, write_dicom, compress):
    noise = np.random.default_rng(0).integers(0, 4096, (40, 30), dtype=np.uint16)  # incompressible
    path = write_dicom(tmp_path / "cut.dcm", noise, bits_stored=12)
    if compress:
        ds = pydicom.dcmread(path)
        ds.compress(compress)
        ds.save_as(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # cut inside the pixel data
    with pytest.raises(BadInputError) as caught:
        read_image(str(path))
    assert caught.value.file == str(path)
    assert "truncated or corrupt" in caught.value.reason


def test_colour_dicom_is_rejected(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "rgb.dcm", ramp(np.uint8, 255), photometric="RGB")
    with pytest.raises(BadInputError, match="not a greyscale image"):
        read_image(str(path))


def test_non_dicom_with_dcm_extension(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is a text file, not an image")
    with pytest.raises(BadInputError, match="not a readable DICOM") as caught:
        read_image(str(path))
    assert caught.value.file == str(path)


HOLOGIC_TAGS = {"PatientAge": "067Y", "Manufacturer": "HOLOGIC, Inc.", "ManufacturerModelName": "Selenia Dimensions"}


def _population_of(path, small_options, **record_fields) -> dict[str, bytes]:
    record = ScanRecord(dataset="folder", record_id="rec-1", image_path=str(path), patient_id="p1", image_id="i1",
                        label=0, **record_fields)
    example = process_record(record, small_options)
    assert isinstance(example, tf.train.Example), example
    features = example.features.feature
    return {key: features[key].bytes_list.value[0] for key in ("age_group", "site", "device", "implant")}


def test_header_population_tags_are_read(tmp_path, write_dicom):
    decoded = read_dicom(str(write_dicom(tmp_path / "a.dcm", ramp(np.uint16, 4095), bits_stored=12,
                                         **HOLOGIC_TAGS)))
    assert (decoded.age, decoded.manufacturer, decoded.model) == ("067Y", "HOLOGIC, Inc.", "Selenia Dimensions")
    bare = read_dicom(str(write_dicom(tmp_path / "b.dcm", ramp(np.uint16, 4095), bits_stored=12, PatientAge="")))
    assert (bare.age, bare.manufacturer, bare.model) == (None, None, None)


@pytest.mark.parametrize("tags, age_group, device", [
    (HOLOGIC_TAGS, b"60-69", b"HOLOGIC, Inc. Selenia Dimensions"),
    ({"PatientAge": "049Y", "Manufacturer": "GE MEDICAL SYSTEMS"}, b"<50", b"GE MEDICAL SYSTEMS"),
    ({"PatientAge": "850M", "ManufacturerModelName": "  Mammomat   Inspiration "}, b"70+", b"Mammomat Inspiration"),
    ({"PatientAge": "0xxY"}, b"unknown", b"unknown"),  # an unparsable age is unknown, not an error
    ({}, b"unknown", b"unknown"),
])
def test_header_age_becomes_a_band_and_manufacturer_the_device(tmp_path, write_dicom, small_options, tags, age_group,
                                                                device):
    path = write_dicom(tmp_path / "a.dcm", ramp(np.uint16, 4095, (40, 30)), bits_stored=12, **tags)
    population = _population_of(path, small_options)
    assert (population["age_group"], population["device"]) == (age_group, device)
    assert (population["site"], population["implant"]) == (b"unknown", b"unknown")  # no header tag for these


def test_the_exact_age_never_reaches_the_example(tmp_path, write_dicom, small_options):
    path = write_dicom(tmp_path / "a.dcm", ramp(np.uint16, 4095, (40, 30)), bits_stored=12, PatientAge="067Y")
    record = ScanRecord(dataset="folder", record_id="rec-1", image_path=str(path), patient_id="p1", image_id="i1",
                        label=0)
    blob = process_record(record, small_options).SerializeToString()
    assert b"067" not in blob and b"67Y" not in blob
    assert b"60-69" in blob


def test_record_values_win_over_the_header(tmp_path, write_dicom, small_options):
    path = write_dicom(tmp_path / "a.dcm", ramp(np.uint16, 4095, (40, 30)), bits_stored=12, **HOLOGIC_TAGS)
    population = _population_of(path, small_options, age_group="<50", device="29", site="2", implant="no")
    assert population == {"age_group": b"<50", "site": b"2", "device": b"29", "implant": b"no"}
    # Only the unknown one is taken from the header.
    population = _population_of(path, small_options, device="29")
    assert (population["age_group"], population["device"]) == (b"60-69", b"29")
