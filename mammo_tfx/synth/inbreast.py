"""Synthetic INbreast: ``INbreast Release 1.0/`` with ``AllDICOMs/``, ``AllXML/`` and the semicolon ``INbreast.csv``.

DICOMs are 14-bit MONOCHROME2 named ``<FileName>_<patient hex>_MG_<L|R>_<CC|ML>_ANON.dcm``; images with findings get an
OsiriX-style plist ``AllXML/<FileName>.xml`` (ROIs with ``Point_px`` strings "(x, y)"; 1-2 points = one
calcification, more = a polygon). BI-RADS agrees with the pixels: 1 normal, 2-3 benign-looking lesions, 4a-6
malignant-looking ones.
"""
from __future__ import annotations

import dataclasses
import os
import plistlib

import numpy as np

from mammo_tfx.synth.dicom_io import DIGITAL_MAMMOGRAPHY_STORAGE, DicomIdentity, build_dicom, save_dicom
from mammo_tfx.synth.faults import truncate_file
from mammo_tfx.synth.lesions import LesionShape
from mammo_tfx.synth.phantom import LesionRequest, PhantomRequest, quantize, render_phantom
from mammo_tfx.synth.seeding import derive_hex, derive_uid, rng_for
from mammo_tfx.synth.summary import SynthFault, SynthImage, SynthLesion, SynthSummary

LAYOUT = "inbreast"
RELEASE_DIR = "INbreast Release 1.0"
CSV_HEADER = "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
BITS_STORED = 14
# Real sizes are 4084x3328 and 3328x2560 (rows x cols); scale 1.0 writes a quarter of that.
IMAGE_SIZES = ((1021, 832), (832, 640))
FULL_RESOLUTION_SPACING_MM = 0.07
BIRADS = ("1", "2", "3", "4a", "4b", "4c", "5", "6")
BIRADS_PROBABILITIES = (0.3, 0.25, 0.08, 0.08, 0.06, 0.06, 0.1, 0.07)
FILE_VIEW = {"CC": "CC", "MLO": "ML"}  # INbreast file names call the MLO view "ML"


def birads_label(birads: str) -> int | None:
    """INbreast image label: BI-RADS 1-2 negative, 4a-6 positive, 3 excluded (None)."""
    if birads in ("1", "2"):
        return 0
    if birads == "3":
        return None
    return 1


def _lesions_for(birads: str, rng: np.random.Generator) -> tuple[LesionRequest, ...]:
    """Lesions whose look matches the BI-RADS category."""
    def kind(mass_share: float) -> str:
        return "mass" if rng.random() < mass_share else "calcification"

    if birads == "1":
        return ()
    if birads == "2":
        return tuple(LesionRequest(kind(0.5), False) for _ in range(int(rng.integers(1, 3))))
    if birads == "3":
        return (LesionRequest(kind(0.7), False),)
    lesions = [LesionRequest(kind(0.55), True)]
    if rng.random() < 0.3:
        lesions.append(LesionRequest("calcification", False))
    return tuple(lesions)


@dataclasses.dataclass(frozen=True)
class _Scan:
    patient_number: int
    patient_hex: str
    file_name: str
    side: str
    view: str
    acr_text: str  # as written in the CSV: "3", " 2", "4 " or ""
    density: int  # what the pixels show (1-4), also when the CSV leaves ACR blank
    birads: str
    lesions: tuple[LesionRequest, ...]  # per breast: both views of a breast show the same lesions
    size: tuple[int, int]
    acquisition: str
    fault: str | None = None

    @property
    def dicom_name(self) -> str:
        return f"{self.file_name}_{self.patient_hex}_MG_{self.side}_{FILE_VIEW[self.view]}_ANON.dcm"


def _file_name(seed: int, used: set[str], *keys: object) -> str:
    """An unused 8-digit file name fixed by the seed (collisions are resolved by re-deriving)."""
    attempt = 0
    while True:
        name = str(20000000 + int(derive_hex(seed, LAYOUT, "file", *keys, attempt), 16) % 34000000)
        if name not in used:
            used.add(name)
            return name
        attempt += 1


def _plan_patient(seed: int, number: int, used: set[str], scale: float) -> list[_Scan]:
    rng = rng_for(seed, LAYOUT, "patient", number)
    patient_hex = derive_hex(seed, LAYOUT, "patient", number)
    rows, cols = IMAGE_SIZES[0] if rng.random() < 0.75 else IMAGE_SIZES[1]
    size = (max(int(round(rows * scale)), 48), max(int(round(cols * scale)), 40))
    density = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
    # ACR is sometimes missing or padded with spaces in the real CSV.
    acr_text = str(rng.choice(["", f" {density}", f"{density} ", str(density), str(density)], p=[0.1, 0.1, 0.1, 0.35, 0.35]))
    acquisition = f"{int(rng.integers(2008, 2011))}{int(rng.integers(1, 13)):02d}"
    sides = ["L", "R"] if rng.random() < 0.85 else [str(rng.choice(["L", "R"]))]
    scans = []
    for side in sides:
        birads = str(rng.choice(BIRADS, p=BIRADS_PROBABILITIES))
        lesions = _lesions_for(birads, rng)
        views = ["CC", "MLO"] if rng.random() < 0.9 else [str(rng.choice(["CC", "MLO"]))]
        for view in views:
            name = _file_name(seed, used, number, side, view)
            scans.append(
                _Scan(number, patient_hex, name, side, view, acr_text, density, birads, lesions, size, acquisition)
            )
    return scans


def _plan_faults(seed: int, number: int, used: set[str], scale: float) -> list[_Scan]:
    patient_hex = derive_hex(seed, LAYOUT, "patient", number)
    size = (max(int(round(IMAGE_SIZES[0][0] * scale)), 48), max(int(round(IMAGE_SIZES[0][1] * scale)), 40))
    plan = (
        ("L", "CC", "1", (), "truncated_dicom"),
        ("L", "MLO", "1", (), "non_image_dicom"),
        ("R", "CC", "4c", (LesionRequest("mass", True),), "bad_xml"),
    )
    return [
        _Scan(number, patient_hex, _file_name(seed, used, number, side, view), side, view, "2", 2, birads, lesions,
              size, "201001", fault)
        for side, view, birads, lesions, fault in plan
    ]


def _point(x: float, y: float) -> str:
    return f"({x:.6f}, {y:.6f})"


def _roi(name: str, points_xy: np.ndarray, index: int, spacing_mm: float) -> dict[str, object]:
    points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    x, y = points_xy[:, 0], points_xy[:, 1]
    # Shoelace area of the outline (0 for point ROIs), in mm^2 like the OsiriX exports.
    area_px = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))) if len(x) > 2 else 0.0
    centre = points_xy.mean(axis=0)
    return {
        "Name": name,
        "IndexInImage": index,
        "NumberOfPoints": len(points_xy),
        "Point_px": [_point(px, py) for px, py in points_xy],
        "Point_mm": [f"({px * spacing_mm:.6f}, {py * spacing_mm:.6f}, 0.000000)" for px, py in points_xy],
        "Area": area_px * spacing_mm**2,
        "Center": f"({centre[0] * spacing_mm:.6f}, {centre[1] * spacing_mm:.6f}, 0.000000)",
        "Type": 15 if len(points_xy) > 2 else 19,
    }


def annotation_plist(lesions: tuple[LesionShape, ...], spacing_mm: float) -> bytes:
    """The XML plist for one image: one "Mass" polygon per mass; one point ROI per calcification speck, plus a
    "Cluster" polygon around malignant clusters."""
    rois: list[dict[str, object]] = []
    for lesion in lesions:
        if lesion.kind == "mass":
            rois.append(_roi("Mass", lesion.outline_xy, len(rois), spacing_mm))
            continue
        for x, y in lesion.speck_xy:
            # Most single calcifications are one point; some readers clicked twice (two nearby points).
            points = [(x, y)] if len(rois) % 3 else [(x, y), (x + 0.5, y + 0.5)]
            rois.append(_roi("Calcification", np.array(points), len(rois), spacing_mm))
        if lesion.malignant:
            rois.append(_roi("Cluster", lesion.outline_xy, len(rois), spacing_mm))
    document = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": rois}]}
    return plistlib.dumps(document, fmt=plistlib.FMT_XML, sort_keys=True)


def window_tags(pixels: np.ndarray, breast_mask: np.ndarray) -> dict[str, object]:
    """A VOI window spanning the breast's grey levels, as a display station would set it."""
    low, high = np.percentile(pixels[breast_mask], [0.5, 99.5])
    return {"WindowCenter": str(int(round((low + high) / 2))), "WindowWidth": str(int(max(round(high - low), 1)))}


def write_inbreast(out_dir: str, patients: int, seed: int, inject_faults: bool, scale: float) -> SynthSummary:
    """Write ``patients`` synthetic INbreast patients under ``out_dir/INbreast Release 1.0/``."""
    release = os.path.join(out_dir, RELEASE_DIR)
    dicom_dir, xml_dir = os.path.join(release, "AllDICOMs"), os.path.join(release, "AllXML")
    os.makedirs(dicom_dir, exist_ok=True)
    os.makedirs(xml_dir, exist_ok=True)
    used: set[str] = set()
    scans = [scan for number in range(1, patients + 1) for scan in _plan_patient(seed, number, used, scale)]
    if inject_faults:
        scans += _plan_faults(seed, patients + 1, used, scale)

    summary = SynthSummary(LAYOUT, out_dir, patients)
    csv_lines = [CSV_HEADER]
    spacing_mm = FULL_RESOLUTION_SPACING_MM * 4 / scale
    for index, scan in enumerate(scans):
        rng = rng_for(seed, LAYOUT, "image", scan.file_name)
        request = PhantomRequest(*scan.size, scan.side, scan.view, scan.density, scan.lesions)
        phantom = render_phantom(request, rng)
        pixels = quantize(phantom.image, BITS_STORED)
        tags: dict[str, object] = {
            "PatientID": scan.patient_hex,
            "PatientName": f"SYNTH^INBREAST{scan.patient_number:03d}",
            "PatientBirthDate": f"19{40 + scan.patient_number % 40:02d}0101",
            "Modality": "MG",
            "ImageLaterality": scan.side,
            "ViewPosition": scan.view,
            "PixelSpacing": [f"{spacing_mm:.4f}", f"{spacing_mm:.4f}"],
            "BodyPartExamined": "BREAST",
        }
        if index % 2 == 0:
            tags.update(window_tags(pixels, phantom.breast_mask))
        identity = DicomIdentity(
            DIGITAL_MAMMOGRAPHY_STORAGE,
            derive_uid(seed, LAYOUT, "sop", scan.file_name),
            derive_uid(seed, LAYOUT, "study", scan.patient_hex),
            derive_uid(seed, LAYOUT, "series", scan.patient_hex, scan.side, scan.view),
        )
        dicom_path = os.path.join(dicom_dir, scan.dicom_name)
        body = None if scan.fault == "non_image_dicom" else pixels
        save_dicom(build_dicom(body, BITS_STORED, identity, tags), dicom_path)
        if phantom.lesions:
            xml_path = os.path.join(xml_dir, f"{scan.file_name}.xml")
            document = annotation_plist(phantom.lesions, spacing_mm)
            if scan.fault == "bad_xml":
                # Cut mid-document, as a failed copy would: the XML no longer parses.
                document = document[: len(document) // 2]
                summary.faults.append(SynthFault(xml_path, scan.fault))
            with open(xml_path, "wb") as handle:
                handle.write(document)
        if scan.fault == "truncated_dicom":
            truncate_file(dicom_path, 0.5)
        if scan.fault in ("truncated_dicom", "non_image_dicom"):
            summary.faults.append(SynthFault(dicom_path, scan.fault))

        csv_lines.append(";".join(["removed", "removed", scan.side, scan.view, scan.acquisition, scan.file_name,
                                   scan.acr_text, scan.birads]))
        summary.images.append(
            SynthImage(
                image_id=scan.file_name,
                patient_id=scan.patient_hex,
                files=(f"{RELEASE_DIR}/AllDICOMs/{scan.dicom_name}",),
                laterality=scan.side,
                view=scan.view,
                density=int(scan.acr_text) if scan.acr_text.strip() else 0,
                label=birads_label(scan.birads),
                lesions=tuple(SynthLesion.from_shape(shape) for shape in phantom.lesions),
                height=scan.size[0],
                width=scan.size[1],
                source_split="none",
                fault=scan.fault,
            )
        )
    with open(os.path.join(release, "INbreast.csv"), "w", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(csv_lines) + "\n")
    return summary
