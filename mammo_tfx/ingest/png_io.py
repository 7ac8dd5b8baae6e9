"""PNG reading (8- or 16-bit greyscale) for the folder layout."""
from __future__ import annotations

import numpy as np
from PIL import UnidentifiedImageError
from PIL.PngImagePlugin import PngImageFile

from mammo_tfx.ingest.decoded import DecodedImage, check_source_pixels, full_range_affine
from mammo_tfx.ingest.input_files import open_input
from mammo_tfx.ingest.options import DEFAULT_MAX_SOURCE_PIXELS
from mammo_tfx.ingest.records import BadInputError


def read_png(path: str, max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS) -> DecodedImage:
    """Decode a greyscale PNG; 8-bit is mapped with x257, 16-bit as is. Colour PNGs must be grey in fact.

    The size limit is ingest.max_source_pixels, checked on the IHDR before decoding. The PNG plugin is opened
    directly because Image.open would apply Pillow's own decompression-bomb limit (a warning above 89 MP, an error
    above 179 MP) instead of the configured one."""
    try:
        with open_input(path) as handle, PngImageFile(handle) as image:
            width, height = image.size
            check_source_pixels(path, f"PNG IHDR width x height {width}x{height}", width * height, max_pixels)
            image.load()
            mode = image.mode
            pixels = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadInputError(path, f"PNG cannot be decoded, truncated or corrupt ({type(error).__name__}: {error})") from None
    if pixels.ndim == 3:
        # Some exporters write grey pictures as RGB(A); accept them only if the colour channels agree.
        colour = pixels[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise BadInputError(path, f"colour PNG (mode {mode}) is not a greyscale mammogram")
        pixels = colour[..., 0]
    if pixels.dtype == np.bool_:
        raise BadInputError(path, "1-bit PNG is not a greyscale mammogram")
    if pixels.dtype == np.uint8:
        bits = 8
    elif pixels.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")) or (
            pixels.dtype == np.int32 and pixels.size and 0 <= pixels.min() and pixels.max() <= 65535):
        bits = 16  # Pillow opens some 16-bit PNGs as 32-bit mode "I"
        pixels = pixels.astype(np.uint16, copy=False)
    else:
        raise BadInputError(path, f"unsupported PNG pixel type {pixels.dtype} (mode {mode})")
    scale, offset = full_range_affine(1.0 / (2 ** bits - 1), 0.0)
    return DecodedImage(pixels=pixels, scale=scale, offset=offset, bits_stored=bits)
