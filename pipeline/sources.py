"""The sources manifest: which dataset roots feed the ExampleGen, with a fingerprint of their files.

TFX's file-based driver fingerprints the files under the ExampleGen's `input_base`, not the dataset folders the
manifest points at. Writing a digest of every dataset file's name, size and modification time into the manifest
makes new or changed data change the manifest, so the driver sees a new input and the ExampleGen runs again.
Roots and the manifest dir may be local folders or bucket URIs (gs://...): everything goes through `mammo_tfx.storage`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from mammo_tfx import storage
from mammo_tfx.ingest.layouts import LISTERS
from mammo_tfx.names import SOURCES_MANIFEST_FILE
from pipeline.config import PipelineConfig


@dataclass(frozen=True)
class DataSource:
    dataset: str  # layout name: cbis-ddsm, inbreast, mias, folder
    path: str  # an absolute local path or a bucket URI without a trailing slash

    @classmethod
    def parse(cls, text: str) -> "DataSource":
        """`cbis-ddsm=/data/CBIS-DDSM` or `cbis-ddsm=gs://bucket/CBIS-DDSM` -> DataSource.

        The root is checked here, before any work starts: a missing folder, an empty or misspelt prefix, a bucket
        that does not exist or cannot be read is one ValueError naming the root."""
        if "=" not in text:
            raise ValueError(f"--data expects LAYOUT=ROOT, got {text}")
        dataset, path = text.split("=", 1)
        if dataset not in LISTERS:
            raise ValueError(f"--data {text}: unknown layout {dataset}; the layouts are {', '.join(sorted(LISTERS))}")
        root = path.rstrip("/") if storage.is_remote(path) else os.path.abspath(path)
        try:
            found = storage.is_dir(root)
        except (OSError, ValueError) as error:  # StorageError names the root and says why
            raise ValueError(f"--data {text}: cannot read {error}") from None
        if not found:
            what = "no object under this prefix (empty or misspelt?)" if storage.is_remote(root) else "not a directory"
            raise ValueError(f"--data {text}: {root}: {what}")
        return cls(dataset=dataset, path=root)


def fingerprint_tree(root: str) -> Dict[str, object]:
    """Count and digest of the (non-hidden) files under root: relative path, size and modification time each."""
    digest = hashlib.sha256()
    files = 0
    for info in storage.walk_files(root):
        digest.update(f"{storage.relpath(info.path, root)}\0{info.size}\0{info.mtime!r}\n".encode())
        files += 1
    return {"files": files, "digest": digest.hexdigest()}


def write_manifest(sources: Sequence[DataSource], manifest_dir: str) -> str:
    """Writes `<manifest_dir>/sources.json`; rewrites it only when its content changes, so an unchanged input keeps
    the file's modification time and the ExampleGen's cached result stays valid."""
    if not sources:
        raise ValueError("no data sources: pass at least one --data LAYOUT=ROOT")
    entries: List[Dict[str, object]] = [
        {"dataset": s.dataset, "path": s.path, **fingerprint_tree(s.path)} for s in sources
    ]
    text = json.dumps({"sources": entries}, indent=2, sort_keys=True) + "\n"
    path = storage.join(manifest_dir, SOURCES_MANIFEST_FILE)
    if storage.is_file(path) and storage.read_text(path) == text:
        return path
    storage.write_text(path, text)
    return path


def parse_sources(config: PipelineConfig, data: Sequence[str], external: Sequence[str] = ()
                  ) -> Tuple[PipelineConfig, List[DataSource]]:
    """The configuration and sources of `--data` and `--external` (datasets held out of training): each external
    layout joins `ingest.external_datasets`, which ingestion and the gate read. A layout is either trained on or
    held out, so one passed both ways, or held out by the configuration and yet not passed, is an error."""
    sources = [DataSource.parse(text) for text in data]
    held_out = [DataSource.parse(text) for text in external]
    both = sorted({s.dataset for s in sources} & {s.dataset for s in held_out})
    if both:
        raise ValueError(f"{', '.join(both)} is passed with both --data and --external: a dataset is either trained "
                         "on or held out of training; the slices of a run are per layout, so pass another layout's "
                         "data with --data, or hold the whole layout out")
    external_datasets = tuple(dict.fromkeys(config.ingest.external_datasets + tuple(s.dataset for s in held_out)))
    passed = {s.dataset for s in sources + held_out}
    missing = [name for name in external_datasets if name not in passed]
    if missing:
        raise ValueError(f"ingest.external_datasets names {', '.join(missing)}, which no --data or --external passes")
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, external_datasets=external_datasets))
    return config, sources + held_out
