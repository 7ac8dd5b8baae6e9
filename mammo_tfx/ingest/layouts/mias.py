"""MIAS lister: Info.txt + mdbNNN.pgm (1024x1024, 8-bit).

Circle centres have their origin at the bottom-left corner (row = height - Y). All views are MLO;
laterality is inferred from which image edge the breast touches. Patients are pairs of consecutive
numbers (mdb001 + mdb002; the publisher's notes: "each pair represents the left (even filename numbers) and right
mammograms (odd filename numbers) of a single patient"): the pair is the patient and her exam (exam_key), the pair
and the inferred laterality her breast (breast_key). The inferred side, not the file number, decides the breast,
because laterality is the image's own evidence and the examples' laterality feature must agree with the breast key.
MIAS images have a 200 micron pixel edge.
"""
from __future__ import annotations

import posixpath
import re
from typing import Iterator, Union

from mammo_tfx import storage
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import BadInputError, LesionRef, QuarantineEntry, ScanRecord, quarantined

DATASET = "mias"
PIXEL_SPACING_MM = (0.2, 0.2)
DENSITIES = {"F": 1, "G": 2, "D": 3}
CLASSES = {"CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM"}
_REFNUM = re.compile(r"^mdb(\d+)$")


def find_info_file(root: str) -> str:
    for name in ("Info.txt", "info.txt", "INFO.TXT"):
        path = storage.join(root, name)
        if storage.is_file(path):
            return path
    raise BadInputError(root, "no MIAS Info.txt here")


def parse_info_line(tokens: list[str]) -> tuple[str, int, LesionRef | None]:
    """(refnum, density, lesion or None for NORM) of one Info.txt row; ValueError says what is wrong."""
    if len(tokens) < 3:
        raise ValueError(f"expected at least REFNUM BG CLASS, got {' '.join(tokens)!r}")
    refnum, background, abnormality = tokens[0], tokens[1].upper(), tokens[2].upper()
    if not _REFNUM.match(refnum):
        raise ValueError(f"bad REFNUM {refnum!r}")
    if background not in DENSITIES:
        raise ValueError(f"bad BG {tokens[1]!r}, expected F, G or D")
    if abnormality not in CLASSES:
        raise ValueError(f"bad CLASS {tokens[2]!r}")
    if abnormality == "NORM":
        return refnum, DENSITIES[background], None
    if len(tokens) < 4 or tokens[3].upper() not in ("B", "M"):
        raise ValueError(f"CLASS {abnormality} needs SEVERITY B or M")
    kind = "calcification" if abnormality == "CALC" else "mass"
    malignant = tokens[3].upper() == "M"
    location = tokens[4:]
    if not location:
        return refnum, DENSITIES[background], LesionRef(kind=kind, malignant=malignant, outline="none")
    if len(location) != 3:
        raise ValueError(f"expected X Y RADIUS, got {' '.join(location)!r}")
    x, y, radius = (float(value) for value in location)
    return refnum, DENSITIES[background], LesionRef(
        kind=kind, malignant=malignant, outline="disc", points=((y, x),), radius=radius, y_axis_up=True)


def list_mias(root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """One record per REFNUM (rows of the same REFNUM are its lesions); bad rows quarantine their image."""
    del options
    info_path = find_info_file(root)
    folder = storage.dirname(info_path)
    try:
        lines = storage.read_text(info_path, errors="replace").splitlines()
    except OSError as error:
        raise BadInputError(info_path, f"cannot read ({type(error).__name__}: {error})") from None
    densities: dict[str, int] = {}
    lesions: dict[str, list[LesionRef]] = {}
    problems: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens or tokens[0].upper() == "REFNUM":
            continue
        refnum = tokens[0]
        lesions.setdefault(refnum, [])
        try:
            _, density, lesion = parse_info_line(tokens)
        except ValueError as error:
            problems.setdefault(refnum, f"Info.txt line {number}: {error}")
            continue
        densities.setdefault(refnum, density)
        if lesion is not None:
            lesions[refnum].append(lesion)
    for refnum, refnum_lesions in lesions.items():
        if refnum in problems:
            yield quarantined(DATASET, refnum, info_path, problems[refnum])
            continue
        number = int(_REFNUM.match(refnum).group(1))  # type: ignore[union-attr]  # validated by parse_info_line
        yield ScanRecord(
            dataset=DATASET, record_id=refnum, image_path=storage.join(folder, f"{refnum}.pgm"),
            patient_id=f"mias-pair-{(number + 1) // 2:03d}", image_id=refnum,
            label=int(any(lesion.malignant for lesion in refnum_lesions)), lesions=tuple(refnum_lesions),
            view="MLO", density=densities[refnum], infer_laterality=True, pixel_spacing_mm=PIXEL_SPACING_MM,
            mammograms_by_publisher=True)
    for name in storage.list_dir(folder):
        stem, extension = posixpath.splitext(name)
        if extension.lower() == ".pgm" and stem not in lesions:
            yield quarantined(DATASET, stem, storage.join(folder, name), "image has no row in Info.txt")
