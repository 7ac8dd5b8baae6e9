"""Slice keys as the report shows them: plain tuples, their display labels and order."""
from __future__ import annotations

from typing import Iterable

from mammo_tfx import names
from mammo_tfx.evaluation.tfma_results import OVERALL_SLICE_NAME, SliceValue

# ((column, value), ...) with columns in the order of names.SLICE_FEATURES (most important first, the order the
# report shows), other columns after them alphabetically; () is the overall slice.
SliceKey = tuple[tuple[str, SliceValue], ...]



def _column_rank(column: str) -> tuple[int, str]:
    if column in names.SLICE_FEATURES:
        return names.SLICE_FEATURES.index(column), column
    return len(names.SLICE_FEATURES), column


def make_slice_key(pairs: Iterable[tuple[str, SliceValue]]) -> SliceKey:
    """Orders the (column, value) pairs the way the report shows them (TFMA sorts columns by name)."""
    return tuple(sorted(pairs, key=lambda pair: _column_rank(pair[0])))


def slice_columns(key: SliceKey) -> tuple[str, ...]:
    return tuple(column for column, _ in key)


def slice_label(key: SliceKey) -> str:
    """'Overall', 'dataset=inbreast' or 'dataset=mias & density=3'."""
    if not key:
        return OVERALL_SLICE_NAME
    return " & ".join(f"{column}={value}" for column, value in key)


def slice_sort_key(key: SliceKey) -> tuple:
    """Overall first, then single-feature slices before crosses, features in display order, values natural."""
    value_ranks = tuple((0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value)) for _, value in key)
    return len(key), tuple(_column_rank(column) for column, _ in key), value_ranks
