"""Patient-grouped splits: the hash assignment, the minimums the pipeline's stages need of each split, and the check
of what an ingestion gave each split against those needs.

A patient's split comes from a fixed hash of its salted key, weighted by the configured bucket counts, so it never
changes between runs. On a small dataset the hash can leave a split without patients, or without a malignant scan;
the stages downstream cannot work then (validation, calibration and the gate need examples of both classes). So,
where a split lacks what a stage needs and another split can spare a patient that has it, that patient moves; the
hash order decides which one. A dataset's own test split stays test: such patients never move, and patients whose
scans are all in a dataset's own training split never move into test.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from mammo_tfx.options import Options

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
TEST_SPLIT = "test"
TRAIN_SOURCE_SPLIT = "train"  # a dataset's own training split (ScanRecord.source_split)

# What a patient (and a split, through its patients) can offer a stage, in the order the minimums are filled.
ANY_SCAN = "scan"
MALIGNANT = "malignant"
OTHER = "other"  # benign or normal
LOCATED_LESION = "located_lesion"  # a lesion with an outline, box or marked centre: lesion patches
PATCH_SOURCE = "patch_source"  # a located lesion or a complete mask: some patches
KINDS = (ANY_SCAN, MALIGNANT, OTHER, LOCATED_LESION, PATCH_SOURCE)
# Names of the kinds in messages, as "a split with no ...".
# Count keys (status, split, dataset) of the ingestion summary (mammo_tfx/ingest/beam_graph.py `summarise`): patients
# per split, patients the minimums moved (split "<from>><to>"), and what the ingested scans offer.
PATIENTS_KEY = "patients"
MOVED_KEY_PREFIX = "moved:"
CONTENT_KEY_PREFIX = "content:"
KIND_NAMES = {ANY_SCAN: "scan", MALIGNANT: "malignant scan", OTHER: "benign or normal scan",
              LOCATED_LESION: "scan with a located lesion", PATCH_SOURCE: "scan to sample patches from"}


@dataclasses.dataclass(frozen=True)
class SplitNeeds(Options):
    """What the stages downstream of ingestion need of each split (split names per need); empty: nothing.

    examples: splits that must hold examples. both_classes: splits that must hold malignant and other scans.
    located_lesions: splits the patch stage draws lesion patches from for training. patches: splits that must give
    some patches (a scan with a complete mask or a located lesion).
    """

    examples: Tuple[str, ...] = ()
    both_classes: Tuple[str, ...] = ()
    located_lesions: Tuple[str, ...] = ()
    patches: Tuple[str, ...] = ()
    # Split -> what reads it, for the messages (e.g. "the Evaluator and the gate judge the model on it").
    uses: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def splits(self) -> List[str]:
        """Every split with a need, in first-named order."""
        named = self.examples + self.both_classes + self.located_lesions + self.patches
        return list(dict.fromkeys(named))

    def kinds(self, split: str) -> List[str]:
        """The kinds a split needs, in KINDS order."""
        wanted = set()
        if split in self.examples:
            wanted.add(ANY_SCAN)
        if split in self.both_classes:
            wanted |= {MALIGNANT, OTHER}
        if split in self.located_lesions:
            wanted.add(LOCATED_LESION)
        if split in self.patches:
            wanted.add(PATCH_SOURCE)
        return [kind for kind in KINDS if kind in wanted]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SplitNeeds":
        return cls.from_dict(json.loads(text or "{}"))


def scan_kinds(label: int, lesion_outlines: Sequence[str], has_annotations: bool) -> Tuple[str, ...]:
    """What one listed scan offers: its class, a located lesion, and whether patches can be drawn from it (a located
    lesion, or annotations that locate every lesion so its mask is complete)."""
    located = any(outline != "none" for outline in lesion_outlines)
    complete = has_annotations and all(outline != "none" for outline in lesion_outlines)
    kinds = [ANY_SCAN, MALIGNANT if label == 1 else OTHER]
    kinds += [LOCATED_LESION] if located else []
    kinds += [PATCH_SOURCE] if located or complete else []
    return tuple(kinds)


@dataclasses.dataclass(frozen=True)
class PatientSummary:
    """One patient as the split assignment sees it: what its listed scans offer and its dataset's own splits."""

    key: str
    dataset: str
    kinds: frozenset
    source_splits: frozenset

    @property
    def pinned_to_test(self) -> bool:
        return TEST_SPLIT in self.source_splits

    @property
    def kept_out_of_test(self) -> bool:
        return set(self.source_splits) == {TRAIN_SOURCE_SPLIT}

    def may_go_to(self, split: str) -> bool:
        if self.pinned_to_test:
            return split == TEST_SPLIT
        return not (split == TEST_SPLIT and self.kept_out_of_test)


def summarise_patient(key: str, scans: Iterable[Tuple[str, str, Tuple[str, ...]]]) -> PatientSummary:
    """(dataset, source split, scan kinds) of each listed scan of a patient -> its summary."""
    scans = list(scans)
    return PatientSummary(key=key, dataset=scans[0][0], source_splits=frozenset(scan[1] for scan in scans),
                          kinds=frozenset(kind for scan in scans for kind in scan[2]))


def _hash(patient_key: str) -> int:
    # A fixed, explicit hash (not Python's salted hash()) so the split of a patient never changes between runs.
    return int(hashlib.sha256(("split:" + patient_key).encode()).hexdigest(), 16)


def assign_split(patient_key: str, split_buckets: Sequence[Tuple[str, int]]) -> str:
    """Deterministic split of a patient by hash bucket, weighted by the configured bucket counts."""
    bucket = _hash(patient_key) % sum(buckets for _, buckets in split_buckets)
    for name, buckets in split_buckets:
        if bucket < buckets:
            return name
        bucket -= buckets
    raise AssertionError("unreachable: bucket beyond the configured total")


def split_of_patient(patient: PatientSummary, split_buckets: Sequence[Tuple[str, int]]) -> str:
    """A patient with any image in its dataset's own test split goes to `test`; a patient whose images are all in
    the dataset's own training split goes to a non-test split; other patients are hashed over all splits."""
    if patient.pinned_to_test:
        return TEST_SPLIT
    if patient.kept_out_of_test:
        return assign_split(patient.key, [(n, b) for n, b in split_buckets if n != TEST_SPLIT])
    return assign_split(patient.key, split_buckets)


@dataclasses.dataclass(frozen=True)
class PatientMove:
    """A patient the minimums moved: its dataset, the splits it moved from and to, and the kind `to` lacked."""

    dataset: str
    source: str
    target: str
    kind: str


@dataclasses.dataclass(frozen=True)
class SplitAssignment:
    splits: Dict[str, str]  # patient key -> split
    moves: Tuple[PatientMove, ...] = ()

    def move_count_keys(self) -> List[Tuple[str, str, str]]:
        """Count keys (status, "<from>><to>", dataset) of the ingestion summary, one per move."""
        return [(MOVED_KEY_PREFIX + move.kind, f"{move.source}>{move.target}", move.dataset) for move in self.moves]


def assign_splits(patients: Iterable[PatientSummary], split_buckets: Sequence[Tuple[str, int]],
                  needs: SplitNeeds) -> SplitAssignment:
    """Every patient's split: the hash split, then the minimums of `needs` where the data allows them.

    For each kind a split needs (in KINDS order, splits in configured order) and lacks, the first patient in hash
    order that has the kind, may go to the split, and whose present split keeps every need it already met, moves.
    """
    patients = sorted(patients, key=lambda patient: _hash(patient.key))
    split_names = [name for name, _ in split_buckets]
    splits = {patient.key: split_of_patient(patient, split_buckets) for patient in patients}
    holding = {split: {kind: 0 for kind in KINDS} for split in split_names}
    for patient in patients:
        for kind in patient.kinds:
            holding[splits[patient.key]][kind] += 1

    def would_lose_a_need(split: str, patient: PatientSummary) -> bool:
        return any(kind in patient.kinds and holding[split][kind] == 1 for kind in needs.kinds(split))

    moves = []
    for kind in KINDS:
        for target in split_names:
            if kind not in needs.kinds(target) or holding[target][kind]:
                continue
            mover = next((patient for patient in patients
                          if kind in patient.kinds and splits[patient.key] != target and patient.may_go_to(target)
                          and not would_lose_a_need(splits[patient.key], patient)), None)
            if mover is None:
                continue
            source = splits[mover.key]
            for patient_kind in mover.kinds:
                holding[source][patient_kind] -= 1
                holding[target][patient_kind] += 1
            splits[mover.key] = target
            moves.append(PatientMove(mover.dataset, source, target, kind))
    return SplitAssignment(splits, tuple(moves))


def _per_split(summary: Mapping[str, Any], split: str) -> Dict[str, int]:
    """Patients, scans and the kinds the ingested scans of a split offer, over all datasets."""
    totals = {PATIENTS_KEY: sum(summary.get("patients", {}).get(split, {}).values()),
              ANY_SCAN: sum(summary.get("per_split", {}).get(split, {}).values())}
    for content in summary.get("split_content", {}).get(split, {}).values():
        for kind, count in content.items():
            totals[kind] = totals.get(kind, 0) + count
    return totals


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def describe_split(summary: Mapping[str, Any], split: str) -> str:
    """`eval: 2 patients, 4 scans (1 malignant, 3 benign or normal, 4 with a located lesion)`, or `eval: empty`."""
    totals = _per_split(summary, split)
    if not totals[ANY_SCAN]:
        return f"{split}: no scans" + (f" ({_count(totals[PATIENTS_KEY], 'patient')}, none ingested)"
                                       if totals[PATIENTS_KEY] else "")
    return (f"{split}: {_count(totals[PATIENTS_KEY], 'patient')}, {_count(totals[ANY_SCAN], 'scan')} ("
            f"{totals.get(MALIGNANT, 0)} "
            f"malignant, {totals.get(OTHER, 0)} benign or normal, {totals.get(LOCATED_LESION, 0)} with a located "
            "lesion)")


def describe_moves(summary: Mapping[str, Any]) -> List[str]:
    """One line per target split to which the split minimums moved patients."""
    lines = []
    for move in summary.get("moved_patients", []):
        lines.append(f"split minimums: moved {_count(move['patients'], move['dataset'] + ' patient')} from "
                     f"{move['from']} to {move['to']}, which had no {KIND_NAMES[move['for']]}")
    return lines


def _shortfall(split: str, kind: str, totals: Mapping[str, int], use: str, patients: int, needed_patients: int,
               datasets: str) -> str:
    where = f"The {split} split" + (f" ({use})" if use else "")
    if kind == ANY_SCAN:
        if patients < needed_patients:
            advice = (f"the data ({datasets}) has fewer patients than the {needed_patients} splits, each of which "
                      "needs one: add patients")
        else:
            advice = ("no other patient could move there (a dataset's own test patients stay in test, its own "
                      "training patients never go to test, and no split gives up its last patient): add patients, "
                      "or change the split sizes (splits.train, splits.eval, splits.test)")
        return f"{where} has no scans: {advice}."
    if kind in (MALIGNANT, OTHER):
        other_kind = OTHER if kind == MALIGNANT else MALIGNANT
        return (f"{where} has no {KIND_NAMES[kind]} among its {_count(totals[ANY_SCAN], 'scan')} (all "
                f"{KIND_NAMES[other_kind]}s), and the AUC of a classifier on it needs both classes: add patients with "
                f"{KIND_NAMES[kind]}s (every split needs one), or change the split sizes (splits.train, splits.eval, "
                "splits.test).")
    if kind == LOCATED_LESION:
        return (f"{where} has no {KIND_NAMES[kind]} among its {_count(totals[ANY_SCAN], 'scan')}: the patch stage "
                "learns from patches of lesions whose outline, box or centre the dataset gives (CBIS-DDSM, INbreast, "
                "MIAS and VinDr-Mammo do for some scans; RSNA and plain folders never do): add such patients.")
    return (f"{where} has no {KIND_NAMES[kind]} among its {_count(totals[ANY_SCAN], 'scan')} (no scan with a "
            "complete lesion mask or a located lesion), so the patch stage has nothing to validate on: add patients of "
            "a dataset with lesion outlines (CBIS-DDSM, INbreast, MIAS, VinDr-Mammo).")


def shortfalls(summary: Mapping[str, Any], needs: SplitNeeds) -> List[str]:
    """One sentence per (split, kind) the stages need and the ingested data does not hold, in KINDS order; a split
    without scans is one cause (its other lacks follow from it)."""
    datasets = ", ".join(
        f"{dataset} " + _count(sum(per_split.get(dataset, 0) for per_split in summary["patients"].values()), "patient")
        for dataset in sorted(summary.get("per_dataset", {})))
    patients = sum(count for per_split in summary.get("patients", {}).values() for count in per_split.values())
    needed_patients = len(needs.examples)
    causes = []
    for split in needs.splits:
        totals = _per_split(summary, split)
        for kind in needs.kinds(split):
            if totals.get(kind, 0) == 0:
                causes.append(_shortfall(split, kind, totals, needs.uses.get(split, ""), patients, needed_patients,
                                         datasets or "no datasets"))
                if kind == ANY_SCAN:
                    break
    return causes
