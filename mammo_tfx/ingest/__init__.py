"""Plain-Python ingestion: list a dataset's records, decode, resize, build examples or quarantine entries.

Typical use (the ExampleGen wraps the same calls in Beam):

    options = IngestOptions(height=1152, width=896)
    for item in LISTERS["mias"](root, options):
        result = item if isinstance(item, QuarantineEntry) else process_record(item, options)
"""
from mammo_tfx.ingest.header_rule import PUBLISHED_MAMMOGRAMS, MammogramHeaderRule
from mammo_tfx.ingest.layouts import LISTERS, list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import BadInputError, LesionRef, QuarantineEntry, ScanRecord

__all__ = ["LISTERS", "list_records", "IngestOptions", "process_record", "BadInputError", "LesionRef",
           "QuarantineEntry", "ScanRecord", "MammogramHeaderRule", "PUBLISHED_MAMMOGRAMS"]
