"""The sources manifest: which dataset roots feed the ExampleGen, with a fingerprint of their files.

TFX's file-based driver fingerprints the files under the ExampleGen's `input_base`, not the dataset folders the
manifest points at. Writing a digest of every dataset file's name, size and modification time into the manifest
makes new or changed data change the manifest, so the driver sees a new input and the ExampleGen runs again.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

from mammo_tfx.ingest.layouts import LISTERS

MANIFEST_FILE = "sources.json"


@dataclass(frozen=True)
class DataSource:
    dataset: str  # layout name: cbis-ddsm, inbreast, mias, folder
    path: str

    @classmethod
    def parse(cls, text: str) -> "DataSource":
        """`cbis-ddsm=/data/CBIS-DDSM` -> DataSource."""
        if "=" not in text:
            raise ValueError(f"--data expects LAYOUT=DIR, got {text!r}")
        dataset, path = text.split("=", 1)
        if dataset not in LISTERS:
            raise ValueError(f"--data {text!r}: unknown layout {dataset!r}; known: {sorted(LISTERS)}")
        if not os.path.isdir(path):
            raise ValueError(f"--data {text!r}: {path} is not a directory")
        return cls(dataset=dataset, path=os.path.abspath(path))


def fingerprint_tree(root: str) -> Dict[str, object]:
    digest = hashlib.sha256()
    files = 0
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            stat = os.stat(path)
            digest.update(f"{os.path.relpath(path, root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            files += 1
    return {"files": files, "digest": digest.hexdigest()}


def write_manifest(sources: Sequence[DataSource], manifest_dir: str) -> str:
    """Writes `<manifest_dir>/sources.json`; rewrites it only when its content changes, so an unchanged input keeps
    the file's modification time and the ExampleGen's cached result stays valid."""
    if not sources:
        raise ValueError("no data sources: pass at least one --data LAYOUT=DIR")
    entries: List[Dict[str, object]] = [
        {"dataset": s.dataset, "path": s.path, **fingerprint_tree(s.path)} for s in sources
    ]
    text = json.dumps({"sources": entries}, indent=2, sort_keys=True) + "\n"
    os.makedirs(manifest_dir, exist_ok=True)
    path = os.path.join(manifest_dir, MANIFEST_FILE)
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return path
    with open(path, "w") as f:
        f.write(text)
    return path
