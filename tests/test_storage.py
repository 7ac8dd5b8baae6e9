"""mammo_tfx.storage on a local folder and on the same files in a bucket of a GCS-API server on localhost; the
sources manifest and compile-kfp's manifest writing on bucket roots."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mammo_tfx import storage
from pipeline.kubeflow import write_bucket_manifest
from pipeline.sources import DataSource, fingerprint_tree

FILES = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 4, "sub/deeper/c.csv": b"x;y\n1;2\n",
         ".hidden": b"h", "sub/.git/config": b"h"}


@pytest.fixture(scope="module")
def local_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def bucket_tree(local_tree: Path, gcs_emulator) -> str:
    root = gcs_emulator.upload_tree(local_tree, "storage-test", "tree")
    # A folder marker, as the Cloud Console writes for "create folder": not a file.
    gcs_emulator.client().bucket("storage-test").blob("tree/sub/empty/").upload_from_string(b"")
    return root


@pytest.fixture(params=["local", "bucket"])
def root(request: pytest.FixtureRequest, local_tree: Path) -> str:
    return str(local_tree) if request.param == "local" else request.getfixturevalue("bucket_tree")


def test_walk_lists_visible_files_in_the_same_order_with_sizes(root: str) -> None:
    found = [(storage.relpath(info.path, root), info.size) for info in storage.walk_files(root)]
    assert found == [("a.txt", 6), ("sub/b.bin", 1024), ("sub/deeper/c.csv", 8)]
    assert all(info.mtime > 0 for info in storage.walk_files(root))


def test_files_folders_and_names(root: str) -> None:
    sub = storage.join(root, "sub")
    assert storage.is_dir(root) and storage.is_dir(sub) and not storage.is_file(sub)
    assert storage.is_file(storage.join(sub, "b.bin")) and not storage.is_dir(storage.join(sub, "b.bin"))
    assert not storage.exists(storage.join(root, "missing")) and not storage.is_file(storage.join(root, "missing"))
    assert "deeper" in storage.list_dir(sub) and "b.bin" in storage.list_dir(sub)
    assert storage.list_dir(storage.join(sub, "deeper")) == ["c.csv"]
    assert storage.basename(storage.join(sub, "b.bin")) == "b.bin"
    assert storage.dirname(storage.join(sub, "b.bin")) == sub
    assert storage.is_remote(root) == root.startswith("gs://")


def test_reading(root: str) -> None:
    path = storage.join(root, "sub", "b.bin")
    assert storage.read_bytes(path) == FILES["sub/b.bin"]
    assert storage.read_bytes(path, 4) == bytes([0, 1, 2, 3])
    with storage.open_binary(path) as handle:  # pydicom and Pillow seek; pydicom quotes the name
        assert handle.name == path
        handle.seek(1000)
        assert handle.read(3) == FILES["sub/b.bin"][1000:1003]
    rows = list(csv.reader(storage.text_stream(storage.join(root, "sub", "deeper", "c.csv")), delimiter=";"))
    assert rows == [["x", "y"], ["1", "2"]]
    with pytest.raises(FileNotFoundError, match="missing.dcm"):
        storage.open_binary(storage.join(root, "missing.dcm"))


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_write_text_round_trip(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Outside the shared tree, whose file count other tests check.
    base = str(tmp_path) if where == "local" else request.getfixturevalue("bucket_tree") + "-written"
    path = storage.join(base, "written", "note.json")
    storage.write_text(path, '{"é": 1}\n')
    assert storage.read_text(path) == '{"é": 1}\n'


def test_a_folder_marker_is_a_folder_not_a_file(bucket_tree: str) -> None:
    marker = storage.join(bucket_tree, "sub", "empty") + "/"
    assert not storage.is_file(marker)
    assert "empty" in storage.list_dir(storage.join(bucket_tree, "sub"))
    assert all(not info.path.endswith("/") for info in storage.walk_files(bucket_tree))


def test_a_missing_bucket_is_an_error_naming_the_path_an_empty_prefix_is_not(gcs_emulator) -> None:
    with pytest.raises(storage.StorageError, match=r"gs://no-such-bucket/data: the bucket does not exist"):
        storage.is_dir("gs://no-such-bucket/data")
    assert not storage.is_file("gs://no-such-bucket/data/x.dcm")
    gcs_emulator.client().create_bucket("empty-bucket")
    assert not storage.is_dir("gs://empty-bucket/nothing-here")
    assert list(storage.walk_files("gs://empty-bucket/nothing-here")) == []


def test_data_source_accepts_a_bucket_root_and_names_a_bad_one(bucket_tree: str, local_tree: Path) -> None:
    source = DataSource.parse(f"mias={bucket_tree}/")
    assert source == DataSource("mias", bucket_tree)
    assert fingerprint_tree(bucket_tree)["files"] == fingerprint_tree(str(local_tree))["files"] == 3
    with pytest.raises(ValueError, match=r"gs://no-such-bucket/mias: the bucket does not exist"):
        DataSource.parse("mias=gs://no-such-bucket/mias")
    with pytest.raises(ValueError, match=r"gs://storage-test/misspelt: no object under this prefix"):
        DataSource.parse("mias=gs://storage-test/misspelt")
    with pytest.raises(ValueError, match=r"gs://storage-test/tree\*: object-store roots cannot contain"):
        DataSource.parse("mias=gs://storage-test/tree*")


def test_compile_kfp_manifest_is_written_from_the_bucket_listing(bucket_tree: str, local_tree: Path) -> None:
    sources = [DataSource.parse(f"folder={bucket_tree}")]
    uri = write_bucket_manifest(sources, "gs://storage-test/manifests/run-1")
    assert uri == "gs://storage-test/manifests/run-1/sources.json"
    manifest = json.loads(storage.read_text(uri))
    assert [(s["dataset"], s["path"], s["files"]) for s in manifest["sources"]] == [("folder", bucket_tree, 3)]
    with pytest.raises(ValueError, match="folder dataset root .* must be a bucket URI"):
        write_bucket_manifest([DataSource.parse(f"folder={local_tree}")], "gs://storage-test/manifests/run-2")
