"""Where the files a CBIS-DDSM case CSV names really are in a TCIA download.

The case CSVs name `<stem>/<study uid>/<series uid>/00000N.dcm`; what the NBIA Data Retriever writes depends on its
mode (UID folders with `1-1.dcm` files, or descriptive folders `<date>-DDSM-<5 digits>/1.000000-<description>-
<5 digits>/1-1.dcm`), possibly under `manifest-NNNN/CBIS-DDSM/`. Every mode keeps the stem (the subject folder),
so a CSV path is resolved, in this order, to:
  as_written:   a file whose last four path parts are the CSV path (the old layout, at any depth);
  metadata_csv: the retriever's metadata.csv maps the CSV's series UID to a folder; the N-th file there;
  headers:      the DICOM headers of the stem's files: the CSV's series UID and position, else the one file whose
                SeriesDescription fits (full mammogram, or ROI mask/cropped image);
and is otherwise `missing`, or `ambiguous` when a stem holds more fitting files than paths to give them to.
Files are never taken from another stem. The whole tree is listed by one walk (per-file checks are slow on
buckets); headers are read without pixel data, only for stems that need them.
"""
from __future__ import annotations

import csv
import posixpath
import re
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import pydicom

from mammo_tfx import storage
from mammo_tfx.ingest.records import BadInputError

METADATA_CSV = "metadata.csv"
ROLE_IMAGE, ROLE_ROI = "image", "roi"
_DIGITS = re.compile(r"\d+")


def normalise_header(name: Optional[str]) -> str:
    """`File Location` and `file_location` alike -> `file_location`."""
    return (name or "").strip().lower().replace(" ", "_")


def read_csv_rows(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """(normalised header, rows keyed by it) of a CSV file; BadInputError naming the file if unreadable."""
    try:
        reader = csv.DictReader(storage.text_stream(path, encoding="utf-8-sig"))
        rows = [{normalise_header(key): (value or "") for key, value in row.items()} for row in reader]
        header = [normalise_header(name) for name in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadInputError(path, f"CSV cannot be read ({type(error).__name__}: {error})") from None
    return header, rows


def _natural_key(name: str) -> tuple:
    """1-2.dcm before 1-10.dcm."""
    return tuple(int(number) for number in _DIGITS.findall(name)), name


@dataclass(frozen=True)
class Resolved:
    """One CSV path and where it was found: `file` is a full path, "" when missing or ambiguous."""

    csv_path: str
    file: str
    method: str  # one of records.PATH_RESOLUTIONS
    candidates: tuple[str, ...] = ()  # the files an ambiguous path could be


@dataclass(frozen=True)
class _Header:
    relative: str
    series_uid: str
    description: Optional[str]  # None: unreadable header or no SeriesDescription (fits any role)
    instance: int
    area: int

    def fits(self, role: str) -> bool:
        if self.description is None:
            return True
        words = self.description.lower()
        if role == ROLE_IMAGE:
            return "full" in words
        return "roi" in words or "mask" in words or "crop" in words

    def mask_likeness(self) -> tuple[bool, int]:
        """Sort key: a `ROI mask images` file, then the bigger one (masks have the image's size)."""
        return "mask" not in (self.description or "").lower(), -self.area


class DownloadIndex:
    """Every file under a CBIS-DDSM root from one walk, and the resolution of CSV paths against it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.relative_paths = [storage.relpath(info.path, root) for info in storage.walk_files(root)]
        self._files = set(self.relative_paths)
        self._by_tail: dict[str, str] = {}
        self._by_folder: dict[str, list[str]] = {}
        self._by_stem: dict[str, list[str]] = {}
        self._series_folders: dict[str, str] = {}
        self._headers: dict[str, list[_Header]] = {}
        self.problems: list[tuple[str, str]] = []  # (file, reason) of unusable metadata.csv files
        for relative in self.relative_paths:
            parts = relative.split("/")
            folder = posixpath.dirname(relative)
            self._by_folder.setdefault(folder, []).append(relative)
            if len(parts) >= 4 and parts[-1].lower().endswith(".dcm"):  # <stem>/<study>/<series>/<file>
                self._by_tail.setdefault("/".join(parts[-4:]), relative)
                self._by_stem.setdefault(parts[-4], []).append(relative)
        for files in self._by_folder.values():
            files.sort(key=lambda relative: _natural_key(posixpath.basename(relative)))
        for relative in self.relative_paths:
            if posixpath.basename(relative).lower() == METADATA_CSV:
                self._read_metadata(relative)

    def full_path(self, relative: str) -> str:
        return storage.join(self.root, *relative.split("/"))

    def find(self, names: Sequence[str]) -> dict[str, str]:
        """name -> relative path of its shallowest copy, for the names present anywhere in the tree."""
        found: dict[str, str] = {}
        for relative in sorted(self.relative_paths, key=lambda path: (path.count("/"), path)):
            found.setdefault(posixpath.basename(relative), relative)
        return {name: found[name] for name in names if name in found}

    def _read_metadata(self, relative: str) -> None:
        """series UID -> folder, from the retriever's metadata.csv (`./CBIS-DDSM/<subject>/...`, relative to it)."""
        path = self.full_path(relative)
        try:
            header, rows = read_csv_rows(path)
        except BadInputError as error:
            self.problems.append((path, error.reason))
            return
        if "series_uid" not in header or "file_location" not in header:
            self.problems.append((path, f"metadata.csv lacks a Series UID or File Location column (has {header})"))
            return
        base = posixpath.dirname(relative)
        for row in rows:
            location = row["file_location"].strip().replace("\\", "/")
            if row["series_uid"].strip() and location:
                folder = posixpath.normpath(posixpath.join(base, location)).lstrip("./")
                self._series_folders.setdefault(row["series_uid"].strip(), folder)

    # ---------------------------------------------------------------- resolution
    def resolve(self, csv_paths: Sequence[str], role: str, csv_folder: str) -> list[Resolved]:
        """Resolve the CSV paths of one full image (role image) or one ROI row (role roi: mask and crop).

        csv_folder: the folder of the CSV naming them, relative to the root. A path left missing keeps its
        location below it as its `file`, so that decoding reports it as not found the way it always has (a missing
        ROI mask quarantines its scan; a missing cropped image is not needed).
        """
        found: dict[str, Resolved] = {}
        claimed: set[str] = set()
        for csv_path in dict.fromkeys(csv_paths):
            relative, method = self._as_written(csv_path, csv_folder)
            if relative is None:
                relative, method = self._from_metadata(csv_path)
            if relative is not None and relative not in claimed:
                found[csv_path] = Resolved(csv_path, self.full_path(relative), method)
                claimed.add(relative)
        pending = [path for path in dict.fromkeys(csv_paths) if path not in found]
        for stem in dict.fromkeys(path.split("/", 1)[0] for path in pending):
            stem_paths = [path for path in pending if path.split("/", 1)[0] == stem]
            found.update(self._from_headers(stem, stem_paths, role, claimed))
        return [found.get(path) or Resolved(path, self.full_path(_below(csv_folder, path)), "missing")
                for path in dict.fromkeys(csv_paths)]

    def _as_written(self, csv_path: str, csv_folder: str) -> tuple[Optional[str], str]:
        """Below the CSV's folder, or, for the old layout moved deeper, wherever its last four parts stand."""
        below = _below(csv_folder, csv_path)
        return (below if below in self._files else self._by_tail.get(csv_path)), "as_written"

    def _from_metadata(self, csv_path: str) -> tuple[Optional[str], str]:
        parts = csv_path.split("/")
        if len(parts) != 4 or parts[2] not in self._series_folders:
            return None, "metadata_csv"
        folder = self._series_folders[parts[2]]
        # Never across scans: the folder must belong to the CSV path's own stem.
        if parts[0] not in folder.split("/"):
            return None, "metadata_csv"
        return _nth(self._by_folder.get(folder, []), parts[3]), "metadata_csv"

    def _from_headers(self, stem: str, csv_paths: list[str], role: str, claimed: set[str]) -> dict[str, Resolved]:
        headers = self._stem_headers(stem)
        found: dict[str, Resolved] = {}
        for csv_path in csv_paths:  # the CSV's series UID in the headers, the file by its position in the series
            parts = csv_path.split("/")
            series = [header for header in headers
                      if len(parts) == 4 and header.series_uid == parts[2] and header.relative not in claimed]
            series.sort(key=lambda header: (header.instance, _natural_key(posixpath.basename(header.relative))))
            relative = _nth([header.relative for header in series], parts[-1])
            if relative is not None:
                found[csv_path] = Resolved(csv_path, self.full_path(relative), "headers")
                claimed.add(relative)
        remaining = [path for path in csv_paths if path not in found]
        candidates = sorted((header for header in headers if header.fits(role) and header.relative not in claimed),
                            key=_Header.mask_likeness)
        if remaining and len(candidates) > len(remaining):
            names = tuple(self.full_path(header.relative) for header in candidates)
            return {**found, **{path: Resolved(path, "", "ambiguous", names) for path in remaining}}
        if role == ROLE_ROI and all("crop" in (header.description or "").lower() for header in candidates):
            remaining.reverse()  # only `cropped images` left: they go to the crop column (listed second) first
        for csv_path, header in zip(remaining, candidates):  # mask column first gets the mask-like file
            found[csv_path] = Resolved(csv_path, self.full_path(header.relative), "headers")
            claimed.add(header.relative)
        return found

    def _stem_headers(self, stem: str) -> list[_Header]:
        if stem not in self._headers:
            self._headers[stem] = [self._read_header(relative) for relative in self._by_stem.get(stem, [])]
        return self._headers[stem]

    def _read_header(self, relative: str) -> _Header:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a truncated file is reported when it is decoded, not here
                with storage.open_binary(self.full_path(relative)) as handle:
                    ds = pydicom.dcmread(handle, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - an unreadable header fits any role; decoding names its problem
            return _Header(relative, "", None, 0, 0)
        description = str(ds.get("SeriesDescription", "")).strip() or None
        instance = ds.get("InstanceNumber", 0)
        return _Header(relative, str(ds.get("SeriesInstanceUID", "")), description,
                       int(instance) if str(instance).strip().lstrip("-").isdigit() else 0,
                       int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0))


def _below(folder: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(folder, path))


def _nth(files: Sequence[str], csv_name: str) -> Optional[str]:
    """The file a CSV name (`000001.dcm` = the second image of its series) stands for among a series' files:
    the same name if present, else the one at that position (`1-2.dcm`)."""
    for relative in files:
        if posixpath.basename(relative) == csv_name:
            return relative
    digits = posixpath.splitext(csv_name)[0]
    position = int(digits) if digits.isdigit() else -1
    return files[position] if 0 <= position < len(files) else None
