"""Opening an input file (local or in a bucket) with the reasons every decoder gives when it cannot."""
from __future__ import annotations

from contextlib import contextmanager
from typing import BinaryIO, Iterator

from mammo_tfx import storage
from mammo_tfx.ingest.records import BadInputError


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """storage.open_binary; BadInputError "file not found" or "cannot read file (...)" when it cannot be opened.

    Errors raised while the caller reads stay the caller's to describe (a truncated image is its decoder's call)."""
    try:
        handle = storage.open_binary(path)
    except FileNotFoundError:
        raise BadInputError(path, "file not found") from None
    except OSError as error:  # local permission/IsADirectory errors, StorageError of a bucket
        raise BadInputError(path, f"cannot read file ({type(error).__name__}: {error})") from None
    with handle:
        yield handle


def read_input(path: str, size: int = -1) -> bytes:
    """The file's bytes (or its first `size` bytes); BadInputError naming the file when it cannot be read."""
    with open_input(path) as handle:
        try:
            return handle.read(size)
        except OSError as error:
            raise BadInputError(path, f"cannot read file ({type(error).__name__}: {error})") from None
