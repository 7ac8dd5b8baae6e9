"""Deterministic randomness and identifiers: everything a run produces is a function of (seed, names), no clock."""
from __future__ import annotations

import hashlib
import zlib

import numpy as np


def _key_ints(seed: int, keys: tuple[object, ...]) -> list[int]:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    # crc32 of the text is stable across runs and Python versions (unlike hash()).
    return [seed] + [zlib.crc32(str(key).encode("utf-8")) for key in keys]


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """An independent random stream for one named thing (layout, patient, image ...) of a seeded run.

    Streams for different keys do not interact, so adding a record (e.g. an injected fault) leaves every
    other record's pixels unchanged.
    """
    return np.random.default_rng(_key_ints(seed, keys))


def _digest(seed: int, keys: tuple[object, ...]) -> bytes:
    text = "\x1f".join([str(seed), *(str(key) for key in keys)])
    return hashlib.sha256(text.encode("utf-8")).digest()


def derive_uid(seed: int, *keys: object) -> str:
    """A valid DICOM UID under the UUID-derived root 2.25, fixed by the seed and the keys."""
    return "2.25." + str(int.from_bytes(_digest(seed, keys)[:16], "big"))


def derive_hex(seed: int, *keys: object, length: int = 16) -> str:
    """A lower-case hex string of ``length`` characters fixed by the seed and the keys."""
    return _digest(seed, keys).hex()[:length]
