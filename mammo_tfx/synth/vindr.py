"""Synthetic VinDr-Mammo (PhysioNet): ``breast-level_annotations.csv``, ``finding_annotations.csv``, ``metadata.csv``
and ``images/<study_id>/<image_id>.dicom``.

One study per woman with the four screening views. Breast BI-RADS in about VinDr's proportions (mostly 1-2, some 3,
few 4-5), density mostly C; BI-RADS 3 breasts show a benign finding, 4-5 a malignant one, each boxed in
finding_annotations.csv (image pixels, x = column); breasts without findings have the release's ``['No Finding']``
row with empty box and finding BI-RADS. The official split is ``training`` (80 %) / ``test`` by study. The DICOMs
mimic the three vendors of the release: MONOCHROME1 for one of them, multi-valued window tags, rescale and
pixel-padding tags, and the transfer syntax cycling through explicit little endian, RLE Lossless and JPEG 2000
Lossless (the encoders pydicom has here; JPEG-LS needs pyjpegls, which is not installed). metadata.csv is written
with DICOM attribute names as headers (its real header is not documented; the reader accepts several spellings).

Injected faults, all in one extra study: a truncated DICOM, a listed image whose file is missing, a row with an
unknown laterality, a DICOM whose Modality is not MG, a FOR PROCESSING image (excluded, not quarantined) and a
finding with no box (kept, its mask incomplete).
"""
from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
from pydicom.uid import JPEG2000Lossless

from mammo_tfx.synth.dicom_io import (DIGITAL_MAMMOGRAPHY_STORAGE, SECONDARY_CAPTURE_STORAGE, DicomIdentity,
                                      build_dicom, save_dicom)
from mammo_tfx.synth.faults import truncate_file
from mammo_tfx.synth.lesions import LesionShape
from mammo_tfx.synth.phantom import LesionRequest, PhantomRequest, quantize, render_phantom
from mammo_tfx.synth.seeding import derive_hex, derive_uid, rng_for
from mammo_tfx.synth.summary import SynthFault, SynthImage, SynthLesion, SynthSummary

LAYOUT = "vindr"
BREAST_HEADER = ("study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
                 "breast_birads", "breast_density", "split")
FINDING_HEADER = ("image_id", "study_id", "series_id", "laterality", "view_position", "height", "width",
                  "breast_birads", "breast_density", "finding_categories", "finding_birads", "xmin", "ymin", "xmax",
                  "ymax", "split")
METADATA_HEADER = ("SOP Instance UID", "Series Instance UID", "Patient's Age", "Patient's Sex", "Manufacturer",
                   "Manufacturer's Model Name", "Photometric Interpretation", "Rows", "Columns")
DIGITAL_MAMMOGRAPHY_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
BIRADS = (1, 2, 3, 4, 5)
# VinDr-Mammo's breast BI-RADS are about 67/23/5/4/1 %; 4-5 are doubled so that small sets hold positives.
BIRADS_PROBABILITIES = (0.62, 0.24, 0.06, 0.06, 0.02)
DENSITY_PROBABILITIES = (0.02, 0.13, 0.7, 0.15)  # A-D, VinDr is mostly C


@dataclasses.dataclass(frozen=True)
class _Device:
    manufacturer: str
    model: str
    size: tuple[int, int]  # rows x cols at scale 1 (a quarter of the real detector)
    bits_stored: int
    monochrome1: bool


DEVICES = (
    _Device("SIEMENS", "Mammomat Inspiration", (880, 700), 12, False),
    _Device("IMS s.r.l.", "GIOTTO IMAGE 3DL", (574, 478), 14, True),
    _Device("Planmed", "Planmed Nuance", (768, 600), 14, False),
)
TRAINING_SHARE = 0.8
FINDING_NAMES = {"mass": "Mass", "calcification": "Suspicious Calcification"}


@dataclasses.dataclass(frozen=True)
class _Scan:
    study_id: str
    image_id: str
    side: str
    view: str
    birads: int
    density: int  # 1-4
    lesions: tuple[LesionRequest, ...]
    device: _Device
    age: str  # DICOM AS ("053Y") or "" when metadata.csv leaves it blank
    split: str
    fault: str | None = None

    @property
    def relative_path(self) -> str:
        return f"images/{self.study_id}/{self.image_id}.dicom"


def birads_label(birads: int) -> int | None:
    """The default VinDr rule: BI-RADS 1-2 negative, 4-5 positive, 3 excluded (None)."""
    return None if birads == 3 else int(birads >= 4)


def _lesions_for(birads: int, rng: np.random.Generator) -> tuple[LesionRequest, ...]:
    if birads <= 2:
        return ()
    kind = "mass" if rng.random() < 0.65 else "calcification"
    return (LesionRequest(kind, birads >= 4),)


def _plan_study(seed: int, number: int) -> list[_Scan]:
    rng = rng_for(seed, LAYOUT, "study", number)
    study_id = derive_hex(seed, LAYOUT, "study", number, length=32)
    device = DEVICES[int(rng.integers(len(DEVICES)))]
    density = int(rng.choice([1, 2, 3, 4], p=DENSITY_PROBABILITIES))
    age = "" if rng.random() < 0.05 else f"{int(rng.integers(35, 80)):03d}Y"
    split = "training" if rng.random() < TRAINING_SHARE else "test"
    scans = []
    for side in ("L", "R"):
        birads = int(rng.choice(BIRADS, p=BIRADS_PROBABILITIES))
        lesions = _lesions_for(birads, rng)
        for view in ("CC", "MLO"):
            image_id = derive_hex(seed, LAYOUT, "image", number, side, view, length=32)
            scans.append(_Scan(study_id, image_id, side, view, birads, density, lesions, device, age, split))
    return scans


def _plan_faults(seed: int, number: int) -> list[_Scan]:
    study_id = derive_hex(seed, LAYOUT, "study", number, length=32)
    plan = (
        ("L", "CC", 1, (), "truncated_dicom"),
        ("L", "MLO", 1, (), "missing_image"),
        ("R", "CC", 2, (), "unknown_value"),
        ("R", "MLO", 2, (), "non_mammogram_dicom"),
        ("L", "CC", 1, (), "for_processing_dicom"),
        ("R", "CC", 4, (LesionRequest("mass", True),), "no_box_finding"),
    )
    return [_Scan(study_id, derive_hex(seed, LAYOUT, "image", number, fault, length=32), side, view, birads, 3, lesions,
                  DEVICES[0], "061Y", "training", fault)
            for side, view, birads, lesions, fault in plan]


def _box(shape: LesionShape) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) around the lesion's outline and specks, as a reader would draw it."""
    points = np.concatenate([shape.outline_xy.reshape(-1, 2), shape.speck_xy.reshape(-1, 2)])
    (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
    return float(xmin), float(ymin), float(xmax), float(ymax)


def _window_tags(stored: np.ndarray, breast_mask: np.ndarray) -> dict[str, object]:
    """Two VOI windows (multi-valued tags, as the vendors write them): the breast's grey levels, then a wider one."""
    low, high = np.percentile(stored[breast_mask], [0.5, 99.5])
    center, width = int(round((low + high) / 2)), int(max(round(high - low), 2))
    return {"WindowCenter": [str(center), str(center)], "WindowWidth": [str(width), str(int(width * 1.5))],
            "WindowCenterWidthExplanation": ["NORMAL", "HARDER"]}


def _image_tags(scan: _Scan, stored: np.ndarray, breast_mask: np.ndarray) -> dict[str, object]:
    max_value = (1 << scan.device.bits_stored) - 1
    tags: dict[str, object] = {
        "PatientID": scan.study_id[:16],
        "PatientAge": scan.age,
        "PatientSex": "F",
        "Modality": "OT" if scan.fault == "non_mammogram_dicom" else "MG",
        "PresentationIntentType": "FOR PROCESSING" if scan.fault == "for_processing_dicom" else "FOR PRESENTATION",
        "Manufacturer": scan.device.manufacturer,
        "ManufacturerModelName": scan.device.model,
        "ImageLaterality": scan.side,
        "ViewPosition": scan.view,
        "BodyPartExamined": "BREAST",
        "RescaleSlope": "1",
        "RescaleIntercept": "0",
        "RescaleType": "US",
        # The detector's background: white in MONOCHROME1.
        "PixelPaddingValue": max_value if scan.device.monochrome1 else 0,
    }
    tags.update(_window_tags(stored, breast_mask))
    return tags


def _finding_rows(scan: _Scan, shapes: tuple[LesionShape, ...]) -> list[dict[str, str]]:
    if not shapes:
        return [{"finding_categories": "['No Finding']", "finding_birads": "",
                 "xmin": "", "ymin": "", "xmax": "", "ymax": ""}]
    rows = []
    for shape in shapes:
        box = ("", "", "", "") if scan.fault == "no_box_finding" else tuple(f"{value:.2f}" for value in _box(shape))
        rows.append({"finding_categories": f"['{FINDING_NAMES[shape.kind]}']",
                     "finding_birads": f"BI-RADS {scan.birads}", **dict(zip(("xmin", "ymin", "xmax", "ymax"), box))})
    return rows


def _write_dicom(scan: _Scan, index: int, seed: int, path: str, stored: np.ndarray,
                 tags: dict[str, object]) -> None:
    sop_class = {"non_mammogram_dicom": SECONDARY_CAPTURE_STORAGE,
                 "for_processing_dicom": DIGITAL_MAMMOGRAPHY_FOR_PROCESSING}.get(scan.fault or "",
                                                                                  DIGITAL_MAMMOGRAPHY_STORAGE)
    identity = DicomIdentity(sop_class, derive_uid(seed, LAYOUT, "sop", scan.image_id),
                             derive_uid(seed, LAYOUT, "study", scan.study_id),
                             derive_uid(seed, LAYOUT, "series", scan.study_id, scan.side, scan.view))
    ds = build_dicom(stored, scan.device.bits_stored, identity, tags)
    if scan.device.monochrome1:
        ds.PhotometricInterpretation = "MONOCHROME1"
    syntax = index % 3  # explicit VR little endian, RLE Lossless, JPEG 2000 Lossless
    if syntax == 2:
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    save_dicom(ds, path, rle=syntax == 1)


def write_vindr(out_dir: str, patients: int, seed: int, inject_faults: bool, scale: float) -> SynthSummary:
    """Write ``patients`` synthetic VinDr-Mammo studies (four images each) under ``out_dir``."""
    scans = [scan for number in range(1, patients + 1) for scan in _plan_study(seed, number)]
    if inject_faults:
        scans += _plan_faults(seed, patients + 1)
    summary = SynthSummary(LAYOUT, out_dir, patients)
    breast_rows, finding_rows, metadata_rows = [], [], []
    for index, scan in enumerate(scans):
        rows, cols = scan.device.size
        size = (max(int(round(rows * scale)), 48), max(int(round(cols * scale)), 40))
        rng = rng_for(seed, LAYOUT, "image", scan.image_id)
        phantom = render_phantom(PhantomRequest(*size, scan.side, scan.view, scan.density, scan.lesions), rng)
        pixels = quantize(phantom.image, scan.device.bits_stored)
        stored = ((1 << scan.device.bits_stored) - 1 - pixels).astype(pixels.dtype) if scan.device.monochrome1 \
            else pixels
        path = os.path.join(out_dir, scan.relative_path)
        if scan.fault != "missing_image":
            _write_dicom(scan, index, seed, path, stored, _image_tags(scan, stored, phantom.breast_mask))
        if scan.fault == "truncated_dicom":
            truncate_file(path, 0.5)
        if scan.fault:
            summary.faults.append(SynthFault(path, scan.fault))
        keys = {"study_id": scan.study_id, "series_id": derive_hex(seed, LAYOUT, "series", scan.study_id, length=32),
                "image_id": scan.image_id, "laterality": "B" if scan.fault == "unknown_value" else scan.side,
                "view_position": scan.view, "height": str(size[0]), "width": str(size[1]),
                "breast_birads": f"BI-RADS {scan.birads}", "breast_density": f"DENSITY {'ABCD'[scan.density - 1]}",
                "split": scan.split}
        breast_rows.append(keys)
        finding_rows += [{**keys, **finding} for finding in _finding_rows(scan, phantom.lesions)]
        metadata_rows.append({"SOP Instance UID": scan.image_id, "Series Instance UID": keys["series_id"],
                              "Patient's Age": scan.age, "Patient's Sex": "F",
                              "Manufacturer": scan.device.manufacturer,
                              "Manufacturer's Model Name": scan.device.model,
                              "Photometric Interpretation": "MONOCHROME1" if scan.device.monochrome1 else "MONOCHROME2",
                              "Rows": str(size[0]), "Columns": str(size[1])})
        lesions = tuple(SynthLesion.from_shape(shape) for shape in phantom.lesions)
        if scan.fault == "no_box_finding":  # drawn in the pixels, but the annotation does not say where
            lesions = tuple(dataclasses.replace(lesion, center_rc=None) for lesion in lesions)
        summary.images.append(SynthImage(
            image_id=scan.image_id, patient_id=scan.study_id, files=(scan.relative_path,), laterality=scan.side,
            view=scan.view, density=scan.density, label=birads_label(scan.birads), lesions=lesions,
            height=size[0], width=size[1], source_split="train" if scan.split == "training" else "test",
            fault=scan.fault))
    for name, header, table in (("breast-level_annotations.csv", BREAST_HEADER, breast_rows),
                                ("finding_annotations.csv", FINDING_HEADER, finding_rows),
                                ("metadata.csv", METADATA_HEADER, metadata_rows)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(table)
    return summary
