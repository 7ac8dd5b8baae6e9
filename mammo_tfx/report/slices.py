"""Slice keys as the report shows them: plain tuples, their display labels and order."""
from __future__ import annotations

import re
from typing import Iterable

from mammo_tfx import names
from mammo_tfx.evaluation.tfma_results import OVERALL_SLICE_NAME, SliceValue

# ((column, value), ...) with columns in the order of names.SLICE_FEATURES (most important first, the order the
# report shows), other columns after them alphabetically; () is the overall slice.
SliceKey = tuple[tuple[str, SliceValue], ...]
_LEADING_NUMBER = re.compile(r"^(<?)(\d+(?:\.\d+)?)")


def _column_rank(column: str) -> tuple[int, str]:
    if column in names.SLICE_FEATURES:
        return names.SLICE_FEATURES.index(column), column
    return len(names.SLICE_FEATURES), column


def make_slice_key(pairs: Iterable[tuple[str, SliceValue]]) -> SliceKey:
    """Orders the (column, value) pairs the way the report shows them (TFMA sorts columns by name)."""
    return tuple(sorted(pairs, key=lambda pair: _column_rank(pair[0])))


def slice_columns(key: SliceKey) -> tuple[str, ...]:
    return tuple(column for column, _ in key)


def slice_label(key: SliceKey, external_datasets: Iterable[str] = ()) -> str:
    """'Overall', 'dataset=inbreast' or 'dataset=mias & density=3'; a slice of a dataset held out of training
    (`external_datasets`) ends in ' (external)'."""
    if not key:
        return OVERALL_SLICE_NAME
    label = " & ".join(f"{column}={value}" for column, value in key)
    external = any(column == names.DATASET and value in set(external_datasets) for column, value in key)
    return label + (" (external)" if external else "")


def _value_rank(value: SliceValue) -> tuple[int, float, str]:
    """Numbers first, then text by its leading number (site ids, age bands: "<50" before "50-59" before "70+"),
    then other text alphabetically, "unknown" (the ingest's value for "the dataset does not say") last."""
    if isinstance(value, (int, float)):
        return 0, float(value), ""
    text = str(value)
    if text == "unknown":
        return 3, 0.0, text
    leading = _LEADING_NUMBER.match(text)
    if leading:
        return 1, float(leading.group(2)) - (0.5 if leading.group(1) == "<" else 0.0), text
    return 2, 0.0, text


def slice_sort_key(key: SliceKey) -> tuple:
    """Overall first, then single-feature slices before crosses, features in display order, values natural."""
    return len(key), tuple(_column_rank(column) for column, _ in key), tuple(_value_rank(value) for _, value in key)
