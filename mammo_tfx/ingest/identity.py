"""Who and what an image shows: the patient, study, laterality and view of a scan, and the screening units (breast
and exam) it belongs to.

One home for both users: ingestion (the folder layout reads the header at listing; process.py turns the identity
into salted breast_key / exam_key) and `mammo-tfx predict` (groups a user's files into breasts and exams, showing
the raw ids, which stay on the user's machine).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
from typing import Optional

import pydicom
from pydicom.dataset import Dataset

from mammo_tfx.ingest.input_files import open_input
from mammo_tfx.ingest.layouts.naming import laterality_from_name, name_tokens, view_from_name
from mammo_tfx.ingest.phi import salted_key

_CC_VIEWS = {"CC", "XCC", "XCCL", "XCCM", "FB"}
_MLO_VIEWS = {"MLO", "ML", "LMO"}
# The header elements an identity needs (read without the pixel data).
IDENTITY_TAGS = ("PatientID", "StudyInstanceUID", "ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence")
SIDES = ("L", "R")
# A CBIS-DDSM subject (TCIA's folder name, also the DICOM PatientID of its files): the patient, side and view of one
# scan; ROI series add "_<abnormality>". Its StudyInstanceUID is one per subject, i.e. per image, so it groups nothing.
CBIS_SUBJECT = re.compile(r"(?:Calc|Mass)-(?:Training|Test)_(?P<patient>P_\d+)_(?P<side>LEFT|RIGHT)_(?P<view>CC|MLO)",
                          re.IGNORECASE)
# An INbreast file name: <file id>_<patient hex>_MG_<L|R>_<view>_ANON.dcm.
INBREAST_DICOM_NAME = re.compile(
    r"^(?P<file>[^_]+)_(?P<patient>[0-9A-Fa-f]+)_MG_(?P<side>[LR])_(?P<view>CC|MLO|ML)_ANON\.dcm$", re.IGNORECASE)
# An RSNA screening file: train_images/<patient_id>/<image_id>.dcm, both numbers.
_RSNA_FILE = re.compile(r"^\d+$")
_VIEW_NAMES = {"CC": "CC", "MLO": "MLO", "ML": "MLO"}
# Separates the parts of a unit identifier before it is hashed: a control character no id contains, so
# ("ab", "c") and ("a", "bc") never meet.
_PART_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class ImageIdentity:
    """What a DICOM header says about an image; "" (or "U" / "UNKNOWN") where it says nothing."""

    patient_id: str = ""
    study_id: str = ""
    laterality: str = "U"
    view: str = "UNKNOWN"


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def dicom_laterality(ds: Dataset) -> Optional[str]:
    """"L" or "R" from ImageLaterality, else the series' Laterality; None when neither says."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(ds, keyword).upper()
        if value in SIDES:
            return value
    return None


def dicom_view(ds: Dataset) -> Optional[str]:
    """"CC" or "MLO" from ViewPosition, else the ViewCodeSequence's meaning; None when neither says."""
    position = _text(ds, "ViewPosition").upper()
    if position in _CC_VIEWS:
        return "CC"
    if position in _MLO_VIEWS:
        return "MLO"
    codes = ds.get("ViewCodeSequence")
    if codes:
        meaning = str(codes[0].get("CodeMeaning", "")).lower().replace("-", "").replace(" ", "")
        if "craniocaudal" in meaning:
            return "CC"
        if "mediolateraloblique" in meaning:
            return "MLO"
    return None


def dicom_identity(ds: Dataset) -> ImageIdentity:
    """The identity a parsed DICOM header gives. A CBIS-DDSM PatientID (its subject name) names the patient, side
    and view of the scan: the patient is its P_<number>, and its per-image study is dropped."""
    identity = ImageIdentity(patient_id=_text(ds, "PatientID"), study_id=_text(ds, "StudyInstanceUID"),
                             laterality=dicom_laterality(ds) or "U", view=dicom_view(ds) or "UNKNOWN")
    subject = cbis_subject(identity.patient_id)
    if subject is None:
        return identity
    return _filled(replace(subject, laterality=identity.laterality, view=identity.view), subject)


def cbis_subject(text: str) -> Optional[ImageIdentity]:
    """Patient (P_<number>), side and view of the first CBIS-DDSM subject name in text; None without one."""
    subject = CBIS_SUBJECT.search(text)
    if subject is None:
        return None
    return ImageIdentity(patient_id=subject.group("patient").upper(), laterality=subject.group("side")[0].upper(),
                         view=subject.group("view").upper())


def read_dicom_identity(path: str) -> Optional[ImageIdentity]:
    """The identity from a file's DICOM header (pixel data not read), local or in a bucket; None for a file that is
    not a readable DICOM (a PNG, a broken file: whoever decodes it later reports the real problem)."""
    try:
        with open_input(path) as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=list(IDENTITY_TAGS))
    except Exception:  # noqa: BLE001 - pydicom raises many types for non-DICOM input; all mean "no header"
        return None
    return dicom_identity(ds)


def name_identity(path: str) -> Optional[ImageIdentity]:
    """The identity file-name tokens give, None when they name no patient. Rules, first match wins:
      CBIS-DDSM: a `<Calc|Mass>-<Training|Test>_P_<n>_<LEFT|RIGHT>_<CC|MLO>` part anywhere in the path;
      INbreast: `<file>_<patient hex>_MG_<L|R>_<view>_ANON.dcm`;
      RSNA: `<patient number>/<image number>.dcm` (laterality and view are left to the DICOM header);
      otherwise a side token (L, R, LEFT, RIGHT, or LCC-style) in the file's stem: the stem's other tokens, less
      the view, are the patient (`case7_LEFT_CC.png` -> patient CASE7).
    """
    normalised = path.replace("\\", "/")
    subject = cbis_subject(normalised)
    if subject is not None:
        return subject
    name = posixpath.basename(normalised)
    inbreast = INBREAST_DICOM_NAME.match(name)
    if inbreast is not None:
        return ImageIdentity(patient_id=inbreast.group("patient"), laterality=inbreast.group("side").upper(),
                             view=_VIEW_NAMES[inbreast.group("view").upper()])
    stem = posixpath.splitext(name)[0]
    folder = posixpath.basename(posixpath.dirname(normalised))
    if _RSNA_FILE.match(stem) and _RSNA_FILE.match(folder):
        return ImageIdentity(patient_id=folder)
    laterality = laterality_from_name(stem)
    if laterality not in SIDES:
        return None
    rest = [token for token in name_tokens(stem) if not _is_side_or_view(token)]
    if not rest:
        return None
    return ImageIdentity(patient_id="_".join(rest), laterality=laterality, view=view_from_name(stem))


def _is_side_or_view(token: str) -> bool:
    return token in ("L", "R", "LEFT", "RIGHT") or token in _VIEW_NAMES or (
        token[:1] in SIDES and token[1:] in _VIEW_NAMES)


def image_identity(path: str) -> tuple[Optional[ImageIdentity], str]:
    """(identity, source) of an image file for grouping a user's files: the DICOM header first (read_dicom_identity),
    its gaps (no patient or study, no laterality, no view) filled from the file name (name_identity, or the side and
    view tokens of the file's stem); source says where the patient came from ("DICOM header", "file name") and is ""
    with identity None when neither names one."""
    header = read_dicom_identity(path)
    from_name = name_identity(path)
    stem = posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0]
    named = from_name or ImageIdentity(laterality=laterality_from_name(stem), view=view_from_name(stem))
    if header is not None and (header.patient_id or header.study_id):
        return _filled(header, named), "DICOM header"
    if from_name is None:
        return None, ""
    # The name names the patient; a header without ids may still know the side and view.
    return (_filled(replace(from_name, laterality=header.laterality, view=header.view), from_name)
            if header is not None else from_name), "file name"


def _filled(first: ImageIdentity, second: ImageIdentity) -> ImageIdentity:
    """first, its unknown laterality and view taken from second."""
    return replace(first, laterality=first.laterality if first.laterality in SIDES else second.laterality,
                   view=first.view if first.view != "UNKNOWN" else second.view)


def exam_id(patient_id: str, study_id: str = "") -> str:
    """A human-readable exam id: `<patient>/<study>`, or `<patient>` for a dataset with one exam per patient."""
    return f"{patient_id}/{study_id}" if study_id else patient_id


def breast_id(patient_id: str, study_id: str, laterality: str) -> str:
    """A human-readable breast id: `<patient>/<study>/<L|R>` (`<patient>/<L|R>` without a study)."""
    if laterality not in SIDES:
        raise ValueError(f"a breast needs laterality L or R, got {laterality!r}")
    return f"{exam_id(patient_id, study_id)}/{laterality}"


@dataclass(frozen=True)
class UnitKeys:
    """The salted keys of a scan's breast and exam, and whether the scan could be placed in them."""

    breast_key: str
    exam_key: str
    own_breast: bool  # laterality unknown (or no exam known): the scan is a breast of its own
    own_exam: bool  # no patient or study known: the scan is an exam of its own


def unit_keys(salt: str, dataset: str, patient_id: str, study_id: str, laterality: str, image_id: str,
              exam_known: bool = True) -> UnitKeys:
    """breast_key = hash(dataset, patient, study, laterality); exam_key = hash(dataset, patient, study).

    Call with the FINAL laterality (after DICOM tags and inference). An image whose laterality is not L or R cannot
    be placed in a breast: its breast is keyed by the image (it still belongs to its exam). Without a known exam
    (exam_known False: the layout knows no patient or study of this image) the image is its own exam and breast.
    The raw ids go into the hash only."""
    if not exam_known:
        own = salted_key(salt, dataset, _PART_SEPARATOR.join(("image-exam", image_id)))
        return UnitKeys(breast_key=salted_key(salt, dataset, _PART_SEPARATOR.join(("image-breast", image_id))),
                        exam_key=own, own_breast=True, own_exam=True)
    if not patient_id:
        raise ValueError(f"empty patient id for the exam key of {dataset} image {image_id!r}")
    exam_key = salted_key(salt, dataset, _PART_SEPARATOR.join(("exam", patient_id, study_id)))
    if laterality in SIDES:
        breast_key = salted_key(salt, dataset, _PART_SEPARATOR.join(("breast", patient_id, study_id, laterality)))
        return UnitKeys(breast_key=breast_key, exam_key=exam_key, own_breast=False, own_exam=False)
    breast_key = salted_key(salt, dataset, _PART_SEPARATOR.join(("image-breast", image_id)))
    return UnitKeys(breast_key=breast_key, exam_key=exam_key, own_breast=True, own_exam=False)
