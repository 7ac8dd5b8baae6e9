"""MammoExampleGen end to end on Beam: every layout, faults, patient-grouped splits, counts and the quarantine report."""
import csv
import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pytest

from components.mammo_example_gen.executor import read_quarantine_rows
from mammo_tfx.ingest.splits import PatientSummary, assign_split, split_of_patient
from mammo_tfx import synth
from mammo_tfx.names import INGEST_SUMMARY_FILE, QUARANTINE_FILE
from pipeline.sources import DataSource
from tests.conftest import (EXAMPLE_GEN_OPTIONS, EXAMPLE_GEN_SPLITS, feature, read_split, rewrite_dicom_tags,
                            run_executor, write_dicom_file)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    # CBIS-DDSM as the NBIA Data Retriever writes it by default: descriptive folder names and its metadata.csv.
    summaries = {
        layout: synth.generate(layout, root / layout, patients=patients, seed=3, inject_faults=True, scale=0.25,
                               download_layout="descriptive" if layout == "cbis-ddsm" else None)
        for layout, patients in (("cbis-ddsm", 10), ("inbreast", 6), ("mias", 6))
    }
    sources = [DataSource.parse(f"{layout}={root / layout}") for layout in summaries]
    examples, quarantine = run_executor(sources, str(tmp_path_factory.mktemp("out")))
    splits = {split: read_split(examples.uri, split) for split in ("train", "eval", "test")}
    with open(os.path.join(quarantine.uri, QUARANTINE_FILE)) as f:
        report = list(csv.DictReader(f))
    return summaries, examples, quarantine, splits, report


@pytest.mark.e2e
def test_every_listed_record_is_an_example_or_a_report_row(ingested):
    summaries, examples, quarantine, splits, report = ingested
    n_examples = sum(len(s) for s in splits.values())
    listed = quarantine.get_int_custom_property("listed")
    assert n_examples == quarantine.get_int_custom_property("ingested") == examples.get_int_custom_property("ingested")
    assert n_examples + len(report) == listed
    assert quarantine.get_int_custom_property("quarantined") == sum(r["status"] == "quarantined" for r in report)
    assert quarantine.get_int_custom_property("excluded") == sum(r["status"] == "excluded" for r in report)
    # Every dataset contributes examples, and every injected fault ends in the report naming its file.
    assert {feature(e, "dataset") for s in splits.values() for e in s} == {"cbis-ddsm", "inbreast", "mias"}
    reported_files = " ".join(r["file"] + " " + r["reason"] for r in report)
    for summary in summaries.values():
        for fault in summary.faults:
            assert os.path.basename(fault.path) in reported_files, fault


@pytest.mark.e2e
def test_summary_counts_how_the_cbis_ddsm_paths_were_found(ingested):
    summaries, _, quarantine, _, _ = ingested
    with open(os.path.join(quarantine.uri, INGEST_SUMMARY_FILE)) as f:
        summary = json.load(f)
    cbis = summary["per_dataset"]["cbis-ddsm"]
    root = summaries["cbis-ddsm"].out_dir
    listed_paths = set()
    for name in ("mass_case_description_train_set.csv", "mass_case_description_test_set.csv",
                 "calc_case_description_train_set.csv", "calc_case_description_test_set.csv"):
        with open(os.path.join(root, name), newline="") as f:
            listed_paths |= {row[column].strip() for row in csv.DictReader(f)
                             for column in ("image file path", "cropped image file path", "ROI mask file path")}
    # The faults leave 4 paths unresolvable: the 3 files of a row never written, and one ROI mask.
    assert cbis["paths"]["missing"] == len(cbis["missing_paths"]) == 4
    assert set(cbis["missing_paths"]) <= listed_paths
    assert set(cbis["paths"]) == {"metadata_csv", "headers", "missing"}
    assert sum(cbis["paths"].values()) == len(listed_paths)
    assert "paths" not in summary["per_dataset"]["mias"]  # MIAS names its files directly: nothing to resolve


@pytest.mark.e2e
def test_excluded_records_follow_the_inbreast_birads_rule(ingested):
    summaries, _, _, _, report = ingested
    expected = sum(1 for image in summaries["inbreast"].clean_images if image.label is None)
    excluded = [r for r in report if r["status"] == "excluded"]
    assert len(excluded) == expected
    assert all(r["dataset"] == "inbreast" for r in excluded)


@pytest.mark.e2e
def test_splits_are_grouped_by_patient_and_keep_the_dataset_test_split(ingested):
    _, _, _, splits, _ = ingested
    patients = {split: {feature(e, "patient_key") for e in examples} for split, examples in splits.items()}
    assert not patients["train"] & patients["eval"]
    assert not patients["train"] & patients["test"]
    assert not patients["eval"] & patients["test"]
    for split, examples in splits.items():
        for example in examples:
            if feature(example, "source_split") == "test":
                assert split == "test"
            if feature(example, "dataset") == "cbis-ddsm" and split == "test":
                assert feature(example, "source_split") == "test"
    assert all(splits.values()), {k: len(v) for k, v in splits.items()}


def test_split_assignment_is_deterministic_and_weighted():
    buckets = EXAMPLE_GEN_SPLITS.buckets()
    keys = [f"patient-{i}" for i in range(2000)]
    first = [assign_split(k, buckets) for k in keys]
    assert first == [assign_split(k, buckets) for k in keys]
    share_train = first.count("train") / len(first)
    assert 0.55 < share_train < 0.65
    def patient(key: str, *source_splits: str) -> PatientSummary:
        return PatientSummary(key=key, dataset="cbis-ddsm", kinds=frozenset(), source_splits=frozenset(source_splits))

    assert split_of_patient(patient("p", "test", "train"), buckets) == "test"
    assert all(split_of_patient(patient(k, "train"), buckets) != "test" for k in keys[:200])


@pytest.mark.e2e
def test_a_run_where_every_record_fails_stops_with_a_clear_error(tmp_path):
    folder = tmp_path / "broken" / "neg"
    folder.mkdir(parents=True)
    (folder / "a.dcm").write_bytes(b"not a dicom at all")
    (folder / "b.png").write_bytes(b"\x89PNG truncated")
    reports = tmp_path / "reports"
    with pytest.raises(RuntimeError, match="none of the 2 listed records could be ingested.*quarantine") as failure:
        run_executor([DataSource.parse(f"folder={tmp_path / 'broken'}")], str(tmp_path / "out"),
                     reports_dir=str(reports))
    shutil.rmtree(tmp_path / "out" / "quarantine")  # as TFX does with the outputs of a failed execution
    message = str(failure.value)
    report = re.search(r"see the quarantine report (\S+)\.", message).group(1)
    assert report.startswith(str(reports) + os.sep)
    assert sorted(row["file"] for row in read_quarantine_rows(report)) == [
        str(folder / "a.dcm"), str(folder / "b.png")]
    assert message.count("\n  1 x ") == 2, message


@pytest.mark.e2e
def test_an_oversize_header_and_a_slow_record_are_quarantined_and_the_others_ingested(tmp_path):
    root = tmp_path / "folder"
    for index, folder in enumerate(("neg", "neg", "pos", "pos")):
        write_dicom_file(root / folder / f"small{index}.dcm", np.full((40, 30), 50 * index, np.uint16),
                         PatientID=f"patient-{index}")
    # 60000 x 60000 promised over 128 bytes of pixels: 7 GB if decoding allocated it.
    rewrite_dicom_tags(write_dicom_file(root / "pos" / "oversize.dcm", np.zeros((8, 8), np.uint16)),
                       Rows=60000, Columns=60000)
    # Deliberately slow: 12 MP of ASCII PGM (a format the folder layout takes by content) parse in about 2 s, four
    # times the limit below; the small DICOMs take milliseconds.
    (root / "neg" / "slow").write_bytes(b"P2\n4000 3000\n255\n" + b"7 " * (4000 * 3000))
    options = dataclasses.replace(EXAMPLE_GEN_OPTIONS, record_timeout_s=0.5)
    examples, quarantine = run_executor([DataSource.parse(f"folder={root}")], str(tmp_path / "out"), options)
    with open(os.path.join(quarantine.uri, QUARANTINE_FILE)) as f:
        reasons = {row["record"]: row["reason"] for row in csv.DictReader(f)}
    assert set(reasons) == {"pos/oversize.dcm", "neg/slow"}
    oversize = reasons["pos/oversize.dcm"]
    assert "60000x60000x1x1" in oversize and "ingest.max_source_pixels" in oversize
    assert "RecordTimeout: not done within 0.5 s (ingest.record_timeout_s)" in reasons["neg/slow"]
    assert quarantine.get_int_custom_property("ingested") == 4
    assert sum(len(read_split(examples.uri, split)) for split in ("train", "eval", "test")) == 4
