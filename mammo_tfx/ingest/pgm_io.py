"""Netpbm greyscale (PGM, P5 binary and P2 ASCII) reader; MIAS ships its images in this format."""
from __future__ import annotations

import numpy as np

from mammo_tfx.ingest.decoded import DecodedImage, check_source_pixels, full_range_affine
from mammo_tfx.ingest.input_files import read_input
from mammo_tfx.ingest.options import DEFAULT_MAX_SOURCE_PIXELS
from mammo_tfx.ingest.records import BadInputError


def _header_tokens(data: bytes, path: str, count: int) -> tuple[list[bytes], int]:
    """The first `count` whitespace-separated header tokens (comments skipped) and where the raster starts."""
    tokens: list[bytes] = []
    position = 0
    while len(tokens) < count:
        while position < len(data) and data[position:position + 1].isspace():
            position += 1
        if position >= len(data):
            raise BadInputError(path, "PGM header ends early")
        if data[position:position + 1] == b"#":
            newline = data.find(b"\n", position)
            position = len(data) if newline < 0 else newline + 1
            continue
        start = position
        while position < len(data) and not data[position:position + 1].isspace():
            position += 1
        tokens.append(data[start:position])
    # Exactly one whitespace byte separates the header from a binary raster.
    return tokens, position + 1


def read_pgm(path: str, max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS) -> DecodedImage:
    """Decode a PGM file; maxval is mapped to 65535. The header's size is checked against max_pixels first."""
    data = read_input(path)
    magic = data[:2]
    if magic not in (b"P5", b"P2"):
        raise BadInputError(path, f"not a greyscale PGM file (magic {magic!r}, expected b'P5' or b'P2')")
    tokens, raster_start = _header_tokens(data, path, 4)
    try:
        width, height, maxval = (int(token) for token in tokens[1:4])
    except ValueError:
        raise BadInputError(path, f"PGM header has non-numeric size/maxval {tokens[1:4]!r}") from None
    if width < 1 or height < 1 or not 1 <= maxval <= 65535:
        raise BadInputError(path, f"PGM header invalid: {width}x{height}, maxval {maxval}")
    check_source_pixels(path, f"PGM width x height {width}x{height}", width * height, max_pixels)
    if magic == b"P5":
        dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")  # 16-bit PGM is big-endian
        expected = width * height * dtype.itemsize
        raster = data[raster_start:raster_start + expected]
        if len(raster) < expected:
            raise BadInputError(path, f"PGM raster truncated: {len(raster)} of {expected} bytes")
        pixels = np.frombuffer(raster, dtype=dtype).reshape(height, width)
        if dtype.byteorder == ">":
            pixels = pixels.astype(np.uint16)
    else:
        try:
            values = np.array(data[raster_start - 1:].split(), dtype=np.int64)
        except ValueError:
            raise BadInputError(path, "ASCII PGM raster has non-numeric values") from None
        if values.size < width * height:
            raise BadInputError(path, f"PGM raster truncated: {values.size} of {width * height} values")
        pixels = values[: width * height].reshape(height, width).astype(np.uint16 if maxval > 255 else np.uint8)
    scale, offset = full_range_affine(1.0 / maxval, 0.0)
    return DecodedImage(pixels=pixels, scale=scale, offset=offset, bits_stored=int(maxval).bit_length())
