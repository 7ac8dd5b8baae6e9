"""DICOM decoding: the mammogram header rule, then pixels via pydicom (the fastest installed plugin per transfer
syntax), modality LUT, VOI LUT/windowing, MONOCHROME1."""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Optional

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import JPEGLSLossless, JPEGLSNearLossless

from mammo_tfx.ingest.decoded import DecodedImage, check_source_pixels, full_range_affine
from mammo_tfx.ingest.header_rule import MammogramHeaderRule
from mammo_tfx.ingest.identity import dicom_laterality, dicom_view
from mammo_tfx.ingest.input_files import open_input
from mammo_tfx.ingest.options import DEFAULT_MAX_SOURCE_PIXELS, FASTEST_DECODING_PLUGIN
from mammo_tfx.ingest.records import BadInputError


def read_dataset(path: str) -> Dataset:
    """Parse a DICOM file, local or in a bucket (pixel data kept encoded). Raises BadInputError for anything
    unreadable."""
    try:
        with open_input(path) as handle, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(handle)
    except BadInputError:
        raise
    except Exception as error:  # pydicom raises many types for corrupt files
        raise BadInputError(path, f"not a readable DICOM file ({type(error).__name__}: {error})") from None
    # pydicom only warns when the file ends inside a sequence or the encapsulated pixel data, and then
    # drops the unfinished elements (often the whole dataset); that is a truncated file.
    for warning in caught:
        if "end of file" in str(warning.message).lower():
            raise BadInputError(path, f"file truncated or corrupt ({warning.message})")
    return ds


def decode_stored_pixels(ds: Dataset, path: str, decoding_plugin: str = FASTEST_DECODING_PLUGIN,
                         max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS) -> np.ndarray:
    """The stored pixel values of a single-frame greyscale DICOM as a 2-D array.

    The header is checked before pydicom allocates the pixel buffer: the pixel count against max_pixels, the
    length of native pixel data against the header, and that a decoder plugin exists for a compressed syntax."""
    if "PixelData" not in ds:
        if "Rows" in ds and "Columns" in ds:
            # pydicom silently drops a pixel data element cut short by the end of the file.
            raise BadInputError(path, f"PixelData missing although the header describes a {ds.Rows}x{ds.Columns} "
                                      "image: file truncated or corrupt")
        raise BadInputError(path, "DICOM has no pixel data (PixelData element missing: not an image)")
    rows, columns = _header_int(ds, path, "Rows"), _header_int(ds, path, "Columns")
    frames = _header_int(ds, path, "NumberOfFrames", 1) or 1
    samples = _header_int(ds, path, "SamplesPerPixel", 1) or 1
    check_source_pixels(path, f"Rows x Columns x frames x samples {rows}x{columns}x{frames}x{samples}",
                        rows * columns * frames * samples, max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise BadInputError(path, f"not a greyscale image (PhotometricInterpretation {photometric or 'missing'})")
    if frames != 1:
        raise BadInputError(path, f"multi-frame DICOM ({frames} frames) is not a 2-D mammogram")
    decoder = _decoder(ds, path)
    if decoder.is_native:
        _check_native_length(ds, path, rows * columns * samples * _header_int(ds, path, "BitsAllocated"))
    plugin = decoding_plugin_for(decoder, decoding_plugin)
    try:
        pixels = pixel_array(ds, decoding_plugin=plugin)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # also PanicException, a BaseException, when a Rust decoder panics on bad data
        raise BadInputError(path, f"pixel data cannot be decoded, file truncated or corrupt "
                                  f"({type(error).__name__}: {error})") from None
    if pixels.ndim != 2:
        raise BadInputError(path, f"expected a 2-D greyscale image, decoded shape {pixels.shape}")
    return pixels


def _header_int(ds: Dataset, path: str, keyword: str, default: Optional[int] = None) -> int:
    """A non-negative integer header element; BadInputError when it is missing (without default) or unusable."""
    try:
        value = ds.get(keyword, default)
        number = int(value) if value is not None else None
    except Exception as error:  # a corrupt element fails in pydicom's lazy value conversion
        raise BadInputError(path, f"header element {keyword} is unreadable ({type(error).__name__}: {error})") from None
    if number is None or number < 0:
        raise BadInputError(path, f"header element {keyword} is {'missing' if number is None else number}")
    return number


# Installed decoder plugins in order of speed per transfer syntax, measured on the real CBIS-DDSM DICOMs transcoded
# (docs/benchmarks.md, "Decode cost per transfer syntax"); any other syntax tries pylibjpeg, then pydicom's choice.
_FASTEST_PLUGINS = {JPEGLSLossless: ("pyjpegls", "pylibjpeg"), JPEGLSNearLossless: ("pyjpegls", "pylibjpeg")}
_OTHER_SYNTAXES_PLUGINS = ("pylibjpeg",)


def decoding_plugin_for(decoder: Decoder, preferred: str = FASTEST_DECODING_PLUGIN) -> str:
    """The plugin that decodes with `decoder`: for "auto" the fastest installed one for its transfer syntax,
    otherwise `preferred` when it is installed for the syntax; "" (pydicom's own choice) when none is."""
    candidates = (_FASTEST_PLUGINS.get(decoder.UID, _OTHER_SYNTAXES_PLUGINS)
                  if preferred == FASTEST_DECODING_PLUGIN else (preferred,))
    return next((plugin for plugin in candidates if plugin in decoder.available_plugins), "")


def _decoder(ds: Dataset, path: str) -> Decoder:
    """pydicom's decoder of the file's transfer syntax; for a compressed one, with an installed plugin to run it."""
    file_meta = getattr(ds, "file_meta", None)
    transfer_syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if not transfer_syntax:
        raise BadInputError(path, "file meta has no Transfer Syntax UID: pixel data cannot be interpreted")
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise BadInputError(path, f"unsupported transfer syntax {transfer_syntax}") from None
    if not decoder.is_available:  # a compressed syntax whose decoder plugins are all missing
        raise BadInputError(path, f"no installed decoder plugin handles transfer syntax {transfer_syntax} "
                                  f"({transfer_syntax.name}); plugins: {'; '.join(decoder.missing_dependencies)}")
    return decoder


def _check_native_length(ds: Dataset, path: str, header_bits: int) -> None:
    """Uncompressed pixel data must be as long as the header says, plus at most the pad byte to an even length."""
    expected = (header_bits + 7) // 8
    actual = len(ds.PixelData or b"")
    if actual < expected:
        raise BadInputError(path, f"PixelData holds {actual:,} bytes but the header needs {expected:,} "
                                  "(Rows x Columns x BitsAllocated/8): file truncated or corrupt")
    if actual > expected + expected % 2:
        raise BadInputError(path, f"PixelData holds {actual:,} bytes but the header needs {expected:,} "
                                  "(Rows x Columns x BitsAllocated/8): corrupt header or pixel data")


def read_dicom(path: str, decoding_plugin: str = FASTEST_DECODING_PLUGIN,
               max_pixels: int = DEFAULT_MAX_SOURCE_PIXELS,
               header_rule: Optional[MammogramHeaderRule] = None) -> DecodedImage:
    """Decode a DICOM mammogram; the returned affine maps it to the full 16-bit range for display. With
    `header_rule`, the header is held to it before any pixel is decoded (its notes come back as header_notes)."""
    ds = read_dataset(path)
    header_notes = header_rule.check(ds, path) if header_rule is not None else ()
    stored = decode_stored_pixels(ds, path, decoding_plugin, max_pixels)
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    try:
        pixels, unit_scale, unit_offset = _values_of_interest(ds, stored, bits_stored)
    except Exception as error:
        raise BadInputError(path, f"modality/VOI LUT cannot be applied ({type(error).__name__}: {error})") from None
    invert = str(ds.PhotometricInterpretation).strip() == "MONOCHROME1"
    pixels = _black_padding(ds, stored, pixels, unit_scale, unit_offset, invert)
    scale, offset = full_range_affine(unit_scale, unit_offset, invert=invert)
    return DecodedImage(
        pixels=pixels, scale=scale, offset=offset, bits_stored=bits_stored,
        pixel_spacing_mm=_pixel_spacing(ds), patient_id=_text(ds, "PatientID"),
        laterality=dicom_laterality(ds), view=dicom_view(ds), header_notes=header_notes,
        age=_text(ds, "PatientAge"),
        manufacturer=_text(ds, "Manufacturer"), model=_text(ds, "ManufacturerModelName"))


def _values_of_interest(ds: Dataset, stored: np.ndarray, bits_stored: int) -> tuple[np.ndarray, float, float]:
    """(pixels, a, b): pixels after the non-linear modality/VOI steps; display value in [0, 1] = a*pixels + b.

    Linear steps (rescale slope/intercept without a VOI) are folded into (a, b) instead of touching every
    pixel; non-linear ones (LUTs, windowing) must run at full resolution, before resizing.
    """
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    stored_low = -(2 ** (bits_stored - 1)) if signed else 0
    stored_high = 2 ** (bits_stored - 1) - 1 if signed else 2 ** bits_stored - 1
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    has_modality_lut = "ModalityLUTSequence" in ds

    def modality_values() -> np.ndarray:
        if has_modality_lut:
            return apply_modality_lut(stored, ds).astype(np.float32)
        return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)

    if "VOILUTSequence" in ds:
        voi_max = float(2 ** _lut_bits(ds.VOILUTSequence[0]) - 1)
        # A LUT is indexed by integers; rounding also keeps pydicom from warning about float input.
        lut_input = stored if not has_modality_lut and (slope, intercept) == (1.0, 0.0) else \
            np.rint(modality_values()).astype(np.int32)
        return apply_voi(lut_input, ds, index=0), 1.0 / voi_max, 0.0
    window = _window(ds)
    if window is not None:
        return _apply_window(modality_values(), *window), 1.0, 0.0
    if has_modality_lut:
        return modality_values(), 1.0 / float(2 ** _lut_bits(ds.ModalityLUTSequence[0]) - 1), 0.0
    # Only a linear rescale: map the whole possible modality range onto [0, 1] without touching pixels.
    low, high = sorted((stored_low * slope + intercept, stored_high * slope + intercept))
    return stored, slope / (high - low), (intercept - low) / (high - low)


def _black_padding(ds: Dataset, stored: np.ndarray, pixels: np.ndarray, unit_scale: float, unit_offset: float,
                   invert: bool) -> np.ndarray:
    """Pixels the header marks as padding (PixelPaddingValue, up to PixelPaddingRangeLimit) set to the value shown
    black: padding is no part of the image (PS3.3 C.7.5.1.1.2), whatever grey the windowing would give it (e.g. a
    MONOCHROME1 image padded with 0 would otherwise show a white frame)."""
    padding, limit = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit")
    if padding is None or not unit_scale:
        return pixels
    try:
        low, high = sorted((int(padding), int(padding if limit is None else limit)))
    except (TypeError, ValueError):  # a multi-valued or garbled element: no usable padding rule
        return pixels
    where = (stored >= low) & (stored <= high)
    if not where.any():
        return pixels
    black = ((1.0 if invert else 0.0) - unit_offset) / unit_scale
    if np.issubdtype(pixels.dtype, np.integer) and not (
            float(black).is_integer() and np.iinfo(pixels.dtype).min <= black <= np.iinfo(pixels.dtype).max):
        pixels = pixels.astype(np.float32)
    return np.where(where, np.asarray(black).astype(pixels.dtype), pixels)


def _lut_bits(lut_item: Dataset) -> int:
    """Bits per entry of a LUT (3rd value of LUTDescriptor), clamped to 8..16 as the standard allows."""
    descriptor = lut_item.get("LUTDescriptor")
    bits = int(descriptor[2]) if descriptor is not None and len(descriptor) >= 3 else 16
    return min(max(bits, 8), 16)


def _first_number(value: object) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # multi-valued: first window
        value = value[0] if len(value) else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _window(ds: Dataset) -> Optional[tuple[float, float, str]]:
    """(center, width, function) of the first window, or None when absent or unusable."""
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    # A window the standard forbids cannot be "respected"; the full range is the honest fallback.
    if width <= 0 or (function == "LINEAR" and width < 1):
        return None
    return center, width, function


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Display values in [0, 1] for a VOI window (DICOM PS3.3 C.11.2.1.2 formulas)."""
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        unit = (values - center) / width + 0.5
    else:  # LINEAR, also the standard's default for unknown functions
        unit = (values - (center - 0.5)) / (width - 1.0) + 0.5 if width > 1 else (values > center - 0.5) * 1.0
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def _text(ds: Dataset, keyword: str) -> Optional[str]:
    value = str(ds.get(keyword, "") or "").strip()
    return value or None


def _pixel_spacing(ds: Dataset) -> Optional[tuple[float, float]]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) >= 2:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if row > 0 and col > 0:
                return row, col
    return None
