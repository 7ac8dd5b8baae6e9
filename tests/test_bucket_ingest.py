"""The same datasets ingested from local disk and from a bucket (a GCS-API server on localhost) give the same
examples, byte for byte, and the same quarantine report up to the root prefix of the file paths."""
from __future__ import annotations

import csv
import glob
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.uid import RLELossless

from components.mammo_example_gen.executor import QUARANTINE_FILE
from mammo_tfx import cli, synth
from pipeline.sources import DataSource
from tests.conftest import run_executor, write_dicom_file

pytestmark = pytest.mark.e2e  # MammoExampleGen on Beam reading a GCS emulator

SYNTH_LAYOUTS = {"cbis-ddsm": 4, "inbreast": 4, "mias": 2}
# CBIS-DDSM as the retriever writes it by default, so the bucket copy goes through the path resolver too.
DOWNLOAD_LAYOUTS = {"cbis-ddsm": "descriptive"}
SPLITS = ("train", "eval", "test")


def write_folder_dataset(root: Path) -> None:
    """The folder layout with DICOMs (PatientID in the header), a PNG and the bad inputs it must quarantine."""
    rng = np.random.default_rng(7)
    for index, where in enumerate(["train/neg", "train/pos", "test/pos", "val/neg", "train/neg"]):
        pixels = rng.integers(0, 4096, size=(90, 70), dtype=np.uint16)
        write_dicom_file(root / where / f"scan{index}_L_CC.dcm", pixels, bits_stored=12, PatientID=f"patient-{index}")
    monochrome1 = rng.integers(0, 4096, size=(90, 70), dtype=np.uint16)
    write_dicom_file(root / "train/pos/inverted_R_MLO.dcm", monochrome1, bits_stored=12,
                     photometric="MONOCHROME1", PatientID="patient-inverted")
    compressed = write_dicom_file(root / "test/neg/rle_R_CC.dcm", rng.integers(0, 4096, size=(90, 70),
                                  dtype=np.uint16), bits_stored=12, PatientID="patient-rle")
    dataset = dcmread(compressed)
    dataset.compress(RLELossless)
    dataset.save_as(compressed)
    Image.fromarray(rng.integers(0, 256, size=(80, 60), dtype=np.uint8)).save(root / "train/neg/plain_L_MLO.png")
    whole = (root / "train/pos/scan1_L_CC.dcm").read_bytes()
    (root / "train/pos/truncated_L_CC.dcm").write_bytes(whole[: len(whole) // 2])
    (root / "train/neg/notes.txt").write_text("not an image")
    (root / "train/neg/.DS_Store").write_bytes(b"hidden")


@pytest.fixture(scope="module")
def local_and_bucket(tmp_path_factory: pytest.TempPathFactory, gcs_emulator) -> dict[str, dict[str, str]]:
    data = tmp_path_factory.mktemp("data")
    for layout, patients in SYNTH_LAYOUTS.items():
        synth.generate(layout, data / layout, patients=patients, seed=5, inject_faults=True, scale=0.1,
                       download_layout=DOWNLOAD_LAYOUTS.get(layout))
    write_folder_dataset(data / "folder")
    layouts = [*SYNTH_LAYOUTS, "folder"]
    return {
        "local": {layout: str(data / layout) for layout in layouts},
        "bucket": {layout: gcs_emulator.upload_tree(data / layout, "mammo-data", f"datasets/{layout}")
                   for layout in layouts},
    }


def ingest(roots: dict[str, str], out_dir: str) -> tuple[dict[str, list[bytes]], list[dict[str, str]]]:
    """Sorted serialized examples per split, and the quarantine rows with each root replaced by <LAYOUT>."""
    examples, quarantine = run_executor([DataSource.parse(f"{layout}={root}") for layout, root in roots.items()],
                                        out_dir)
    import tensorflow as tf
    splits = {}
    for split in SPLITS:
        files = sorted(glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz")))
        splits[split] = sorted(r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    with open(os.path.join(quarantine.uri, QUARANTINE_FILE)) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for layout, root in roots.items():
            row["file"] = row["file"].replace(root, f"<{layout}>")
            row["reason"] = row["reason"].replace(root, f"<{layout}>")
    return splits, sorted(rows, key=lambda r: (r["dataset"], r["record"], r["file"]))


def test_bucket_and_local_copies_ingest_to_the_same_examples(local_and_bucket, tmp_path: Path) -> None:
    local_splits, local_rows = ingest(local_and_bucket["local"], str(tmp_path / "local"))
    bucket_splits, bucket_rows = ingest(local_and_bucket["bucket"], str(tmp_path / "bucket"))
    assert all(local_splits.values()), {split: len(v) for split, v in local_splits.items()}
    assert bucket_splits == local_splits
    assert bucket_rows == local_rows
    reported = {(row["dataset"], os.path.basename(row["file"])) for row in local_rows}
    # The bad inputs of every layout are reported (the folder's MONOCHROME1 and RLE scans are fine and ingested).
    assert {("folder", "truncated_L_CC.dcm"), ("folder", "notes.txt")} <= reported
    assert {dataset for dataset, _ in reported} >= set(SYNTH_LAYOUTS)
    assert not any(row["file"].startswith(("gs://", "/")) for row in bucket_rows + local_rows)


def test_a_missing_bucket_stops_the_run_before_any_work(local_and_bucket, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = cli.main(["run", "--data", f"folder={local_and_bucket['bucket']['folder']}",
                     "--data", "mias=gs://mammo-data-misspelt/datasets/mias", "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("mammo-tfx: error:") == 1
    assert "gs://mammo-data-misspelt/datasets/mias: the bucket does not exist" in error
    assert not out.exists()
