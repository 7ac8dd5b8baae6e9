"""CBIS-DDSM ROI rows name two files, a binary ROI mask and a cropped ROI picture, and some rows swap
them. Tell them apart by content: the mask is binary-valued and about the image's size; the crop is
small with many grey levels."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from mammo_tfx.ingest.dicom_io import decode_stored_pixels, read_dataset
from mammo_tfx.ingest.image_io import sniff_format
from mammo_tfx.ingest.pgm_io import read_pgm
from mammo_tfx.ingest.png_io import read_png
from mammo_tfx.ingest.records import BadInputError


def is_binary_valued(pixels: np.ndarray) -> bool:
    """True if the array holds at most two values, one of them 0."""
    top = pixels.max()
    return not np.any((pixels != 0) & (pixels != top))


def _candidate_shape(path: str) -> tuple[int, int]:
    """Size of a candidate file without decoding its pixels where the format allows."""
    if sniff_format(path) == "dicom":
        ds = read_dataset(path)
        return int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    return _decode(path, "").shape  # PNG/PGM masks are small to decode


def _decode(path: str, decoding_plugin: str) -> np.ndarray:
    image_format = sniff_format(path)
    if image_format == "png":
        return read_png(path).pixels
    if image_format == "pgm":
        return read_pgm(path).pixels
    return decode_stored_pixels(read_dataset(path), path, decoding_plugin)


def load_roi_mask(files: Sequence[str], image_shape: tuple[int, int],
                  decoding_plugin: str = "pylibjpeg") -> tuple[np.ndarray, bool]:
    """The ROI mask among `files` as a boolean array of image_shape, and whether it had to be resized.

    Files are tried closest-in-size first, so normally only the mask itself is decoded. BadInputError
    (naming the first file, and every file's problem in the reason) when none is a usable mask.
    """
    if not files:
        raise BadInputError("<no file>", "ROI row names no mask file")
    problems: list[str] = []
    sized: list[tuple[int, str, tuple[int, int]]] = []
    image_area = image_shape[0] * image_shape[1]
    for path in dict.fromkeys(files):  # de-duplicated, order kept
        try:
            shape = _candidate_shape(path)
        except BadInputError as error:
            problems.append(f"{path}: {error.reason}")
            continue
        sized.append((abs(shape[0] * shape[1] - image_area), path, shape))
    for _, path, shape in sorted(sized):
        try:
            pixels = _decode(path, decoding_plugin)
        except BadInputError as error:
            problems.append(f"{path}: {error.reason}")
            continue
        if not is_binary_valued(pixels):
            problems.append(f"{path}: {pixels.shape[0]}x{pixels.shape[1]} with many grey levels "
                            "(a cropped ROI, not a mask)")
            continue
        foreground = pixels != 0
        if foreground.shape == tuple(image_shape):
            return foreground, False
        # Masks a few pixels off the image size exist in CBIS-DDSM; stretch them onto the image.
        resized = Image.fromarray(foreground).resize((image_shape[1], image_shape[0]), Image.Resampling.NEAREST)
        return np.asarray(resized, dtype=bool), True
    raise BadInputError(files[0], "no usable binary ROI mask among the ROI row's files: " + "; ".join(problems))
