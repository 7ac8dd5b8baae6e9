"""Reading back the GZIP TFRecord splits the ExampleGen writes (contract: docs/contracts.md)."""
from __future__ import annotations

from typing import Iterator, Sequence, Tuple

import tensorflow as tf

from mammo_tfx import names


def split_files(file_patterns: Sequence[str]) -> list[str]:
    return sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))


def serialized_examples(file_patterns: Sequence[str]) -> Iterator[Tuple[str, bytes]]:
    """(file, serialized tf.Example) of every example in the files matching `file_patterns`, file by file."""
    for path in split_files(file_patterns):
        for record in tf.data.TFRecordDataset([path], compression_type="GZIP"):
            yield path, record.numpy()


def first_image_png(file_patterns: Sequence[str]) -> bytes:
    """The encoded image of the first example in the files matching `file_patterns` (a real scan, e.g. for a
    warm-up request or a sample to query a served model with)."""
    for _, record in serialized_examples(file_patterns):
        return tf.train.Example.FromString(record).features.feature[names.IMAGE_PNG].bytes_list.value[0]
    raise ValueError(f"no example in the files {list(file_patterns)}")
