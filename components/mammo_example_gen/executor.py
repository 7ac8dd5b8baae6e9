"""Beam executor of MammoExampleGen: list records -> decode/merge/resize -> tf.Examples + quarantine report.

Splits are decided here rather than by ExampleGen's hash partitioning, because two rules must hold together:
every image of a patient lands in one split, and a dataset's own test split (CBIS-DDSM "Test") stays test.
They are decided on the listed records, before any image is decoded: only small records cross the shuffles, and
each decoded example goes straight from decoding to its split's files (no multi-megabyte examples buffered for a
side input or sent between Beam workers).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen import utils as example_gen_utils, write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.mammo_example_gen.stored_gzip import WriteStoredGzipSplit
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.phi import salted_key
from mammo_tfx.ingest.process import process_record, scan_unit_keys
from mammo_tfx.ingest.reasons import causes_block
from mammo_tfx.ingest.records import PATH_RESOLUTIONS, QuarantineEntry, ScanRecord
from mammo_tfx import names
from mammo_tfx.names import INGEST_SUMMARY_FILE, QUARANTINE_FILE

TEST_SPLIT = "test"
QUARANTINE_COLUMNS = ("dataset", "record", "file", "status", "reason")
# exec_properties key through which Do() hands the quarantine URI to the Beam graph built by the base class.
_QUARANTINE_URI_KEY = "_quarantine_uri"
# Exec property: folder outside the artifact folders where every execution keeps a copy of its report, because
# TFX removes the output artifacts of a failed execution, i.e. the report just when the user needs it most.
REPORTS_DIR_KEY = "reports_dir"
_METRICS_NAMESPACE = "mammo_example_gen"
PATH_KEY_PREFIX = "path:"
# Count keys of scans that could not be placed in a breast (laterality unknown) or an exam (no patient or study known).
UNIT_KEY_PREFIX = "units:"
OWN_BREAST = "own_breast"
OWN_EXAM = "own_exam"


def encode_custom_config(options: IngestOptions) -> example_gen_pb2.CustomConfig:
    """Packs ingestion options into ExampleGen's CustomConfig (a JSON string inside a Struct, so ints stay ints)."""
    config = struct_pb2.Struct()
    config.update({"ingest_options_json": json.dumps(options.to_dict(), sort_keys=True)})
    custom = example_gen_pb2.CustomConfig()
    custom.custom_config.Pack(config)
    return custom


def decode_custom_config(custom_config_json: str) -> IngestOptions:
    custom = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(custom_config_json, custom)
    config = struct_pb2.Struct()
    custom.custom_config.Unpack(config)
    return IngestOptions.from_dict(json.loads(json_format.MessageToDict(config)["ingest_options_json"]))


def read_manifest(path: str) -> List[Dict[str, str]]:
    """The manifest lists the data sources: [{"dataset": layout name, "path": dataset root}, ...]."""
    with tf.io.gfile.GFile(path) as f:
        manifest = json.load(f)
    sources = manifest.get("sources")
    if not sources:
        raise ValueError(f"{path}: the manifest lists no data sources")
    return sources


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
    QUARANTINE); for a scan that is a breast or an exam of its own, its count keys (tagged UNITS)."""

    QUARANTINE = "quarantine"
    UNITS = "units"

    def __init__(self, options: IngestOptions):
        self._options = options
        self._ingested = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "ingested")
        self._quarantined = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, "quarantined")

    def process(self, split_and_record: Tuple[str, ScanRecord]):
        split, record = split_and_record
        result = process_record(record, self._options)
        if isinstance(result, QuarantineEntry):
            self._quarantined.inc()
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, result)
        else:
            self._ingested.inc()
            for key in unit_count_keys(record, result, self._options.patient_salt):
                yield beam.pvalue.TaggedOutput(self.UNITS, key)
            yield split, record.dataset, result.SerializeToString()


def unit_count_keys(record: ScanRecord, example: tf.train.Example, salt: str) -> List[Tuple[str, str, str]]:
    """Count keys of a scan that is a breast of its own (its final laterality, read from its example, is unknown)
    and of one that is an exam of its own (its layout knows no patient or study)."""
    laterality = example.features.feature[names.LATERALITY].bytes_list.value[0].decode("utf-8")
    keys = scan_unit_keys(record, laterality, salt)
    return [(UNIT_KEY_PREFIX + name, "", record.dataset)
            for name, flagged in ((OWN_BREAST, keys.own_breast), (OWN_EXAM, keys.own_exam)) if flagged]


def patient_key(record: ScanRecord, salt: str) -> str:
    """The example's patient_key, computed from the listed record (the same salted hash ingestion writes)."""
    return salted_key(salt, record.dataset, record.patient_id)


def _bucket(patient_key: str, total: int) -> int:
    # A fixed, explicit hash (not Python's salted hash()) so the split of a patient never changes between runs.
    return int(hashlib.sha256(("split:" + patient_key).encode()).hexdigest(), 16) % total


def assign_split(patient_key: str, split_buckets: List[Tuple[str, int]]) -> str:
    """Deterministic split of a patient by hash bucket, weighted by the configured bucket counts."""
    total = sum(buckets for _, buckets in split_buckets)
    bucket = _bucket(patient_key, total)
    for name, buckets in split_buckets:
        if bucket < buckets:
            return name
        bucket -= buckets
    raise AssertionError("unreachable: bucket beyond the configured total")


def split_of_patient(
    patient_key: str, test_patients: Iterable[str], train_only_patients: Iterable[str],
    split_buckets: List[Tuple[str, int]],
) -> str:
    """A patient with any image in its dataset's own test split goes to `test`; a patient whose images are all in
    the dataset's own training split goes to a non-test split; other patients are hashed over all splits."""
    if patient_key in test_patients:
        return TEST_SPLIT
    if patient_key in train_only_patients:
        return assign_split(patient_key, [(n, b) for n, b in split_buckets if n != TEST_SPLIT])
    return assign_split(patient_key, split_buckets)


def format_quarantine_csv(entries: List[QuarantineEntry]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(QUARANTINE_COLUMNS)
    for entry in sorted(entries, key=lambda e: (e.dataset, e.record, e.file)):
        writer.writerow([getattr(entry, column) for column in QUARANTINE_COLUMNS])
    return buffer.getvalue()


def read_quarantine_rows(path: str) -> List[Dict[str, str]]:
    """The rows of a quarantine.csv (local path or bucket URI)."""
    with tf.io.gfile.GFile(path) as f:
        return list(csv.DictReader(f))


def _write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _path_count_keys(item: ScanRecord | QuarantineEntry) -> List[Tuple[str, str, str]]:
    """A listed item's path resolutions as count keys; a missing path keeps its name so the summary lists it."""
    return [(PATH_KEY_PREFIX + method, path if method == "missing" else "", item.dataset)
            for method, path in item.path_resolutions]


def _summarise(counts: List[Tuple[Tuple[str, str, str], int]]) -> Dict[str, Any]:
    """Counts keyed by (status, split, dataset) -> the summary document written beside the quarantine report.

    Keys whose status is "path:<method>" count how the listed file paths were found (per dataset "paths", and
    "missing_paths" naming the paths not found, whose split slot holds the path). Keys "units:own_breast" and
    "units:own_exam" count, per dataset ("units"), the ingested scans that are a breast (laterality unknown) or an
    exam (no patient or study known) of their own.
    """
    summary: Dict[str, Any] = {"listed": 0, "ingested": 0, "quarantined": 0, "excluded": 0,
                               "per_split": {}, "per_dataset": {}}
    for (status, split, dataset), count in counts:
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
        summary["listed"] += count
        summary[status] += count
        per_dataset[status] += count
        if status == "ingested":
            per_split = summary["per_split"].setdefault(split, {})
            per_split[dataset] = per_split.get(dataset, 0) + count
    for per_dataset in summary["per_dataset"].values():
        per_dataset.get("missing_paths", []).sort()
    return summary


def describe_paths(summary: Dict[str, Any]) -> List[str]:
    """One line per dataset whose file paths needed finding: how many were found which way, how many are missing."""
    lines = []
    for dataset, per_dataset in sorted(summary.get("per_dataset", {}).items()):
        paths = per_dataset.get("paths")
        if paths:
            lines.append(f"{dataset} file paths: " + ", ".join(
                f"{paths[method]} {method}" for method in PATH_RESOLUTIONS if paths.get(method)))
    return lines


def describe_units(summary: Dict[str, Any]) -> List[str]:
    """One line per dataset with scans that could not be placed in a breast or an exam of others."""
    lines = []
    for dataset, per_dataset in sorted(summary.get("per_dataset", {}).items()):
        units = per_dataset.get("units", {})
        parts = []
        if units.get(OWN_BREAST):
            parts.append(f"{units[OWN_BREAST]} scans with unknown laterality or exam are breasts of their own")
        if units.get(OWN_EXAM):
            parts.append(f"{units[OWN_EXAM]} scans without a patient or study id are exams of their own")
        if parts:
            lines.append(f"{dataset}: " + "; ".join(parts))
    return lines


class Executor(BaseExampleGenExecutor):
    """MammoExampleGen's executor."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        # Required by the base class; this executor builds its graph in GenerateExamplesByBeam instead.
        raise NotImplementedError("MammoExampleGen builds its Beam graph in GenerateExamplesByBeam")

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
    ) -> Dict[str, beam.pvalue.PCollection]:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        if len(input_config.splits) != 1:
            raise ValueError("MammoExampleGen reads one manifest (one input split); splits are made by patient")
        split_buckets = [(s.name, s.hash_buckets) for s in output_config.split_config.splits]
        if TEST_SPLIT not in dict(split_buckets):
            raise ValueError("MammoExampleGen needs output_config.split_config with a 'test' split and others")

        options = decode_custom_config(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY])
        manifest_path = os.path.join(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern)
        sources = read_manifest(manifest_path)
        quarantine_uri = exec_properties[_QUARANTINE_URI_KEY]

        listed = (
            pipeline
            | "Sources" >> beam.Create(sources)
            | "ListRecords" >> beam.FlatMap(_list_source, options)
        )
        records = listed | "Records" >> beam.Filter(lambda item: isinstance(item, ScanRecord))
        listing_quarantine = listed | "ListingProblems" >> beam.Filter(
            lambda item: isinstance(item, QuarantineEntry))

        salt = options.patient_salt
        patient_splits = (
            records
            | "PatientSourceSplit" >> beam.Map(lambda record: (patient_key(record, salt), record.source_split))
            | "DistinctPatientSplit" >> beam.Distinct()
        )
        test_patients = (
            patient_splits | "OwnTest" >> beam.Filter(lambda kv: kv[1] == TEST_SPLIT) | "TestKeys" >> beam.Keys()
        )
        train_only_patients = (
            patient_splits
            | "OwnSplitByPatient" >> beam.GroupByKey()
            | "OwnTrainOnly" >> beam.Filter(lambda kv: set(kv[1]) == {"train"})
            | "TrainKeys" >> beam.Keys()
        )
        processed = (
            records
            | "AssignSplit" >> beam.Map(
                lambda record, test, train_only: (
                    split_of_patient(patient_key(record, salt), test, train_only, split_buckets), record),
                test=beam.pvalue.AsList(test_patients), train_only=beam.pvalue.AsList(train_only_patients))
            # Listing runs in one worker; reshuffling the (small) records spreads the decoding over all workers.
            | "Distribute" >> beam.Reshuffle()
            | "Process" >> beam.ParDo(_ProcessRecord(options)).with_outputs(
                _ProcessRecord.QUARANTINE, _ProcessRecord.UNITS, main="examples")
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
            (example_counts, quarantine_counts, path_counts, processed[_ProcessRecord.UNITS])
            | "AllCountKeys" >> beam.Flatten()
            | "Count" >> beam.combiners.Count.PerElement()
            | "CollectCounts" >> beam.combiners.ToList()
            | "WriteSummary" >> beam.Map(
                lambda counts: _write_text(os.path.join(quarantine_uri, INGEST_SUMMARY_FILE),
                                           json.dumps(_summarise(counts), indent=2, sort_keys=True)))
        )

        return {
            name: partitions[index] | f"Serialized[{name}]" >> beam.Map(lambda sde: sde[2])
            for index, name in enumerate(split_names)
        }

    def _execution_id(self) -> str:
        """The MLMD execution id locally, the task id on Kubeflow; TFX exposes it publicly only as the last part of
        the execution's temp path. Empty when the executor is called without one (tests)."""
        try:
            return os.path.basename(os.path.normpath(self._context.get_tmp_path()))
        except (AttributeError, RuntimeError):  # no context, or a context without an id
            return ""

    def _keep_report(self, quarantine_uri: str, reports_dir: Optional[str]) -> str:
        """Copies the report and its counts to `reports_dir/<UTC time>-<execution id>/` (one folder per execution,
        so a later run never overwrites an earlier one's) and returns that folder; without `reports_dir`, the
        artifact folder itself."""
        if not reports_dir:
            return quarantine_uri
        unique_id = self._execution_id()
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + (f"-{unique_id}" if unique_id else "")
        kept = os.path.join(reports_dir, name)
        tf.io.gfile.makedirs(kept)
        for file_name in (QUARANTINE_FILE, INGEST_SUMMARY_FILE):
            tf.io.gfile.copy(os.path.join(quarantine_uri, file_name), os.path.join(kept, file_name), overwrite=True)
        return kept

    def _generate(self, input_dict, output_dict, exec_properties: Dict[str, Any]) -> None:
        """BaseExampleGenExecutor.Do, writing each split with WriteStoredGzipSplit instead of TFX's WriteSplit
        (which reshuffles every example and recompresses the PNG payload at zlib level 6): same files, names and
        artifact properties."""
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                                          example_gen_pb2.FILE_FORMAT_UNSPECIFIED)
        format_name = write_split.to_file_format_str(file_format)  # raises for any format but GZIP TFRecords
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        if payload_format not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE):
            raise ValueError(f"MammoExampleGen writes tf.Examples, not payload format {payload_format}")
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact = artifact_utils.get_single_instance(examples)
        artifact.split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config))
        with self._make_beam_pipeline() as pipeline:
            for split_name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = split | f"WriteSplit[{split_name}]" >> WriteStoredGzipSplit(
                    artifact_utils.get_split_uri(examples, split_name))
        examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(artifact, format_name)

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        quarantine = artifact_utils.get_single_instance(output_dict["quarantine"])
        exec_properties = dict(exec_properties, **{_QUARANTINE_URI_KEY: quarantine.uri})
        self._generate(input_dict, output_dict, exec_properties)

        report_dir = self._keep_report(quarantine.uri, exec_properties.get(REPORTS_DIR_KEY))
        quarantine.set_string_custom_property(REPORTS_DIR_KEY, report_dir)
        report_path = os.path.join(report_dir, QUARANTINE_FILE)
        with tf.io.gfile.GFile(os.path.join(report_dir, INGEST_SUMMARY_FILE)) as f:
            summary = json.load(f)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        for key in ("listed", "ingested", "quarantined", "excluded"):
            quarantine.set_int_custom_property(key, summary[key])
            examples.set_int_custom_property(key, summary[key])
        examples.set_string_custom_property("split_counts", json.dumps(summary["per_split"], sort_keys=True))
        causes = causes_block(read_quarantine_rows(report_path))
        logging.info(
            "MammoExampleGen: %d records listed, %d ingested, %d quarantined, %d excluded; per split %s; report %s%s",
            summary["listed"], summary["ingested"], summary["quarantined"], summary["excluded"],
            json.dumps(summary["per_split"], sort_keys=True), report_path, causes,
        )
        for line in describe_paths(summary) + describe_units(summary):
            logging.info("MammoExampleGen: %s", line)
        if summary["ingested"] == 0:
            raise RuntimeError(
                f"MammoExampleGen: none of the {summary['listed']} listed records could be ingested; "
                f"see the quarantine report {report_path}. Causes (records x reason):{causes}"
            )
