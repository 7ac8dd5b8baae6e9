"""MammoExampleGen's Beam graph: list records -> decide splits -> decode/merge/resize -> tf.Examples per split, plus
the quarantine report and the counts.

Splits are decided here rather than by ExampleGen's hash partitioning, because two rules must hold together:
every image of a patient lands in one split, and a dataset's own test split (CBIS-DDSM "Test") stays test.
They are decided on the listed records, before any image is decoded: only small records cross the shuffles, and
each decoded example goes straight from decoding to its split's files (no multi-megabyte examples buffered for a
side input or sent between Beam workers).

Everything a Beam worker runs lives in this module, which imports no TFX: a DirectRunner worker process imports what
it unpickles, and TFX's import costs ~3 CPU s per worker (docs/benchmarks.md, Ingestion).
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
import tensorflow as tf

from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.phi import salted_key
from mammo_tfx.ingest.process import process_record_noting_header, scan_unit_keys
from mammo_tfx.ingest.records import QuarantineEntry, ScanRecord
from mammo_tfx.ingest.splits import (ANY_SCAN, CONTENT_KEY_PREFIX, MOVED_KEY_PREFIX, PATIENTS_KEY, SplitNeeds,
                                     assign_splits, scan_kinds, summarise_patient)
from mammo_tfx import names
from mammo_tfx.names import INGEST_SUMMARY_FILE, QUARANTINE_FILE

QUARANTINE_COLUMNS = ("dataset", "record", "file", "status", "reason")
_METRICS_NAMESPACE = "mammo_example_gen"
PATH_KEY_PREFIX = "path:"
# Count keys of scans that could not be placed in a breast (laterality unknown) or an exam (no patient or study known).
UNIT_KEY_PREFIX = "units:"
OWN_BREAST = "own_breast"
OWN_EXAM = "own_exam"
# Count keys of ingested scans whose header the mammogram header rule accepted with a note (header_rule.HEADER_NOTES).
HEADER_KEY_PREFIX = "header:"


def _list_source(source: Dict[str, str], options: IngestOptions) -> Iterator[ScanRecord | QuarantineEntry]:
    # An unknown layout name fails the run (list_records raises here, outside the try).
    records = list_records(source["dataset"], source["path"], options)
    try:
        yield from records
    except Exception as error:  # a whole source that cannot be listed is one quarantine row, not a crashed run
        yield QuarantineEntry(
            dataset=source["dataset"], record="<dataset>", file=source["path"], status="quarantined",
            reason=f"cannot list dataset: {type(error).__name__}: {error}",
        )


class _ProcessRecord(beam.DoFn):
    """(split, record) -> (split, dataset, serialized example) (main output), or a quarantine entry (tagged
    QUARANTINE); the count keys of what the example offers the stages, and for a scan that is a breast or an exam of
    its own, its unit count keys, and for a scan whose header was accepted with a note, its note count keys
    (tagged COUNTS)."""

    QUARANTINE = "quarantine"
    COUNTS = "counts"

    def __init__(self, options: IngestOptions):
        self._options = options
        self._ingested = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "ingested")
        self._quarantined = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "quarantined")

    def process(self, split_and_record: Tuple[str, ScanRecord]):
        split, record = split_and_record
        result, header_notes = process_record_noting_header(record, self._options)
        if isinstance(result, QuarantineEntry):
            self._quarantined.inc()
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, result)
        else:
            self._ingested.inc()
            for key in (unit_count_keys(record, result, self._options.patient_salt)
                        + content_count_keys(split, record, result)
                        + [(HEADER_KEY_PREFIX + note, "", record.dataset) for note in header_notes]):
                yield beam.pvalue.TaggedOutput(self.COUNTS, key)
            yield split, record.dataset, result.SerializeToString()


def unit_count_keys(record: ScanRecord, example: tf.train.Example, salt: str) -> List[Tuple[str, str, str]]:
    """Count keys of a scan that is a breast of its own (its final laterality, read from its example, is unknown)
    and of one that is an exam of its own (its layout knows no patient or study)."""
    laterality = example.features.feature[names.LATERALITY].bytes_list.value[0].decode("utf-8")
    keys = scan_unit_keys(record, laterality, salt)
    return [(UNIT_KEY_PREFIX + name, "", record.dataset)
            for name, flagged in ((OWN_BREAST, keys.own_breast), (OWN_EXAM, keys.own_exam)) if flagged]


def content_count_keys(split: str, record: ScanRecord, example: tf.train.Example) -> List[Tuple[str, str, str]]:
    """Count keys of what an ingested scan offers the stages (mammo_tfx/ingest/splits.py KINDS but the scan
    itself, which the ingested count holds): its class, a located lesion, something to sample patches from (its
    mask as decoded: complete, or a lesion located)."""
    features = example.features.feature
    complete = bool(features[names.MASK_COMPLETE].int64_list.value[0])
    kinds = scan_kinds(features[names.LABEL].int64_list.value[0], [lesion.outline for lesion in record.lesions],
                       has_annotations=complete)
    return [(CONTENT_KEY_PREFIX + kind, split, record.dataset) for kind in kinds if kind != ANY_SCAN]


def listed_kinds(record: ScanRecord) -> Tuple[str, ...]:
    """What a listed scan is expected to offer the stages, before decoding."""
    return scan_kinds(record.label, [lesion.outline for lesion in record.lesions], record.has_annotations)


def patient_key(record: ScanRecord, salt: str) -> str:
    """The example's patient_key, computed from the listed record (the same salted hash ingestion writes)."""
    return salted_key(salt, record.dataset, record.patient_id)


def format_quarantine_csv(entries: List[QuarantineEntry]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(QUARANTINE_COLUMNS)
    for entry in sorted(entries, key=lambda e: (e.dataset, e.record, e.file)):
        writer.writerow([getattr(entry, column) for column in QUARANTINE_COLUMNS])
    return buffer.getvalue()


def _write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _path_count_keys(item: ScanRecord | QuarantineEntry) -> List[Tuple[str, str, str]]:
    """A listed item's path resolutions as count keys; a missing path keeps its name so the summary lists it."""
    return [(PATH_KEY_PREFIX + method, path if method == "missing" else "", item.dataset)
            for method, path in item.path_resolutions]


def summarise(counts: List[Tuple[Tuple[str, str, str], int]]) -> Dict[str, Any]:
    """Counts keyed by (status, split, dataset) -> the summary document written beside the quarantine report.

    Keys whose status is "path:<method>" count how the listed file paths were found (per dataset "paths", and
    "missing_paths" naming the paths not found, whose split slot holds the path). Keys "units:own_breast" and
    "units:own_exam" count, per dataset ("units"), the ingested scans that are a breast (laterality unknown) or an
    exam (no patient or study known) of their own. Keys "header:<note>" count, per dataset ("header"), the ingested
    scans whose DICOM header the mammogram header rule accepted with that note (e.g. no Modality).

    The splits (mammo_tfx/ingest/splits.py): "patients" counts patients per split and dataset, "split_content"
    what the ingested scans of each split and dataset offer the stages (malignant, other, located_lesion,
    patch_source scans), "moved_patients" the patients the split minimums moved (dataset, from, to, the kind
    the split lacked, count).
    """
    summary: Dict[str, Any] = {"listed": 0, "ingested": 0, "quarantined": 0, "excluded": 0,
                               "per_split": {}, "per_dataset": {}, "patients": {}, "split_content": {},
                               "moved_patients": []}
    for (status, split, dataset), count in counts:
        if status == PATIENTS_KEY:
            summary["patients"].setdefault(split, {})[dataset] = count
            continue
        if status.startswith(CONTENT_KEY_PREFIX):
            content = summary["split_content"].setdefault(split, {}).setdefault(dataset, {})
            content[status[len(CONTENT_KEY_PREFIX):]] = count
            continue
        if status.startswith(MOVED_KEY_PREFIX):
            source, target = split.split(">")
            summary["moved_patients"].append({"dataset": dataset, "from": source, "to": target,
                                              "for": status[len(MOVED_KEY_PREFIX):], "patients": count})
            continue
        per_dataset = summary["per_dataset"].setdefault(dataset, {"ingested": 0, "quarantined": 0, "excluded": 0})
        if status.startswith(PATH_KEY_PREFIX):
            method = status[len(PATH_KEY_PREFIX):]
            paths = per_dataset.setdefault("paths", {})
            paths[method] = paths.get(method, 0) + count
            if method == "missing":
                per_dataset.setdefault("missing_paths", []).append(split)
            continue
        if status.startswith(UNIT_KEY_PREFIX):
            units = per_dataset.setdefault("units", {})
            units[status[len(UNIT_KEY_PREFIX):]] = count
            continue
        if status.startswith(HEADER_KEY_PREFIX):
            per_dataset.setdefault("header", {})[status[len(HEADER_KEY_PREFIX):]] = count
            continue
        summary["listed"] += count
        summary[status] += count
        per_dataset[status] += count
        if status == "ingested":
            per_split = summary["per_split"].setdefault(split, {})
            per_split[dataset] = per_split.get(dataset, 0) + count
    for per_dataset in summary["per_dataset"].values():
        per_dataset.get("missing_paths", []).sort()
    summary["moved_patients"].sort(key=lambda move: (move["to"], move["for"], move["dataset"], move["from"]))
    return summary


def build_ingestion(pipeline: beam.Pipeline, sources: List[Dict[str, str]], options: IngestOptions,
                    split_buckets: List[Tuple[str, int]], quarantine_uri: str,
                    needs: SplitNeeds = SplitNeeds()) -> Dict[str, beam.pvalue.PCollection]:
    """Adds ingestion to `pipeline`: split name -> serialized examples; writes the quarantine report and the summary
    document of the counts to quarantine_uri. `needs`: what the stages need of each split, the minimums the split
    assignment fills where the data allows (none by default: the hash alone decides)."""
    listed = (
        pipeline
        | "Sources" >> beam.Create(sources)
        | "ListRecords" >> beam.FlatMap(_list_source, options)
    )
    records = listed | "Records" >> beam.Filter(lambda item: isinstance(item, ScanRecord))
    listing_quarantine = listed | "ListingProblems" >> beam.Filter(
        lambda item: isinstance(item, QuarantineEntry))

    salt = options.patient_salt
    # One small summary per patient; the assignment needs all of them at once (the minimums compare splits).
    patients = (
        records
        | "PatientScans" >> beam.Map(
            lambda record: (patient_key(record, salt), (record.dataset, record.source_split, listed_kinds(record))))
        | "ScansByPatient" >> beam.GroupByKey()
        | "SummarisePatients" >> beam.MapTuple(summarise_patient)
    )
    assignment = (
        patients
        | "AllPatients" >> beam.combiners.ToList()
        | "AssignSplits" >> beam.Map(assign_splits, split_buckets, needs)
    )
    assignment_counts = (
        patients
        | "PatientCountKeys" >> beam.Map(
            lambda patient, assigned: (PATIENTS_KEY, assigned.splits[patient.key], patient.dataset),
            assigned=beam.pvalue.AsSingleton(assignment))
    )
    move_counts = assignment | "MoveCountKeys" >> beam.FlatMap(lambda assigned: assigned.move_count_keys())
    processed = (
        records
        | "AssignSplit" >> beam.Map(
            lambda record, assigned: (assigned.splits[patient_key(record, salt)], record),
            assigned=beam.pvalue.AsSingleton(assignment))
        # Listing runs in one worker; reshuffling the (small) records spreads the decoding over all workers.
        | "Distribute" >> beam.Reshuffle()
        | "Process" >> beam.ParDo(_ProcessRecord(options)).with_outputs(
            _ProcessRecord.QUARANTINE, _ProcessRecord.COUNTS, main="examples")
    )
    examples = processed.examples
    quarantine = (
        (listing_quarantine, processed[_ProcessRecord.QUARANTINE]) | "AllQuarantine" >> beam.Flatten()
    )
    split_names = [name for name, _ in split_buckets]
    partitions = examples | "PartitionSplits" >> beam.Partition(
        lambda split_dataset_example, n: split_names.index(split_dataset_example[0]), len(split_names))

    # Quarantine report and counts, written once each.
    _ = (
        quarantine
        | "CollectQuarantine" >> beam.combiners.ToList()
        | "WriteQuarantine" >> beam.Map(
            lambda entries: _write_text(os.path.join(quarantine_uri, QUARANTINE_FILE),
                                        format_quarantine_csv(entries)))
    )
    example_counts = examples | "ExampleCountKeys" >> beam.Map(lambda sde: ("ingested", sde[0], sde[1]))
    quarantine_counts = quarantine | "QuarantineCountKeys" >> beam.Map(lambda e: (e.status, "", e.dataset))
    path_counts = listed | "PathCountKeys" >> beam.FlatMap(_path_count_keys)
    _ = (
        (example_counts, quarantine_counts, path_counts, processed[_ProcessRecord.COUNTS], assignment_counts,
         move_counts)
        | "AllCountKeys" >> beam.Flatten()
        | "Count" >> beam.combiners.Count.PerElement()
        | "CollectCounts" >> beam.combiners.ToList()
        | "WriteSummary" >> beam.Map(
            lambda counts: _write_text(os.path.join(quarantine_uri, INGEST_SUMMARY_FILE),
                                       json.dumps(summarise(counts), indent=2, sort_keys=True)))
    )

    return {
        name: partitions[index] | f"Serialized[{name}]" >> beam.Map(lambda sde: sde[2])
        for index, name in enumerate(split_names)
    }

