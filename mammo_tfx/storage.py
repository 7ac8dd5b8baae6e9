"""The one file-access layer for dataset roots: local paths and object storage (gs://, and any other scheme
Beam's filesystems know) behind the same small API, used by the listers, the decoders and the sources manifest.

Local paths go straight to the OS (fast, and `os.walk` semantics); paths with a scheme go through Beam's
`FileSystems`, which also serve the Beam workers that decode the images. Object stores have no directories: a
"directory" is a prefix that some object starts with.
"""
from __future__ import annotations

import io
import os
import posixpath
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class FileInfo:
    """One file under a root: its full path, size in bytes and modification time (seconds, as the store says)."""

    path: str
    size: int
    mtime: float


def is_remote(path: str) -> bool:
    """True for a path with a scheme (gs://bucket/x), False for a local path."""
    return bool(_SCHEME.match(path)) and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _filesystems():
    from apache_beam.io.filesystems import FileSystems  # imported late: local-only users never pay for it
    return FileSystems


def join(base: str, *parts: str) -> str:
    """base/part/...; forward slashes for object storage."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(path)


def dirname(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if is_remote(path) else os.path.dirname(path)


def relpath(path: str, root: str) -> str:
    """path relative to root, with forward slashes."""
    if is_remote(root):
        prefix = root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under {root}")
        return path[len(prefix):]
    return os.path.relpath(_local(path), _local(root)).replace(os.sep, "/")


def is_file(path: str) -> bool:
    if not is_remote(path):
        return os.path.isfile(_local(path))
    return any(item.path == path for item in _match(path))


def is_dir(path: str) -> bool:
    """A local directory, or a prefix under which some object exists."""
    if not is_remote(path):
        return os.path.isdir(_local(path))
    prefix = path.rstrip("/") + "/"
    return bool(_match(prefix + "**", limit=1))


def exists(path: str) -> bool:
    return is_file(path) or is_dir(path)


def list_dir(path: str) -> list[str]:
    """Sorted names of the files and folders directly under path (hidden ones included)."""
    if not is_remote(path):
        return sorted(os.listdir(_local(path)))
    prefix = path.rstrip("/") + "/"
    names = {item.path[len(prefix):].split("/", 1)[0] for item in _match(prefix + "**")}
    return sorted(name for name in names if name)


def walk_files(root: str) -> Iterator[FileInfo]:
    """Every file under root, recursively, in sorted path order; hidden files and folders (".name") skipped."""
    if not is_remote(root):
        local_root = _local(root)
        for directory, subdirectories, names in os.walk(local_root):
            subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = os.path.join(directory, name)
                stat = os.stat(path)
                yield FileInfo(path=path, size=stat.st_size, mtime=stat.st_mtime_ns / 1e9)
        return
    prefix = root.rstrip("/") + "/"
    for item in sorted(_match(prefix + "**"), key=lambda info: info.path):
        if any(part.startswith(".") for part in item.path[len(prefix):].split("/")):
            continue
        yield item


def open_binary(path: str) -> BinaryIO:
    """A seekable binary file object; FileNotFoundError when there is no such file."""
    if not is_remote(path):
        return open(_local(path), "rb")
    from apache_beam.io.filesystem import CompressionTypes
    if not is_file(path):
        raise FileNotFoundError(path)
    return _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    with open_binary(path) as handle:
        return handle.read()


def read_text(path: str, encoding: str = "utf-8", errors: str = "strict") -> str:
    """The whole file decoded as text (newlines as written)."""
    return read_bytes(path).decode(encoding, errors)


def text_stream(path: str, encoding: str = "utf-8", errors: str = "strict") -> io.StringIO:
    """The file as a text stream for csv/line readers (newline handling left to the reader)."""
    return io.StringIO(read_text(path, encoding, errors), newline="")


def _match(pattern: str, limit: int | None = None) -> list[FileInfo]:
    results = _filesystems().match([pattern], limits=[limit] if limit else None)
    return [FileInfo(path=m.path, size=m.size_in_bytes, mtime=float(m.last_updated_in_seconds or 0.0))
            for result in results for m in result.metadata_list]
