"""Writing an Examples split as GZIP TFRecords whose deflate stream stores the bytes without compressing them.

The examples' payload is PNG, i.e. already deflate-compressed: Beam's GZIP writer (zlib level 6) spends ~23 ms
per 0.85 MB example to save 0.5% (docs/benchmarks.md, Ingestion). TFX 1.16's ExampleGen only knows the
`tfrecords_gzip` file format, and every reader (TFXIO in StatisticsGen/Transform/Trainer/Evaluator, the patch
sampler, `tf.data.TFRecordDataset(..., "GZIP")`) expects gzip; a gzip member with level-0 ("stored") deflate
blocks is exactly that, so file names, formats and readers stay as they were.
"""
from __future__ import annotations

import gzip
import os
import struct
from typing import BinaryIO

import apache_beam as beam
import google_crc32c
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

from mammo_tfx.names import EXAMPLES_FILE_PREFIX, EXAMPLES_FILE_SUFFIX

# zlib level of the gzip container: 0 stores the (already PNG-compressed) payload as is.
GZIP_LEVEL = 0


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C. google_crc32c's hardware CRC: 0.1 ms per 0.85 MB example against 6 ms for Beam's
    crcmod fallback (python-snappy, which Beam prefers, is not installed)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord(handle: BinaryIO, data: bytes) -> None:
    """One TFRecord: length (uint64 LE), its masked CRC (uint32 LE), the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    handle.write(length + struct.pack("<I", _masked_crc32c(length)))
    handle.write(data)
    handle.write(struct.pack("<I", _masked_crc32c(data)))


class _GzipOverRaw(gzip.GzipFile):
    """A gzip writer over a raw Beam file handle that closes that handle too (GzipFile leaves a passed fileobj
    open, and Beam's sink closes only the handle `open` returned)."""

    def __init__(self, raw: BinaryIO, level: int):
        # No file name and mtime 0 in the header: the same examples give the same bytes.
        super().__init__(filename="", mode="wb", compresslevel=level, fileobj=raw, mtime=0)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


class _GzipTFRecordSink(filebasedsink.FileBasedSink):
    """TFRecords in a gzip container of a chosen zlib level (Beam's own sink always uses level 6)."""

    def __init__(self, file_path_prefix: str, level: int):
        super().__init__(file_path_prefix=file_path_prefix, coder=beam.coders.BytesCoder(),
                         file_name_suffix=EXAMPLES_FILE_SUFFIX, num_shards=0, shard_name_template=None,
                         mime_type="application/octet-stream",
                         compression_type=CompressionTypes.UNCOMPRESSED)
        self._level = level

    def open(self, temp_path: str) -> BinaryIO:
        return _GzipOverRaw(super().open(temp_path), self._level)

    def write_encoded_record(self, file_handle: BinaryIO, encoded_value: bytes) -> None:
        write_tfrecord(file_handle, encoded_value)


@beam.ptransform_fn
def WriteStoredGzipSplit(serialized: beam.PCollection, split_uri: str,  # noqa: N802 (Beam's naming of transforms)
                         level: int = GZIP_LEVEL) -> beam.pvalue.PDone:
    """Serialized examples -> `split_uri/data_tfrecord-NNNNN-of-MMMMM.gz`, one file per bundle, written in the stage
    that made them (no reshuffle before writing, unlike TFX's WriteSplit: a shuffle would move every multi-megabyte
    example through the runner; the Trainer shuffles its input anyway)."""
    sink = _GzipTFRecordSink(os.path.join(split_uri, EXAMPLES_FILE_PREFIX), level)
    return serialized | "Write" >> beam.io.Write(sink)
