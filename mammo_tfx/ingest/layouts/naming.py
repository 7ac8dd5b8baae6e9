"""Laterality and view from file-name tokens (LEFT/RIGHT, L/R, CC/MLO/ML, and LCC-style pairs)."""
from __future__ import annotations

import re

_SIDES = {"LEFT": "L", "L": "L", "RIGHT": "R", "R": "R"}
_VIEWS = {"CC": "CC", "MLO": "MLO", "ML": "MLO"}


def name_tokens(name: str) -> list[str]:
    """The upper-cased alphanumeric tokens of a name."""
    return [token for token in re.split(r"[^A-Z0-9]+", name.upper()) if token]


def laterality_from_name(name: str) -> str:
    """"L", "R" or "U" (unknown or contradictory)."""
    found = set()
    for token in name_tokens(name):
        if token in _SIDES:
            found.add(_SIDES[token])
        elif token[:1] in ("L", "R") and token[1:] in _VIEWS:  # LCC, RMLO, ...
            found.add(token[0])
    return found.pop() if len(found) == 1 else "U"


def view_from_name(name: str) -> str:
    """"CC", "MLO" or "UNKNOWN" (unknown or contradictory)."""
    found = set()
    for token in name_tokens(name):
        if token in _VIEWS:
            found.add(_VIEWS[token])
        elif token[:1] in ("L", "R") and token[1:] in _VIEWS:
            found.add(_VIEWS[token[1:]])
    return found.pop() if len(found) == 1 else "UNKNOWN"
