"""Shared test fixtures: small and generic (tiny DICOM writer, small ingestion options, a GCS emulator)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import portpicker
import pydicom
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


def rewrite_dicom_tags(path: Path, **tags: object) -> Path:
    """Rewrite header elements of a saved DICOM by keyword, pixel data untouched (e.g. a header that lies)."""
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


@pytest.fixture
def write_dicom() -> DicomWriter:
    """write_dicom(path, pixels, bits_stored=None, photometric="MONOCHROME2", **tags) -> path."""
    return write_dicom_file


@pytest.fixture
def small_options() -> IngestOptions:
    """Tiny working size so ingestion tests stay fast."""
    return IngestOptions(height=64, width=48)


@dataclass(frozen=True)
class GcsEmulator:
    """A GCS-API server on localhost (gcp-storage-emulator, in memory); STORAGE_EMULATOR_HOST points at it."""

    host: str

    def client(self):
        from google.cloud import storage as gcs  # anonymous: STORAGE_EMULATOR_HOST makes the client need no credentials
        return gcs.Client()

    def upload_tree(self, local_dir: Path, bucket: str, prefix: str) -> str:
        """Copies every file under local_dir to gs://bucket/prefix/ (creating the bucket); returns that URI."""
        client = self.client()
        target = client.lookup_bucket(bucket) or client.create_bucket(bucket)
        for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            target.blob(f"{prefix}/{path.relative_to(local_dir).as_posix()}").upload_from_filename(str(path))
        return f"gs://{bucket}/{prefix}"


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """Starts the emulator on a free port for the session; its env var is in os.environ, so Beam's worker
    processes inherit it."""
    port = portpicker.pick_unused_port()
    server = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--in-memory", "--quiet"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the GCS emulator did not start on port {port}") from None
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
            yield GcsEmulator(host=f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)
