"""Reading back the GZIP TFRecord splits the ExampleGen writes (contract: docs/contracts.md)."""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from mammo_tfx import names


def first_image_png(file_patterns: Sequence[str]) -> bytes:
    """The encoded image of the first example in the files matching `file_patterns` (a real scan, e.g. for a
    warm-up request or a sample to query a served model with)."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(1):
        return tf.train.Example.FromString(record.numpy()).features.feature[names.IMAGE_PNG].bytes_list.value[0]
    raise ValueError(f"no example in the files {list(file_patterns)}")
