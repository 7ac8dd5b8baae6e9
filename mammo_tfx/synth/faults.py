"""Generic ways to damage a file that was written correctly, for the injected-fault records."""
from __future__ import annotations

import os


def truncate_file(path: str | os.PathLike, keep_fraction: float = 0.5) -> None:
    """Cut the file to ``keep_fraction`` of its size, as an interrupted download would."""
    if not 0 < keep_fraction < 1:
        raise ValueError(f"keep_fraction must be in (0, 1), got {keep_fraction}")
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(int(size * keep_fraction))

