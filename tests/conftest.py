"""Shared test fixtures: small and generic (tiny DICOM writer, small ingestion options)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from mammo_tfx.ingest.options import IngestOptions

DicomWriter = Callable[..., Path]


def write_dicom_file(path: Path, pixels: np.ndarray, bits_stored: int | None = None,
                     photometric: str = "MONOCHROME2", **tags: object) -> Path:
    """A minimal single-frame greyscale DICOM of `pixels` (uint8/uint16/int16); extra tags by keyword."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TEST-PATIENT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def write_dicom() -> DicomWriter:
    """write_dicom(path, pixels, bits_stored=None, photometric="MONOCHROME2", **tags) -> path."""
    return write_dicom_file


@pytest.fixture
def small_options() -> IngestOptions:
    """Tiny working size so ingestion tests stay fast."""
    return IngestOptions(height=64, width=48)
