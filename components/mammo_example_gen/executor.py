"""Executor of MammoExampleGen: runs the Beam graph of `mammo_tfx.ingest.beam_graph`, writes each split with
`mammo_tfx.ingest.tfrecord_files`, keeps the quarantine report and sets the artifacts' counts."""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import utils as example_gen_utils, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from mammo_tfx.ingest.beam_graph import OWN_BREAST, OWN_EXAM, build_ingestion
from mammo_tfx.ingest.header_rule import describe_header_notes
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.reasons import causes_block, rule_mismatch_warnings
from mammo_tfx.ingest.splits import TEST_SPLIT, SplitNeeds, describe_moves, describe_split, shortfalls
from mammo_tfx.ingest.records import PATH_RESOLUTIONS
from mammo_tfx.ingest.salt import PatientSalt, read_patient_salt, say_where_the_salt_comes_from
from mammo_tfx.ingest.tfrecord_files import WriteStoredGzipSplit
from mammo_tfx.names import INGEST_SUMMARY_FILE, QUARANTINE_FILE

# exec_properties key through which Do() hands the quarantine URI to the Beam graph built by the base class.
_QUARANTINE_URI_KEY = "_quarantine_uri"
# Exec property: folder outside the artifact folders where every execution keeps a copy of its report, because
# TFX removes the output artifacts of a failed execution, i.e. the report just when the user needs it most.
REPORTS_DIR_KEY = "reports_dir"
# Exec property: what the pipeline's stages need of each split (mammo_tfx.ingest.splits.SplitNeeds as JSON). Given,
# the split assignment fills those minimums where the data allows, and an ingestion that still cannot meet them
# stops the run here, before any training, with one sentence per cause.
SPLIT_NEEDS_KEY = "split_needs"
# Custom property of the examples: the fingerprint of the salt their keys were made with (never the salt).
SALT_FINGERPRINT_PROPERTY = "patient_salt_fingerprint"


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


def with_patient_salt(options: IngestOptions) -> tuple[IngestOptions, PatientSalt]:
    """The options with the salt read here (environment or `patient_salt_file`), after checking it is the salt the
    pipeline was built for. The salt stays in memory: the Beam graph's functions carry it to the workers."""
    salt = read_patient_salt(options.patient_salt_file)
    if options.patient_salt_fingerprint and options.patient_salt_fingerprint != salt.fingerprint:
        raise ValueError(
            f"MammoExampleGen: the patient-key salt read from {salt.source} has the fingerprint {salt.fingerprint}, "
            f"but this pipeline was built for the salt with the fingerprint {options.patient_salt_fingerprint}. "
            "Give this step the same salt as where the pipeline was built or compiled (docs/patient-salt.md), or "
            "rebuild it for the new salt")
    say_where_the_salt_comes_from(salt, logging.getLogger(__name__))
    return dataclasses.replace(options, patient_salt=salt.value), salt


def read_manifest(path: str) -> List[Dict[str, str]]:
    """The manifest lists the data sources: [{"dataset": layout name, "path": dataset root}, ...]."""
    with tf.io.gfile.GFile(path) as f:
        manifest = json.load(f)
    sources = manifest.get("sources")
    if not sources:
        raise ValueError(f"{path}: the manifest lists no data sources")
    return sources


def read_quarantine_rows(path: str) -> List[Dict[str, str]]:
    """The rows of a quarantine.csv (local path or bucket URI)."""
    with tf.io.gfile.GFile(path) as f:
        return list(csv.DictReader(f))


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


def _split_needs(exec_properties: Dict[str, Any]) -> SplitNeeds:
    return SplitNeeds.from_json(exec_properties.get(SPLIT_NEEDS_KEY) or "{}")


def check_split_needs(summary: Dict[str, Any], needs: SplitNeeds, report_path: str) -> None:
    """Raises, naming every cause, when the ingested splits cannot give the stages what `needs` says they need."""
    causes = shortfalls(summary, needs)
    if causes:
        raise RuntimeError(
            "MammoExampleGen: the ingested data cannot give every stage what it needs, so the run stops before any "
            "training.\n" + "".join(f"  - {cause}\n" for cause in causes)
            + "  Splits: " + "; ".join(describe_split(summary, split) for split in needs.splits) + ".\n"
            + f"  The minimum data of each profile: docs/troubleshooting.md. Ingestion report: {report_path}")


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

        options, salt = with_patient_salt(
            decode_custom_config(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY]))
        self._salt_fingerprint = salt.fingerprint
        manifest_path = os.path.join(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits[0].pattern)
        return build_ingestion(pipeline, read_manifest(manifest_path), options, split_buckets,
                               exec_properties[_QUARANTINE_URI_KEY], _split_needs(exec_properties))

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
        examples.set_string_custom_property(SALT_FINGERPRINT_PROPERTY, self._salt_fingerprint)
        rows = read_quarantine_rows(report_path)
        causes = causes_block(rows)
        mismatches = rule_mismatch_warnings(rows, summary)
        for line in mismatches:
            logging.warning("MammoExampleGen: %s", line)
        logging.info(
            "MammoExampleGen: %d records listed, %d ingested, %d quarantined, %d excluded; per split %s; report %s%s",
            summary["listed"], summary["ingested"], summary["quarantined"], summary["excluded"],
            json.dumps(summary["per_split"], sort_keys=True), report_path, causes,
        )
        for line in describe_paths(summary) + describe_units(summary) + describe_header_notes(summary) + describe_moves(summary):
            logging.info("MammoExampleGen: %s", line)
        if summary["ingested"] == 0:
            raise RuntimeError(
                "".join(line + "\n" for line in mismatches)
                + f"MammoExampleGen: none of the {summary['listed']} listed records could be ingested; "
                f"see the quarantine report {report_path}. Causes (records x reason):{causes}"
            )
        check_split_needs(summary, _split_needs(exec_properties), report_path)
