"""Quarantine rows grouped by cause, so a console line or an error message shows why records failed.

Rows of one cause differ in their variable parts (file paths, sizes, counts): those are masked in the grouping key,
so that "file not found" for 24 different DICOM paths is one group of 24. Each group keeps its first row as the
example it shows, with paths cut to their last two components.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Tuple

# An absolute path or a URI (gs://bucket/...); relative words such as "neg/" in a reason are left alone.
_PATH = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|(?<![\w.~])/)[^\s'\"(),;:]+")
# A number (or an object address such as 0x7f3a...) that is not part of a name ("uint16", "P5" stay).
_NUMBER = re.compile(r"(?<![\w.])(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?)")
# Reasons of unreadable files all start with this; the console says "file not found", not the class name.
_BAD_INPUT_PREFIX = "BadInputError: "
DEFAULT_SHOWN_GROUPS = 5


@dataclass(frozen=True)
class ReasonGroup:
    """Rows of one status and cause: how many, and the first row's reason and file as the example."""

    status: str
    reason: str
    example_file: str
    count: int

    def line(self) -> str:
        """E.g. `24 x file not found (e.g. .../Calc-Test_P_00038/000000.dcm)`."""
        status = "" if self.status == "quarantined" else f"{self.status}: "
        where = f" (e.g. {self.example_file})" if self.count > 1 else f": {self.example_file}"
        named = not self.example_file or self.example_file in self.reason  # listing errors name their folder
        return f"{self.count} x {status}{self.reason}" + ("" if named else where)


def shorten_path(path: str, keep: int = 2) -> str:
    """The last `keep` components of a path or URI, after '...', so a console line stays short."""
    parts = [part for part in path.rstrip("/").split("/") if part]
    return path if len(parts) <= keep else ".../" + "/".join(parts[-keep:])


def reason_key(reason: str) -> str:
    """The reason with its variable parts masked: paths -> <path>, numbers -> #."""
    return _NUMBER.sub("#", _PATH.sub("<path>", reason))


def _display_reason(reason: str) -> str:
    if reason.startswith(_BAD_INPUT_PREFIX):
        reason = reason[len(_BAD_INPUT_PREFIX):]
    return _PATH.sub(lambda match: shorten_path(match.group(0)), reason)


def group_reasons(rows: Iterable[Mapping[str, str]]) -> List[ReasonGroup]:
    """Quarantine rows (dicts with `status`, `reason`, `file`, as in quarantine.csv) -> groups, largest first
    (ties in order of first appearance); quarantined groups before excluded ones, which are rules, not faults."""
    counts: Dict[Tuple[str, str], int] = {}
    first: Dict[Tuple[str, str], Mapping[str, str]] = {}
    for row in rows:
        key = (row["status"], reason_key(row["reason"]))
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, row)
    groups = [ReasonGroup(status, _display_reason(first[(status, key)]["reason"]),
                          shorten_path(first[(status, key)].get("file", "")), count)
              for (status, key), count in counts.items()]
    # sorted() is stable: equal counts keep the order of first appearance.
    return sorted(groups, key=lambda group: (group.status != "quarantined", -group.count))


def format_reason_groups(groups: List[ReasonGroup], limit: int = DEFAULT_SHOWN_GROUPS) -> List[str]:
    """One line per group for the first `limit` groups, then one line for the rest."""
    lines = [group.line() for group in groups[:limit]]
    rest = groups[limit:]
    if rest:
        lines.append(f"... and {sum(g.count for g in rest)} more records of {len(rest)} other causes")
    return lines


def causes_block(rows: Iterable[Mapping[str, str]]) -> str:
    """The grouped causes of `rows` as indented lines to append to a one-line message (empty without rows)."""
    return "".join("\n  " + line for line in format_reason_groups(group_reasons(rows)))


# More than this share of a dataset's listed records left out for one reason points at the rule, not the data.
MISMATCH_SHARE = 0.5
# A setting named in a reason, e.g. "(ingest.max_source_pixels)" or "ingest.folder_requires_mammogram_header=false".
_SETTING = re.compile(r"\bingest\.[a-z_]+")


def rule_mismatch_warnings(rows: Iterable[Mapping[str, str]], summary: Mapping[str, Any]) -> List[str]:
    """A warning per dataset where one reason quarantined (or excluded) more than half of its listed records: likely
    a mismatch between the data and a rule, so the warning names the setting that governs the rule, or says that
    none does. `rows` as in quarantine.csv, `summary` the ingest summary (its per-dataset counts)."""
    rows_by_dataset: Dict[str, List[Mapping[str, str]]] = {}
    for row in rows:
        rows_by_dataset.setdefault(row["dataset"], []).append(row)
    warnings = []
    for dataset, per_dataset in sorted(summary.get("per_dataset", {}).items()):
        listed = sum(per_dataset.get(status, 0) for status in ("ingested", "quarantined", "excluded"))
        for group in group_reasons(rows_by_dataset.get(dataset, [])):
            if group.count <= MISMATCH_SHARE * listed:
                continue
            setting = _SETTING.search(group.reason)
            governs = (f"the setting that governs it is {setting.group(0)}" if setting else
                       f"no setting governs it: check that the source is what the {dataset} layout expects")
            warnings.append(f"Likely a mismatch between the data and a rule: {group.count} of the {listed} records "
                            f"listed for {dataset} were {group.status} for one reason ({group.reason}); {governs}.")
    return warnings
