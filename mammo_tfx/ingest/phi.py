"""Salted SHA-256 keys: stable ids for patients and images that reveal neither."""
from __future__ import annotations

import hashlib

KEY_HEX_CHARS = 32


def salted_key(salt: str, dataset: str, identifier: str) -> str:
    """32 hex chars of SHA-256 over salt, dataset and id (unit-separator joined, so parts cannot run together)."""
    if not identifier:
        raise ValueError(f"empty identifier for a {dataset} key")
    digest = hashlib.sha256("\x1f".join((salt, dataset, identifier)).encode("utf-8")).hexdigest()
    return digest[:KEY_HEX_CHARS]
