"""CBIS-DDSM ROI rows name two files, a binary ROI mask and a cropped ROI picture, and some rows swap
them. Tell them apart by content: the mask is binary-valued and about the image's size; the crop is
small with many grey levels."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image

from mammo_tfx.ingest.dicom_io import decode_stored_pixels, read_dataset
from mammo_tfx.ingest.image_io import sniff_format
from mammo_tfx.ingest.options import DEFAULT_MAX_SOURCE_PIXELS, FASTEST_DECODING_PLUGIN
from mammo_tfx.ingest.pgm_io import read_pgm
from mammo_tfx.ingest.png_io import read_png
from mammo_tfx.ingest.records import BadInputError


def is_binary_valued(pixels: np.ndarray) -> bool:
    """True if the array holds at most two values, one of them 0."""
    top = pixels.max()
    return not np.any((pixels != 0) & (pixels != top))


class _Candidate:
    """One file of an ROI row, opened once: its size is known before its pixels are decoded."""

    def __init__(self, path: str, decoding_plugin: str, max_pixels: int) -> None:
        self.path = path
        self._decoding_plugin = decoding_plugin
        self._max_pixels = max_pixels
        self._dataset = None
        self._pixels: Optional[np.ndarray] = None
        image_format = sniff_format(path)
        if image_format == "dicom":
            self._dataset = read_dataset(path)  # the header gives the size; pixels stay encoded for now
            self.shape = (int(self._dataset.get("Rows", 0)), int(self._dataset.get("Columns", 0)))
        else:  # PNG/PGM masks are cheap to decode outright
            reader = read_png if image_format == "png" else read_pgm
            self._pixels = reader(path, max_pixels).pixels
            self.shape = self._pixels.shape

    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = decode_stored_pixels(self._dataset, self.path, self._decoding_plugin, self._max_pixels)
        return self._pixels


def load_roi_mask(files: Sequence[str], image_shape: tuple[int, int], decoding_plugin: str = FASTEST_DECODING_PLUGIN,
                  max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS) -> tuple[np.ndarray, bool]:
    """The ROI mask among `files` as a boolean array of image_shape, and whether it had to be resized.

    Files are tried closest-in-size first, so normally only the mask itself is decoded. BadInputError
    (naming the first file, and every file's problem in the reason) when none is a usable mask. A file whose
    header promises more than max_pixels is one of those problems, found before it is decoded.
    """
    if not files:
        raise BadInputError("<no file>", "ROI row names no mask file")
    problems: list[str] = []
    candidates: list[_Candidate] = []
    for path in dict.fromkeys(files):  # de-duplicated, order kept
        try:
            candidates.append(_Candidate(path, decoding_plugin, max_pixels))
        except BadInputError as error:
            problems.append(f"{path}: {error.reason}")
    image_area = image_shape[0] * image_shape[1]
    candidates.sort(key=lambda candidate: abs(candidate.shape[0] * candidate.shape[1] - image_area))
    for candidate in candidates:
        path = candidate.path
        try:
            pixels = candidate.pixels()
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
