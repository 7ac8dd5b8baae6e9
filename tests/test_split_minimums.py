"""Small datasets: the split minimums and the check that stops a run before training (issue 29).

Fast: every layout at 1, 2, 3, 5 and 8 patients under every profile is decided from the listed records (the same
assignment and check the ExampleGen runs, over the counts an ingestion of every listed record would give). Slow
(e2e): the real ExampleGen on a few of them, and one run of the CLI that stops with the message."""
from __future__ import annotations

import collections
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.mammo_example_gen.executor import check_split_needs
from mammo_tfx import synth
from mammo_tfx.ingest.beam_graph import listed_kinds, patient_key, summarise
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import ScanRecord
from mammo_tfx.ingest.splits import (ANY_SCAN, CONTENT_KEY_PREFIX, LOCATED_LESION, MALIGNANT, OTHER, PATCH_SOURCE,
                                     PATIENTS_KEY, PatientSummary, SplitNeeds, assign_splits, describe_moves,
                                     shortfalls, split_of_patient, summarise_patient)
from pipeline.config import PROFILES, load_config
from pipeline.pipeline import split_needs
from tests.conftest import write_dicom_file

SIZES = (1, 2, 3, 5, 8)
SYNTH_LAYOUTS = ("cbis-ddsm", "inbreast", "mias", "rsna", "vindr")
LAYOUTS = SYNTH_LAYOUTS + ("folder",)
OPTIONS = IngestOptions(height=64, width=48)
NEEDS = SplitNeeds(examples=("train", "eval", "test"), both_classes=("train", "eval", "test"),
                   located_lesions=("train",), patches=("eval",))
BUCKETS = [("train", 6), ("eval", 2), ("test", 2)]


def _patient(key: str, *kinds: str, source_splits: tuple = ("none",)) -> PatientSummary:
    return PatientSummary(key=key, dataset="inbreast", kinds=frozenset((ANY_SCAN, PATCH_SOURCE) + kinds),
                          source_splits=frozenset(source_splits))


def _holding(assignment, patients, split: str, kind: str) -> bool:
    return any(assignment.splits[p.key] == split and kind in p.kinds for p in patients)


def test_without_needs_the_hash_alone_decides_and_the_order_of_the_patients_does_not_matter() -> None:
    patients = [_patient(f"p{i}", MALIGNANT if i % 3 else OTHER) for i in range(40)]
    plain = assign_splits(patients, BUCKETS, SplitNeeds())
    assert plain.moves == ()
    assert plain.splits == {p.key: split_of_patient(p, BUCKETS) for p in patients}
    assert assign_splits(patients, BUCKETS, NEEDS).splits == assign_splits(patients[::-1], BUCKETS, NEEDS).splits


def test_a_split_that_lacks_a_patient_or_a_class_gets_the_first_patient_in_hash_order_another_split_can_spare():
    # Hash-ordered keys whose hash split is train: find them rather than hard-code them.
    train_keys = [key for key in (f"k{i}" for i in range(200))
                  if split_of_patient(_patient(key), BUCKETS) == "train"][:6]
    patients = [_patient(train_keys[0], MALIGNANT, OTHER, LOCATED_LESION),
                *(_patient(key, OTHER, LOCATED_LESION) for key in train_keys[1:4]),
                *(_patient(key, MALIGNANT, LOCATED_LESION) for key in train_keys[4:6])]
    assignment = assign_splits(patients, BUCKETS, NEEDS)
    for split in ("train", "eval", "test"):
        for kind in (MALIGNANT, OTHER):
            assert _holding(assignment, patients, split, kind), (split, kind, assignment)
    assert _holding(assignment, patients, "train", LOCATED_LESION)
    assert {(move.source, move.target) for move in assignment.moves} == {("train", "eval"), ("train", "test")}
    # Each mover is the first candidate in hash order: no patient earlier in that order could have gone instead.
    assert assignment == assign_splits(list(reversed(patients)), BUCKETS, NEEDS)


def test_a_dataset_own_test_patients_never_move_and_its_own_training_patients_never_go_to_test() -> None:
    pinned = _patient("pinned", MALIGNANT, OTHER, source_splits=("test", "train"))
    train_only = [_patient(f"t{i}", MALIGNANT, OTHER, LOCATED_LESION, source_splits=("train",)) for i in range(5)]
    assignment = assign_splits([pinned, *train_only], BUCKETS, NEEDS)
    assert assignment.splits["pinned"] == "test"
    assert all(assignment.splits[p.key] != "test" for p in train_only)
    only_training = assign_splits(train_only, BUCKETS, NEEDS)
    assert "test" not in only_training.splits.values()
    summary = _summary(train_only, only_training)
    (cause,) = [c for c in shortfalls(summary, NEEDS) if c.startswith("The test split")]
    assert "no other patient could move there" in cause and "own training patients never go to test" in cause


def test_no_split_gives_up_the_last_patient_or_class_it_holds() -> None:
    patients = [_patient("a", MALIGNANT, OTHER, LOCATED_LESION), _patient("b", OTHER, LOCATED_LESION)]
    assignment = assign_splits(patients, BUCKETS, NEEDS)
    held = collections.Counter(assignment.splits.values())
    assert len(held) == 2  # two patients fill two splits at most; the third stays empty and the check says so
    causes = shortfalls(_summary(patients, assignment), NEEDS)
    assert any("has no scans: the data (inbreast 2 patients) has fewer patients than the 3 splits" in c
               for c in causes), causes


def _summary(patients, assignment, scans_per_patient: int = 1) -> dict:
    """The ingestion summary of `patients` as if every listed scan were ingested (one scan per kind set)."""
    counts = collections.Counter()
    for patient in patients:
        split = assignment.splits[patient.key]
        counts[(PATIENTS_KEY, split, patient.dataset)] += 1
        counts[("ingested", split, patient.dataset)] += scans_per_patient
        for kind in patient.kinds - {ANY_SCAN}:
            counts[(CONTENT_KEY_PREFIX + kind, split, patient.dataset)] += 1
    return summarise(list(counts.items()) + [(key, 1) for key in assignment.move_count_keys()])


def _folder_dataset(root: Path, patients: int) -> Path:
    """Plain-folder layout: per patient a normal and, for every other patient, a malignant DICOM (no outlines)."""
    for index in range(patients):
        for label, folder in ((0, "neg"), (1, "pos")):
            if label and index % 2:
                continue
            pixels = np.full((40, 30), 100 + 50 * label, np.uint16)
            write_dicom_file(root / folder / f"p{index}-{label}.dcm", pixels, PatientID=f"patient-{index}")
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[tuple[str, int], Path]:
    root = tmp_path_factory.mktemp("small")
    paths = {}
    for layout, size in itertools.product(LAYOUTS, SIZES):
        target = root / f"{layout}-{size}"
        if layout == "folder":
            paths[layout, size] = _folder_dataset(target, size)
        else:
            synth.generate(layout, target, patients=size, seed=4, scale=0.1)
            paths[layout, size] = target
    return paths


def listed_decision(sources: list[tuple[str, Path]], profile: str) -> tuple[dict, list[str]]:
    """The summary and causes of an ingestion of every listed record of the (layout, root) `sources` under
    `profile`'s splits."""
    config = load_config(profile)
    records = [r for layout, path in sources for r in list_records(layout, str(path), OPTIONS)
               if isinstance(r, ScanRecord)]
    scans = collections.defaultdict(list)
    for record in records:
        scans[patient_key(record, OPTIONS.patient_salt)].append(
            (record.dataset, record.source_split, listed_kinds(record)))
    patients = [summarise_patient(key, patient_scans) for key, patient_scans in scans.items()]
    needs = split_needs(config)
    assignment = assign_splits(patients, config.splits.buckets(), needs)
    counts = collections.Counter()
    for record in records:
        split = assignment.splits[patient_key(record, OPTIONS.patient_salt)]
        counts[("ingested", split, record.dataset)] += 1
        for kind in set(listed_kinds(record)) - {ANY_SCAN}:
            counts[(CONTENT_KEY_PREFIX + kind, split, record.dataset)] += 1
    for patient in patients:
        counts[(PATIENTS_KEY, assignment.splits[patient.key], patient.dataset)] += 1
    summary = summarise(list(counts.items()) + [(key, 1) for key in assignment.move_count_keys()])
    return summary, shortfalls(summary, needs)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_small_dataset_either_meets_every_need_or_stops_with_one_sentence_per_cause(datasets, profile):
    needs = split_needs(load_config(profile))
    decisions = {}
    for (layout, size), path in datasets.items():
        summary, causes = listed_decision([(layout, path)], profile)
        decisions[layout, size] = bool(causes)
        if not causes:
            for split in needs.splits:
                content = collections.Counter()
                for per_dataset in summary["split_content"].get(split, {}).values():
                    content.update(per_dataset)
                assert sum(summary["per_split"][split].values()) > 0
                for kind in needs.kinds(split):
                    assert kind == ANY_SCAN or content[kind] > 0, (layout, size, split, kind)
            continue
        for cause in causes:
            assert re.match(r"The (train|eval|test) split \(", cause) and cause.endswith("."), cause
            assert not re.search(r"[{}\[\]]|'\w+'", cause), cause  # a sentence, no reprs
        with pytest.raises(RuntimeError) as stop:
            check_split_needs(summary, needs, "report.csv")
        message = str(stop.value)
        assert message.startswith("MammoExampleGen: the ingested data cannot give every stage what it needs, so "
                                  "the run stops before any training.")
        assert message.count("\n  - ") == len(causes) and "docs/troubleshooting.md" in message
        assert all(f"{split}: " in message for split in ("train", "eval", "test"))
    # Datasets without lesion outlines never train; a single patient never does; 8 patients of a dataset with
    # outlines in every split do.
    assert all(decisions[layout, size] for layout in ("rsna", "folder") for size in SIZES)
    assert all(decisions[layout, 1] for layout in LAYOUTS)
    assert not decisions["cbis-ddsm", 8] or profile == "production", decisions


def test_the_minimums_are_reported_when_they_moved_patients() -> None:
    summary = summarise([(("moved:malignant", "train>eval", "mias"), 1), (("moved:scan", "train>test", "vindr"), 2)])
    assert describe_moves(summary) == [
        "split minimums: moved 1 mias patient from train to eval, which had no malignant scan",
        "split minimums: moved 2 vindr patients from train to test, which had no scan"]


@pytest.mark.e2e
def test_a_run_on_too_few_patients_stops_after_ingestion_with_the_causes(tmp_path) -> None:
    data = tmp_path / "mias"
    synth.generate("mias", data, patients=2, seed=4)
    run = subprocess.run(
        [sys.executable, "-m", "mammo_tfx.cli", "run", "--profile", "test", "--data", f"mias={data}",
         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    console = run.stdout + run.stderr
    assert run.returncode == 2, console
    assert "mammo-tfx: error: MammoExampleGen: the ingested data cannot give every stage what it needs" in console
    assert "  - The eval split (the Trainers validate on it, the export calibrates on it) has no scans" in console
    assert "Splits: train: 1 patient, " in console and "Traceback" not in console
    # Nothing ran after ingestion.
    assert "PatchSampler: started" not in console and "Trainer_patch: started" not in console


def test_patch_counts_stop_a_split_without_patches_or_a_training_split_without_lesion_patches(caplog) -> None:
    from components.patch_sampler.executor import check_patch_counts, complete_tally

    background_only = complete_tally({"background": 6, "scans": 3})
    with_lesions = complete_tally({"background": 6, "mass_malignant": 2, "scans": 3})
    check_patch_counts({"train": with_lesions, "eval": background_only}, ["train"], "examples")  # logged only
    with pytest.raises(RuntimeError, match=r"the 3 scans of split 'train' gave no lesion patches"):
        check_patch_counts({"train": background_only, "eval": with_lesions}, ["train"], "examples")
    with pytest.raises(RuntimeError, match=r"the 2 scans of split 'eval' gave no patches: none has a complete"):
        check_patch_counts({"train": with_lesions, "eval": complete_tally({"scans": 2})}, ["train"], "examples")
