"""The one file-access layer for dataset roots: local paths and object storage (gs://, and any other scheme
Beam's filesystems know) behind the same small API, used by the listers, the decoders and the sources manifest.

Local paths go straight to the OS (fast, and `os.walk` semantics); paths with a scheme go through Beam's
`FileSystems`, which also serve the Beam workers that decode the images. Object stores have no directories: a
"directory" is a prefix that some object starts with, and a folder-marker object (a name ending in "/", as the
Cloud Console writes) is not a file.

Credentials for gs:// are Beam's: Application Default Credentials (`gcloud auth application-default login` on a
laptop, the service account on GCP), anonymous when there are none. With `STORAGE_EMULATOR_HOST` set (a GCS-API
server such as gcp-storage-emulator), google-cloud-storage sends every request there; no credentials are needed,
so the credential lookup is skipped (see `_skip_credential_lookup`). `tf.io.gfile` is not used for remote roots
because TensorFlow's GCS filesystem has the GCS endpoint built in and cannot be pointed at an emulator.

A store that refuses or fails a request (no such bucket, no permission, unreachable) raises `StorageError`, an
OSError naming the path; a missing object or an empty prefix is not an error (`is_file`/`is_dir` say False).
"""
from __future__ import annotations

import io
import os
import posixpath
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB = re.compile(r"[*?\[]")
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class StorageError(OSError):
    """The object store refused or failed a request about `path`; the message names the path and the cause."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable across Beam workers despite the two-argument constructor
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class FileInfo:
    """One file under a root: its full path, size in bytes and modification time (seconds, as the store says)."""

    path: str
    size: int
    mtime: float


def is_remote(path: str) -> bool:
    """True for a path with a scheme (gs://bucket/x), False for a local path (file:// counts as local)."""
    return bool(_SCHEME.match(path)) and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def join(base: str, *parts: str) -> str:
    """base/part/...; forward slashes for object storage."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(_local(base), *parts)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(_local(path))


def dirname(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if is_remote(path) else os.path.dirname(_local(path))


def relpath(path: str, root: str) -> str:
    """path relative to root, with forward slashes."""
    if is_remote(root):
        prefix = _prefix(root)
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under {root}")
        return path[len(prefix):]
    return os.path.relpath(_local(path), _local(root)).replace(os.sep, "/")


def is_file(path: str) -> bool:
    """A regular local file, or an object (not a folder marker) at exactly this path."""
    if not is_remote(path):
        return os.path.isfile(_local(path))
    if path.endswith("/") or "/" not in path[len(_SCHEME.match(path).group(0)):]:
        return False  # a bucket or a folder marker, never a file
    return bool(_call(path, lambda fs: fs.exists(path)))


def is_dir(path: str) -> bool:
    """A local directory, or a prefix under which some object exists. StorageError when the bucket is missing or
    cannot be listed, so a wrong bucket name is not mistaken for an empty folder."""
    if not is_remote(path):
        return os.path.isdir(_local(path))
    return any(True for _ in _list(path, limit=1))


def exists(path: str) -> bool:
    return is_file(path) or is_dir(path)


def list_dir(path: str) -> list[str]:
    """Sorted names of the files and folders directly under path (hidden ones included)."""
    if not is_remote(path):
        return sorted(os.listdir(_local(path)))
    prefix = _prefix(path)
    names = {item.path[len(prefix):].split("/", 1)[0] for item in _list(path, keep_markers=True)}
    return sorted(name for name in names if name)


def walk_files(root: str) -> Iterator[FileInfo]:
    """Every file under root, recursively, sorted by path relative to root (the same order for a local copy and a
    bucket copy); hidden files and folders (".name") skipped."""
    if not is_remote(root):
        local_root = _local(root)
        found = []
        for directory, subdirectories, names in os.walk(local_root):
            subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
            for name in names:
                if not name.startswith("."):
                    path = os.path.join(directory, name)
                    found.append((os.path.relpath(path, local_root).replace(os.sep, "/"), path))
        for _, path in sorted(found):
            stat = os.stat(path)
            yield FileInfo(path=path, size=stat.st_size, mtime=stat.st_mtime_ns / 1e9)
        return
    prefix = _prefix(root)
    for item in sorted(_list(root), key=lambda info: info.path):
        if not any(part.startswith(".") for part in item.path[len(prefix):].split("/")):
            yield item


def open_binary(path: str) -> BinaryIO:
    """A seekable binary file object; FileNotFoundError when there is no such file, StorageError when the store
    cannot be read."""
    if not is_remote(path):
        return open(_local(path), "rb")
    if not is_file(path):
        raise FileNotFoundError(f"{path}: no such object")
    from apache_beam.io.filesystem import CompressionTypes
    # UNCOMPRESSED: Beam would otherwise decompress by extension; the raw reader it returns is seekable.
    handle = _call(path, lambda fs: fs.open(path, compression_type=CompressionTypes.UNCOMPRESSED))
    # Named like a local file object, so readers that quote the file's name (pydicom's warnings) say the same.
    handle.name = path
    return handle


def read_bytes(path: str, size: int = -1) -> bytes:
    """The file's bytes, or only its first `size` bytes."""
    with open_binary(path) as handle:
        return handle.read(size)


def read_text(path: str, encoding: str = "utf-8", errors: str = "strict") -> str:
    """The whole file decoded as text (newlines as written)."""
    return read_bytes(path).decode(encoding, errors)


def text_stream(path: str, encoding: str = "utf-8", errors: str = "strict") -> io.StringIO:
    """The file as a text stream for csv/line readers (newline handling left to the reader)."""
    return io.StringIO(read_text(path, encoding, errors), newline="")


def write_text(path: str, text: str) -> None:
    """Writes (replaces) a small UTF-8 text file, creating local parent folders."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(_local(path)) or ".", exist_ok=True)
        with open(_local(path), "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    from apache_beam.io.filesystem import CompressionTypes

    def write(fs) -> None:
        with fs.create(path, mime_type="text/plain", compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(text.encode("utf-8"))
    _call(path, write)


def _prefix(path: str) -> str:
    return path.rstrip("/") + "/"


def _list(root: str, limit: int | None = None, keep_markers: bool = False) -> list[FileInfo]:
    """The objects under the prefix root/ (folder markers only if keep_markers)."""
    prefix = _prefix(root)
    if _GLOB.search(prefix):
        # Beam matches patterns: a literal *, ? or [ in a root would silently select other objects.
        raise ValueError(f"{root}: object-store roots cannot contain *, ? or [")
    results = _call(root, lambda fs: fs.match([prefix + "**"], limits=[limit]))
    return [FileInfo(path=m.path, size=m.size_in_bytes, mtime=float(m.last_updated_in_seconds or 0.0))
            for result in results for m in result.metadata_list if keep_markers or not m.path.endswith("/")]


def _call(path: str, operation):
    """operation(Beam's FileSystems) with Beam's wrapped errors turned into one StorageError naming path."""
    from apache_beam.io.filesystem import BeamIOError
    if os.environ.get(EMULATOR_ENV):
        _skip_credential_lookup()
    from apache_beam.io.filesystems import FileSystems  # imported late: local-only users never pay for it
    try:
        return operation(FileSystems)
    except BeamIOError as error:
        raise StorageError(path, _describe(error)) from None


def _describe(error: BaseException) -> str:
    # Beam nests its errors ({pattern: BeamIOError({prefix: NotFound(...)})}); the innermost one says what happened.
    from apache_beam.io.filesystem import BeamIOError
    while isinstance(error, BeamIOError) and error.exception_details:
        error = next(iter(error.exception_details.values()))
    code = getattr(error, "code", None)  # google.api_core errors carry the HTTP status
    hint = {404: "the bucket does not exist", 401: "access denied: check the credentials",
            403: "access denied: check the credentials and the bucket's permissions"}.get(code)
    detail = f"{type(error).__name__}: {error}"
    return f"{hint} ({detail})" if hint else detail


def _skip_credential_lookup() -> None:
    """An emulator takes requests without credentials. Beam 2.61 (`apache_beam.internal.gcp.auth`) looks for
    Application Default Credentials once per process and, finding none, retries for about 30 s before it builds
    an anonymous client; and if it found real ones it would send their tokens to the emulator. Marking the lookup
    as done with no credentials makes Beam build the anonymous client at once, which google-cloud-storage points
    at STORAGE_EMULATOR_HOST."""
    from apache_beam.internal.gcp import auth
    cache = auth._Credentials
    with cache._credentials_lock:
        if not cache._credentials_init:
            cache._credentials, cache._credentials_init = None, True
