"""The mammogram header rule: what a DICOM header must (not) say for the file to be used as a mammogram.

One declared rule, checked on the parsed header before any pixel is decoded, by every entry point that reads
DICOM mammograms (ingestion through `read_dicom(..., header_rule=...)`; callers with a pydicom Dataset of their own
through `MammogramHeaderRule.check`).

A header is refused (quarantined) only where it positively contradicts a mammogram: a Modality other than MG, a SOP
class of the standard that is neither a mammography/X-ray image nor a Secondary Capture (CT, MR, a structured report,
a presentation state, an encapsulated PDF, breast tomosynthesis ...), more than one frame, no pixel data. A FOR
PROCESSING image (PresentationIntentType or the SOP class says so) is excluded: its grey levels are raw detector
values, not for display, and the publishers' own tools skip them.

What is merely absent or unusual is accepted and returned as a note, which ingestion counts per dataset:
  - no Modality, no SOP class: the RSNA challenge files were re-packaged by the organisers and may carry neither;
  - a Secondary Capture: CBIS-DDSM's digitised films are stored as such;
  - a SOP class the standard does not list (a vendor's private class).
Where no publisher vouches for the files (the `folder` layout, a file handed to `predict`), `strict` additionally
requires the header to name a mammogram itself: Modality MG and a SOP class present.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pydicom.dataset import Dataset
from pydicom.uid import UID

from mammo_tfx.ingest.records import BadInputError, ExcludedInputError

# Notes: what an accepted header lacked or was (per record; counted per dataset in the ingest summary).
NO_MODALITY = "no_modality"
NO_SOP_CLASS = "no_sop_class"
SECONDARY_CAPTURE = "secondary_capture"
UNLISTED_SOP_CLASS = "unlisted_sop_class"
HEADER_NOTES = (NO_MODALITY, NO_SOP_CLASS, SECONDARY_CAPTURE, UNLISTED_SOP_CLASS)
# How a count of each note reads in the run output: "12 without Modality".
HEADER_NOTE_WORDS = {NO_MODALITY: "without Modality", NO_SOP_CLASS: "without SOP class",
                     SECONDARY_CAPTURE: "Secondary Capture", UNLISTED_SOP_CLASS: "of a SOP class the standard does not list"}

MAMMOGRAPHY_MODALITY = "MG"
# Image storage classes a 2-D mammogram is written in (PS3.4 B.5): digital mammography, breast projection (the 2-D
# views of a tomosynthesis device), and the general X-ray classes some mammography devices use (Modality MG).
_PRESENTATION_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.13.1.4",  # Breast Projection X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
})
_PROCESSING_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.13.1.5",  # Breast Projection X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
})
# Secondary Capture Image Storage and its multi-frame variants (.1 to .4 below it).
_SECONDARY_CAPTURE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"


@dataclass(frozen=True)
class MammogramHeaderRule:
    """The rule one source of files is held to.

    strict: the header must name a mammogram itself (Modality MG, a SOP class present); for files no publisher
        vouches for. Without it, only a header that contradicts a mammogram is refused.
    relaxed_by: the setting that turns `strict` off, named in the reasons it gives ("" when none does).
    """

    strict: bool
    relaxed_by: str = ""

    def check(self, ds: Dataset, path: str) -> tuple[str, ...]:
        """The notes (HEADER_NOTES) of a header this rule accepts. Raises BadInputError (quarantine) for a header
        that is no 2-D mammogram, ExcludedInputError for a FOR PROCESSING image. Reads header elements only."""
        # The SOP class first: it names what the object is (a structured report, a CT image ...).
        sop_class = _sop_class(ds)
        if sop_class and _contradicts_mammogram(sop_class):
            raise BadInputError(path, f"not a mammogram: the SOP class is {sop_class.name} ({sop_class})")
        modality = _text(ds, "Modality").upper()
        if modality and modality != MAMMOGRAPHY_MODALITY:
            raise BadInputError(path, f"not a mammogram: DICOM Modality is {modality}, expected MG")
        frames = _frames(ds)
        if frames > 1:
            raise BadInputError(path, f"not a 2-D mammogram: a multi-frame DICOM of {frames} frames")
        if "PixelData" not in ds and not ("Rows" in ds and "Columns" in ds):
            # With Rows and Columns the pixel data was cut short (a truncated file): the decoder reports that.
            raise BadInputError(path, "not an image: the DICOM has no pixel data")
        if self.strict and (not modality or not sop_class):
            missing = " and ".join(name for name, value in (("Modality", modality), ("SOP class", sop_class))
                                   if not value)
            relax = f"; {self.relaxed_by} accepts it" if self.relaxed_by else ""
            raise BadInputError(path, f"not named a mammogram by its header: DICOM {missing} missing, and no "
                                      f"publisher vouches for this source (expected Modality MG{relax})")
        if (_text(ds, "PresentationIntentType").upper() == "FOR PROCESSING"
                or sop_class in _PROCESSING_SOP_CLASSES):
            raise ExcludedInputError(path, "FOR PROCESSING image (raw detector values, says the header); only "
                                           "FOR PRESENTATION images are used")
        return _notes(modality, sop_class)


# Public datasets whose publisher states that every file is a mammogram (RSNA, VinDr-Mammo, CBIS-DDSM, INbreast).
PUBLISHED_MAMMOGRAMS = MammogramHeaderRule(strict=False)


def _text(ds: Dataset, keyword: str) -> str:
    try:
        return str(ds.get(keyword, "") or "").strip()
    except Exception:  # a corrupt element fails in pydicom's lazy value conversion: as good as absent
        return ""


def _sop_class(ds: Dataset) -> UID:
    """The dataset's SOPClassUID, else the file meta's MediaStorageSOPClassUID; UID("") when neither is there."""
    file_meta = getattr(ds, "file_meta", None)
    media = _text(file_meta, "MediaStorageSOPClassUID") if file_meta is not None else ""
    return UID(_text(ds, "SOPClassUID") or media)


def _is_secondary_capture(sop_class: str) -> bool:
    return sop_class == _SECONDARY_CAPTURE_SOP_CLASS or sop_class.startswith(_SECONDARY_CAPTURE_SOP_CLASS + ".")


def _contradicts_mammogram(sop_class: UID) -> bool:
    """A SOP class of the standard that holds something else than a 2-D X-ray image."""
    known = sop_class.type == "SOP Class"  # pydicom's registry of the standard's UIDs; private classes are not in it
    return known and not (sop_class in _PRESENTATION_SOP_CLASSES or sop_class in _PROCESSING_SOP_CLASSES
                          or _is_secondary_capture(sop_class))


def _frames(ds: Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:  # unreadable: the decoder's own header checks report it
        return 1


def _notes(modality: str, sop_class: UID) -> tuple[str, ...]:
    flagged = {NO_MODALITY: not modality, NO_SOP_CLASS: not sop_class,
               SECONDARY_CAPTURE: bool(sop_class) and _is_secondary_capture(sop_class),
               UNLISTED_SOP_CLASS: bool(sop_class) and sop_class.type != "SOP Class"}
    return tuple(note for note in HEADER_NOTES if flagged[note])


def describe_header_notes(summary: Mapping[str, Any]) -> list[str]:
    """One line per dataset of the ingest summary whose ingested DICOM headers were accepted with notes, e.g.
    `rsna DICOM headers accepted as mammograms: 12 without Modality, 12 Secondary Capture`."""
    lines = []
    for dataset, per_dataset in sorted(summary.get("per_dataset", {}).items()):
        notes = per_dataset.get("header", {})
        counted = [f"{notes[note]} {HEADER_NOTE_WORDS[note]}" for note in HEADER_NOTES if notes.get(note)]
        if counted:
            lines.append(f"{dataset} DICOM headers accepted as mammograms: " + ", ".join(counted))
    return lines
