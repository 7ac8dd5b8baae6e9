"""A minimal JPEG lossless encoder (ITU-T T.81 process 14, predictor 1 = "Selection Value 1") for greyscale frames.

pydicom 3 has no encoder for JPEG Lossless SV1 (transfer syntax 1.2.840.10008.1.2.4.70) and none of the installed
plugins writes it, yet it is one of the two syntaxes the RSNA screening DICOMs use. This writes the baseline form
every decoder reads: one component, one scan, point transform 0, one fixed Huffman table for the 17 difference
categories. Round trips through pylibjpeg-libjpeg are checked in tests/test_ingest_rsna.py.
"""
from __future__ import annotations

import struct

import numpy as np

# Huffman code lengths: categories 0-14 get 4-bit codes, 15 a 5-bit and 16 a 6-bit one (no code is all ones, as
# T.81 requires). Canonical codes follow from BITS (codes per length 1..16) and HUFFVAL (categories in code order).
_BITS = (0, 0, 0, 15, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_HUFFVAL = tuple(range(17))


def _canonical_codes() -> tuple[np.ndarray, np.ndarray]:
    """(code, length) per category, as T.81 Annex C derives them from BITS and HUFFVAL."""
    codes = np.zeros(17, np.uint32)
    lengths = np.zeros(17, np.uint32)
    code, symbol = 0, 0
    for length, count in enumerate(_BITS, start=1):
        for _ in range(count):
            codes[_HUFFVAL[symbol]], lengths[_HUFFVAL[symbol]] = code, length
            code += 1
            symbol += 1
        code <<= 1
    return codes, lengths


_CODES, _CODE_LENGTHS = _canonical_codes()


def _differences(pixels: np.ndarray, precision: int) -> np.ndarray:
    """Prediction differences, modulo 2^16 and centred: predictor 1 (left), the first column predicted from above
    and the first sample from 2^(P-1) (T.81 H.1.2.1)."""
    values = pixels.astype(np.int64)
    prediction = np.empty_like(values)
    prediction[:, 1:] = values[:, :-1]
    prediction[1:, 0] = values[:-1, 0]
    prediction[0, 0] = 1 << (precision - 1)
    return ((values - prediction + 32768) % 65536 - 32768).ravel()


def _entropy_coded(differences: np.ndarray) -> bytes:
    """Huffman code + extra bits of every difference, packed MSB first, padded with ones and 0xFF-stuffed."""
    magnitude = np.abs(differences)
    category = np.where(differences == -32768, 16, np.ceil(np.log2(magnitude + 1)).astype(np.int64))
    # Extra bits: the difference itself when positive, difference - 1 in `category` bits (one's complement) when not;
    # category 16 has none.
    extra_length = np.where(category == 16, 0, category)
    extra = np.where(differences >= 0, differences, differences + (1 << extra_length) - 1) & ((1 << extra_length) - 1)
    lengths = _CODE_LENGTHS[category].astype(np.int64) + extra_length
    words = (_CODES[category].astype(np.int64) << extra_length) | extra
    shifts = np.arange(31, -1, -1, dtype=np.int64)
    bits = ((words[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    keep = shifts[None, :] < lengths[:, None]
    stream = bits[keep]
    stream = np.concatenate([stream, np.ones((-len(stream)) % 8, np.uint8)])
    return np.packbits(stream).tobytes().replace(b"\xff", b"\xff\x00")


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def encode_jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """One JPEG lossless (SOF3, predictor 1, Pt 0) codestream of a 2-D unsigned frame with `precision` bits (2-16)."""
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be a 2-D uint8/uint16 array, got {pixels.dtype} {pixels.shape}")
    if not 2 <= precision <= 16 or int(pixels.max(initial=0)) >= 1 << precision:
        raise ValueError(f"pixel values do not fit precision {precision}")
    rows, columns = pixels.shape
    huffman_table = bytes([0x00]) + bytes(_BITS) + bytes(_HUFFVAL)
    frame_header = struct.pack(">BHHB", precision, rows, columns, 1) + bytes([1, 0x11, 0])
    # One component (id 1, table 0), Ss = predictor 1, Se = 0, Ah/Al = 0 (no point transform).
    scan_header = bytes([1, 1, 0x00, 1, 0, 0x00])
    return (b"\xff\xd8" + _segment(0xFFC4, huffman_table) + _segment(0xFFC3, frame_header)
            + _segment(0xFFDA, scan_header) + _entropy_coded(_differences(pixels, precision)) + b"\xff\xd9")
