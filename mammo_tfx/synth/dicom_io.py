"""Write phantom pixels as DICOM files the way the public datasets ship them."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"  # what CBIS-DDSM's converted films use
DIGITAL_MAMMOGRAPHY_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"  # "For Presentation" (INbreast)


@dataclasses.dataclass(frozen=True)
class DicomIdentity:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str


def build_dicom(
    pixels: np.ndarray | None, bits_stored: int, identity: DicomIdentity, tags: Mapping[str, object]
) -> Dataset:
    """A DICOM dataset holding ``pixels`` (uint8 or uint16, MONOCHROME2), or no pixel data when None.

    ``tags`` maps pydicom keywords (PatientID, Laterality, WindowCenter ...) to values.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = identity.sop_class_uid
    meta.MediaStorageSOPInstanceUID = identity.sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = identity.sop_class_uid
    ds.SOPInstanceUID = identity.sop_instance_uid
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.SeriesInstanceUID = identity.series_instance_uid
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    if pixels is None:
        return ds
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be a 2-D uint8/uint16 array, got {pixels.dtype} {pixels.shape}")
    bits_allocated = pixels.dtype.itemsize * 8
    if not 1 <= bits_stored <= bits_allocated:
        raise ValueError(f"bits_stored {bits_stored} does not fit {bits_allocated}-bit pixels")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    return ds


def save_dicom(ds: Dataset, path: str | os.PathLike, rle: bool = False) -> None:
    """Save ``ds`` as a DICOM file (parents created); RLE Lossless-compressed when ``rle``."""
    if rle:
        # The Rust plugin is ~100x faster than pydicom's pure-Python RLE encoder; both give valid RLE.
        plugin = "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder.available_plugins else ""
        # Keep the seed-derived SOP Instance UID: pydicom would otherwise mint a random one.
        ds.compress(RLELossless, encoding_plugin=plugin, generate_instance_uid=False)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
