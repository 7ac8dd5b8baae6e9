"""PGM and PNG readers and content-based format sniffing."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mammo_tfx.ingest.decoded import to_uint16
from mammo_tfx.ingest.image_io import read_image, sniff_format
from mammo_tfx.ingest.records import BadInputError


def full16(path) -> np.ndarray:
    decoded = read_image(str(path))
    return to_uint16(decoded.pixels, decoded.scale, decoded.offset)


def test_binary_pgm_with_comment(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "mdb001.pgm"
    path.write_bytes(b"P5\n# scanned\n4 3\n255\n" + pixels.tobytes())
    np.testing.assert_array_equal(full16(path), pixels.astype(np.uint32) * 257)
    assert read_image(str(path)).bits_stored == 8


def test_16bit_binary_pgm_is_big_endian(tmp_path):
    pixels = np.array([[0, 256, 1023]], dtype=np.uint16)
    path = tmp_path / "deep.pgm"
    path.write_bytes(b"P5 3 1 1023\n" + pixels.astype(">u2").tobytes())
    np.testing.assert_allclose(full16(path), pixels * (65535 / 1023), atol=1)
    assert read_image(str(path)).bits_stored == 10


def test_ascii_pgm(tmp_path):
    path = tmp_path / "a.pgm"
    path.write_text("P2\n2 2\n15\n0 5\n10 15\n")
    np.testing.assert_array_equal(full16(path), [[0, 21845], [43690, 65535]])


def test_truncated_pgm_names_the_file(tmp_path):
    path = tmp_path / "mdb002.pgm"
    path.write_bytes(b"P5\n1024 1024\n255\n" + bytes(100))
    with pytest.raises(BadInputError, match="truncated") as caught:
        read_image(str(path))
    assert caught.value.file == str(path)


def test_pgm_with_bad_header(tmp_path):
    path = tmp_path / "bad.pgm"
    path.write_bytes(b"P5\nwide 3\n255\n" + bytes(12))
    with pytest.raises(BadInputError, match="non-numeric"):
        read_image(str(path))


@pytest.mark.parametrize("dtype,factor", [(np.uint8, 257), (np.uint16, 1)])
def test_png_8_and_16_bit(tmp_path, dtype, factor):
    pixels = (np.arange(20).reshape(4, 5) * 13).astype(dtype)
    path = tmp_path / "img.png"
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(full16(path), pixels.astype(np.uint32) * factor)


def test_grey_rgb_png_accepted_colour_rejected(tmp_path):
    grey = np.repeat((np.arange(20, dtype=np.uint8).reshape(4, 5) * 10)[..., None], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(full16(tmp_path / "grey.png"), grey[..., 0].astype(np.uint32) * 257)
    colour = grey.copy()
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(BadInputError, match="colour PNG"):
        read_image(str(tmp_path / "colour.png"))


def test_truncated_png_names_the_file(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(BadInputError, match="PNG cannot be decoded") as caught:
        read_image(str(path))
    assert caught.value.file == str(path)


def test_sniffing_ignores_misleading_extensions(tmp_path):
    png = tmp_path / "actually_png.dcm"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(png, format="PNG")
    assert sniff_format(str(png)) == "png"
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(BadInputError, match="unrecognised image format"):
        sniff_format(str(text))
    with pytest.raises(BadInputError, match="file not found"):
        sniff_format(str(tmp_path / "missing.pgm"))
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        sniff_format(str(empty))
