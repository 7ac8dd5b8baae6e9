"""Pick the decoder from a file's content (magic bytes), so extensions cannot mislead."""
from __future__ import annotations

import os
from typing import Optional

from mammo_tfx.ingest.decoded import DecodedImage
from mammo_tfx.ingest.dicom_io import read_dicom
from mammo_tfx.ingest.header_rule import MammogramHeaderRule
from mammo_tfx.ingest.input_files import read_input
from mammo_tfx.ingest.options import DEFAULT_MAX_SOURCE_PIXELS, FASTEST_DECODING_PLUGIN
from mammo_tfx.ingest.pgm_io import read_pgm
from mammo_tfx.ingest.png_io import read_png
from mammo_tfx.ingest.records import BadInputError

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff_format(path: str) -> str:
    """"dicom", "pgm" or "png" from the first bytes of the file; BadInputError if it is none of them."""
    head = read_input(path, 132)
    if not head:
        raise BadInputError(path, "file is empty")
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head[:2] in (b"P5", b"P2"):
        return "pgm"
    if head[128:132] == b"DICM":
        return "dicom"
    # DICOM written without the 128-byte preamble is rare but legal; let pydicom judge those by extension.
    if os.path.splitext(path)[1].lower() in (".dcm", ".dicom", ""):
        return "dicom"
    raise BadInputError(path, "unrecognised image format (not DICOM, PGM or PNG)")


def read_image(path: str, decoding_plugin: str = FASTEST_DECODING_PLUGIN,
               max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS,
               header_rule: Optional[MammogramHeaderRule] = None) -> DecodedImage:
    """Decode any supported image file; BadInputError for one whose header promises more than max_pixels. A DICOM
    file is held to `header_rule` (when given) before its pixels are decoded; PNG and PGM carry no such header."""
    image_format = sniff_format(path)
    if image_format == "png":
        return read_png(path, max_pixels)
    if image_format == "pgm":
        return read_pgm(path, max_pixels)
    return read_dicom(path, decoding_plugin, max_pixels, header_rule)
