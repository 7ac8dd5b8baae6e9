"""Slice keys as plain tuples, their display labels and order, and matching gate slices to them."""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Union

from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from mammo_tfx.tfma_keys import slice_pairs_from_proto

SliceValue = Union[str, int, float]
# ((column, value), ...) with columns in DISPLAY_COLUMN_ORDER; () is the overall slice.
SliceKey = tuple[tuple[str, SliceValue], ...]

OVERALL_LABEL = "Overall"
# The example features the Evaluator slices on, most important first; other columns follow alphabetically.
DISPLAY_COLUMN_ORDER = ("dataset", "density", "view", "laterality", "abnormality_type")


def _column_rank(column: str) -> tuple[int, str]:
    if column in DISPLAY_COLUMN_ORDER:
        return DISPLAY_COLUMN_ORDER.index(column), column
    return len(DISPLAY_COLUMN_ORDER), column


def make_slice_key(pairs: Iterable[tuple[str, SliceValue]]) -> SliceKey:
    """Orders the (column, value) pairs the way the report shows them (TFMA sorts columns by name)."""
    return tuple(sorted(pairs, key=lambda pair: _column_rank(pair[0])))


def slice_key_from_proto(proto: metrics_for_slice_pb2.SliceKey) -> SliceKey:
    return make_slice_key(slice_pairs_from_proto(proto))



def slice_columns(key: SliceKey) -> tuple[str, ...]:
    return tuple(column for column, _ in key)


def slice_label(key: SliceKey) -> str:
    """'Overall', 'dataset=inbreast' or 'dataset=mias & density=3'."""
    if not key:
        return OVERALL_LABEL
    return " & ".join(f"{column}={value}" for column, value in key)


def slice_sort_key(key: SliceKey) -> tuple:
    """Overall first, then single-feature slices before crosses, features in display order, values natural."""
    value_ranks = tuple((0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value)) for _, value in key)
    return len(key), tuple(_column_rank(column) for column, _ in key), value_ranks


def _normalised_pairs(pairs: Iterable[tuple[str, object]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(column).strip().lower(), str(value).strip().lower()) for column, value in pairs))


def normalise_slice(key: SliceKey) -> tuple[tuple[str, str], ...]:
    """Comparable form of a report slice: columns and values as lower-case text, sorted by column."""
    return _normalised_pairs(key)


_PAIR_SEPARATORS = re.compile(r"\s*(?:&|,|;|\s[xX]\s)\s*")
_COLUMN_VALUE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?:=|:)\s*(.*?)\s*$")


def normalise_gate_slice(gate_slice: object) -> tuple[tuple[str, str], ...] | None:
    """Comparable form of a gate's slice, or None when it cannot be read as one.

    The gate component may name a slice as a mapping ({"dataset": "inbreast"}), a list of pairs, a TFMA-style
    text ("dataset:inbreast", "dataset=mias & density=3") or the overall slice ("", "overall", None, {}).
    """
    if gate_slice is None:
        return ()
    if isinstance(gate_slice, Mapping):
        return _normalised_pairs(gate_slice.items())
    if isinstance(gate_slice, (list, tuple)):
        if all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in gate_slice):
            return _normalised_pairs((pair[0], pair[1]) for pair in gate_slice)
        return None
    text = str(gate_slice).strip()
    if text.lower() in ("", "overall", "overall_slice", "()"):
        return ()
    pairs = []
    for part in _PAIR_SEPARATORS.split(text):
        match = _COLUMN_VALUE.match(part)
        if not match:
            return None
        pairs.append((match.group(1), match.group(2).strip("'\"")))
    return _normalised_pairs(pairs)
