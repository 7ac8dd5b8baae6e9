"""Reading the keys of TFMA's metric records: what the ModelGate and the report both need, in one place."""
from __future__ import annotations

from typing import Union

from tensorflow_model_analysis.proto import metrics_for_slice_pb2

SlicePairs = tuple[tuple[str, Union[str, int, float]], ...]


def slice_pairs_from_proto(proto: metrics_for_slice_pb2.SliceKey) -> SlicePairs:
    """The (column, value) pairs of a TFMA slice key in TFMA's order, bytes decoded; () is the overall slice."""
    pairs = []
    for single in proto.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind) if kind else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        pairs.append((single.column, value))
    return tuple(pairs)


def is_plain_metric_key(key: metrics_for_slice_pb2.MetricKey) -> bool:
    """Keys of the model itself: no baseline diff, class/top-k sub key or aggregation."""
    return not key.is_diff and not key.HasField("sub_key") and not key.HasField("aggregation_type")
