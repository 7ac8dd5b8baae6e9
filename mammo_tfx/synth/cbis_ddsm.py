"""Synthetic CBIS-DDSM: the DICOM tree of the TCIA download plus the four case-description CSVs.

Layout and quirks follow the real release (see docs/contracts.md and the seed notes, "Dataset formats"):
one case folder per (lesion type, split, patient, side, view) holding the full image, one ROI folder per
abnormality holding the binary mask and the cropped lesion, paths in the CSVs relative to the download folder,
a trailing newline in every "ROI mask file path", a row whose mask/crop paths are swapped, a mask a few pixels
off its image's size, and a few RLE-compressed full images.
"""
from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from mammo_tfx.synth.dicom_io import SECONDARY_CAPTURE_STORAGE, DicomIdentity, build_dicom, save_dicom
from mammo_tfx.synth.faults import truncate_file
from mammo_tfx.synth.lesions import LesionShape
from mammo_tfx.synth.phantom import LesionRequest, PhantomRequest, lesion_mask, quantize, render_phantom
from mammo_tfx.synth.seeding import derive_uid, rng_for
from mammo_tfx.synth.summary import SynthFault, SynthImage, SynthLesion, SynthSummary

LAYOUT = "cbis-ddsm"
DEFAULT_ROWS = 1600

MASS_HEADER = (
    "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,"
    "mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path"
).split(",")
CALC_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,calc type,"
    "calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path"
).split(",")
CSV_FILES = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calcification", "train"): "calc_case_description_train_set.csv",
    ("calcification", "test"): "calc_case_description_test_set.csv",
}
FOLDER_PREFIX = {
    ("mass", "train"): "Mass-Training",
    ("mass", "test"): "Mass-Test",
    ("calcification", "train"): "Calc-Training",
    ("calcification", "test"): "Calc-Test",
}
SIDE_NAMES = {"L": "LEFT", "R": "RIGHT"}

# Radiologist descriptors consistent with how the lesion is drawn (benign, malignant).
MASS_SHAPES = (("OVAL", "ROUND", "LOBULATED"), ("IRREGULAR", "LOBULATED", "IRREGULAR-ARCHITECTURAL_DISTORTION"))
MASS_MARGINS = (("CIRCUMSCRIBED", "OBSCURED"), ("SPICULATED", "ILL_DEFINED", "MICROLOBULATED"))
CALC_TYPES = (
    ("ROUND_AND_REGULAR", "PUNCTATE", "LUCENT_CENTER", "COARSE"),
    ("PLEOMORPHIC", "FINE_LINEAR_BRANCHING", "AMORPHOUS", "PUNCTATE-PLEOMORPHIC"),
)
CALC_DISTRIBUTIONS = (("CLUSTERED", "REGIONAL", "DIFFUSELY_SCATTERED"), ("CLUSTERED", "LINEAR", "SEGMENTAL"))


@dataclasses.dataclass(frozen=True)
class _Abnormality:
    """One abnormality of a breast; it shows on every view of that breast."""

    kind: str
    pathology: str
    descriptors: tuple[str, str]
    assessment: int
    subtlety: int

    @property
    def malignant(self) -> bool:
        return self.pathology == "MALIGNANT"


@dataclasses.dataclass(frozen=True)
class _Scan:
    patient_id: str
    split: str
    side: str  # "L" / "R"
    view: str
    density: int
    abnormalities: tuple[_Abnormality, ...]
    fault: str | None = None

    @property
    def image_id(self) -> str:
        return f"{self.patient_id}_{SIDE_NAMES[self.side]}_{self.view}"

    def folder(self, kind: str) -> str:
        return f"{FOLDER_PREFIX[(kind, self.split)]}_{self.image_id}"


def _plan_abnormality(rng: np.random.Generator) -> _Abnormality:
    kind = "mass" if rng.random() < 0.5 else "calcification"
    malignant = rng.random() < 0.45
    if malignant:
        pathology = "MALIGNANT"
    else:
        pathology = "BENIGN" if rng.random() < 0.7 else "BENIGN_WITHOUT_CALLBACK"
    tables = (MASS_SHAPES, MASS_MARGINS) if kind == "mass" else (CALC_TYPES, CALC_DISTRIBUTIONS)
    descriptors = (str(rng.choice(tables[0][int(malignant)])), str(rng.choice(tables[1][int(malignant)])))
    assessment = int(rng.integers(4, 6)) if malignant else int(rng.integers(2, 5))
    return _Abnormality(kind, pathology, descriptors, assessment, int(rng.integers(1, 6)))


def _plan_patient(seed: int, number: int, split: str) -> list[_Scan]:
    rng = rng_for(seed, LAYOUT, "patient", number)
    patient_id = f"P_{number:05d}"
    density = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.4, 0.3, 0.15]))
    sides = ["L", "R"] if rng.random() < 0.3 else [str(rng.choice(["L", "R"]))]
    scans = []
    for side in sides:
        lesion_count = int(rng.choice([1, 2, 3], p=[0.75, 0.2, 0.05]))
        abnormalities = tuple(_plan_abnormality(rng) for _ in range(lesion_count))
        views = ["CC", "MLO"] if rng.random() < 0.9 else [str(rng.choice(["CC", "MLO"]))]
        scans += [_Scan(patient_id, split, side, view, density, abnormalities) for view in views]
    return scans


def _plan_faults(seed: int, first_number: int) -> list[_Scan]:
    """One extra single-image patient per fault kind, numbered after the regular patients."""
    scans = []
    kinds = [("truncated_dicom", "mass", "BENIGN"), ("non_image_dicom", "calcification", "MALIGNANT"),
             ("row_points_nowhere", "mass", "MALIGNANT"), ("missing_mask", "calcification", "BENIGN")]
    for offset, (fault, kind, pathology) in enumerate(kinds):
        number = first_number + offset
        rng = rng_for(seed, LAYOUT, "fault", number)
        malignant = pathology == "MALIGNANT"
        tables = (MASS_SHAPES, MASS_MARGINS) if kind == "mass" else (CALC_TYPES, CALC_DISTRIBUTIONS)
        abnormality = _Abnormality(kind, pathology, (tables[0][int(malignant)][0], tables[1][int(malignant)][0]), 4, 3)
        scans.append(_Scan(f"P_{number:05d}", "train", str(rng.choice(["L", "R"])), "CC", 2, (abnormality,), fault))
    return scans


def _scan_size(rng: np.random.Generator, scale: float) -> tuple[int, int]:
    rows = max(int(round(DEFAULT_ROWS * scale * rng.uniform(0.95, 1.05))), 64)
    return rows, max(int(round(rows * rng.uniform(0.58, 0.66))), 40)


class _CbisWriter:
    """Writes scans one by one and collects CSV rows, summary records and faults."""

    def __init__(self, out_dir: str, seed: int, scale: float) -> None:
        self.out_dir, self.seed, self.scale = out_dir, seed, scale
        self.rows: dict[tuple[str, str], list[list[str]]] = {key: [] for key in CSV_FILES}
        self.images: list[SynthImage] = []
        self.faults: list[SynthFault] = []
        self.roi_count = 0
        self.scan_count = 0

    def _abs(self, relative: str) -> str:
        return os.path.join(self.out_dir, relative)

    def _identity(self, *keys: object) -> tuple[str, str, str]:
        return (derive_uid(self.seed, LAYOUT, "study", *keys), derive_uid(self.seed, LAYOUT, "series", *keys),
                derive_uid(self.seed, LAYOUT, "sop", *keys))

    def _patient_tags(self, folder: str, scan: _Scan, description: str) -> dict[str, object]:
        birth_rng = rng_for(self.seed, LAYOUT, "birth", scan.patient_id)
        return {
            "PatientID": folder,
            "PatientName": folder,
            "PatientBirthDate": f"19{int(birth_rng.integers(30, 75)):02d}0{int(birth_rng.integers(1, 10))}15",
            "Laterality": scan.side,
            "Modality": "MG",
            "BodyPartExamined": "BREAST",
            "SeriesDescription": description,
        }

    def write(self, scan: _Scan, swap_roi: int, mismatched_roi: int) -> None:
        rng = rng_for(self.seed, LAYOUT, "image", scan.image_id)
        rows, cols = _scan_size(rng, self.scale)
        requests = tuple(LesionRequest(a.kind, a.malignant) for a in scan.abnormalities)
        phantom = render_phantom(PhantomRequest(rows, cols, scan.side, scan.view, scan.density, requests), rng)
        pixels = quantize(phantom.image, 16)
        rle = self.scan_count % 4 == 1
        self.scan_count += 1

        files: list[str] = []
        counters = {"mass": 0, "calcification": 0}
        mask_size_mismatch = False
        for abnormality, shape in zip(scan.abnormalities, phantom.lesions):
            folder = scan.folder(abnormality.kind)
            study, series, _ = self._identity(folder)
            image_path = f"{folder}/{study}/{series}/000000.dcm"
            if image_path not in files:
                files.append(image_path)
                self._write_full_image(scan, folder, image_path, pixels, rle)
            counters[abnormality.kind] += 1
            abn_id = counters[abnormality.kind]
            mismatched = self.roi_count == mismatched_roi and scan.fault is None
            mask_size_mismatch |= mismatched
            crop_path, mask_path = self._write_roi(
                scan, f"{folder}_{abn_id}", pixels, shape, swapped=self.roi_count == swap_roi and scan.fault is None,
                mismatched=mismatched,
            )
            if scan.fault is None:
                self.roi_count += 1
            row = [scan.patient_id, str(scan.density), SIDE_NAMES[scan.side], scan.view, str(abn_id), abnormality.kind,
                   *abnormality.descriptors, str(abnormality.assessment), abnormality.pathology,
                   str(abnormality.subtlety), image_path, crop_path, mask_path + "\n"]
            self.rows[(abnormality.kind, scan.split)].append(row)
        self._apply_fault(scan, files)
        self.images.append(
            SynthImage(
                image_id=scan.image_id,
                patient_id=scan.patient_id,
                files=tuple(files),
                laterality=scan.side,
                view=scan.view,
                density=scan.density,
                label=int(any(a.malignant for a in scan.abnormalities)),
                lesions=tuple(SynthLesion.from_shape(shape) for shape in phantom.lesions),
                height=rows,
                width=cols,
                source_split=scan.split,
                mask_size_mismatch=mask_size_mismatch,
                fault=scan.fault,
            )
        )

    def _write_full_image(self, scan: _Scan, folder: str, image_path: str, pixels: np.ndarray, rle: bool) -> None:
        if scan.fault == "row_points_nowhere":
            return  # the CSV row is written, the file never is
        study, series, _ = self._identity(folder)
        # The same scan under a mass and a calc folder is one image: same SOP Instance UID, same pixels.
        sop = derive_uid(self.seed, LAYOUT, "sop", scan.image_id)
        identity = DicomIdentity(SECONDARY_CAPTURE_STORAGE, sop, study, series)
        tags = self._patient_tags(folder, scan, "full mammogram images")
        body = None if scan.fault == "non_image_dicom" else pixels
        save_dicom(build_dicom(body, 16, identity, tags), self._abs(image_path), rle=rle and body is not None)

    def _write_roi(
        self, scan: _Scan, roi_folder: str, pixels: np.ndarray, shape: LesionShape, swapped: bool, mismatched: bool
    ) -> tuple[str, str]:
        """Write mask (000000.dcm) and crop (000001.dcm); return the (crop, mask) paths as the CSV states them."""
        study, series, _ = self._identity(roi_folder)
        mask_path = f"{roi_folder}/{study}/{series}/000000.dcm"
        crop_path = f"{roi_folder}/{study}/{series}/000001.dcm"
        if scan.fault == "row_points_nowhere":
            return crop_path, mask_path
        mask = lesion_mask(shape, *pixels.shape)
        if mismatched:
            # Real masks are sometimes a few pixels off their image: 3 extra rows, 2 missing columns.
            mask = np.pad(mask, ((0, 3), (0, 0)))[:, :-2]
        # Masks come as 8-bit or 16-bit files (value 255 either way), alternating here.
        mask_pixels = mask.astype(np.uint8) * 255 if self.roi_count % 2 == 0 else mask.astype(np.uint16) * 255
        crop = _crop_around(pixels, shape)
        for name, body, bits, description in (
            (mask_path, mask_pixels, mask_pixels.dtype.itemsize * 8, "ROI mask images"),
            (crop_path, crop, 16, "cropped images"),
        ):
            if name == mask_path and scan.fault == "missing_mask":
                continue
            identity = DicomIdentity(SECONDARY_CAPTURE_STORAGE, derive_uid(self.seed, LAYOUT, "sop", name), study, series)
            tags = self._patient_tags(roi_folder, scan, description)
            save_dicom(build_dicom(body, bits, identity, tags), self._abs(name))
        return (mask_path, crop_path) if swapped else (crop_path, mask_path)

    def _apply_fault(self, scan: _Scan, files: list[str]) -> None:
        if scan.fault is None:
            return
        if scan.fault == "missing_mask":
            row = self.rows[(scan.abnormalities[0].kind, scan.split)][-1]
            self.faults.append(SynthFault(self._abs(row[-1].strip()), scan.fault))
            return
        if scan.fault == "truncated_dicom":
            truncate_file(self._abs(files[0]), 0.5)
        self.faults.append(SynthFault(self._abs(files[0]), scan.fault))

    def write_csvs(self) -> None:
        for (kind, split), rows in self.rows.items():
            header = MASS_HEADER if kind == "mass" else CALC_HEADER
            with open(self._abs(CSV_FILES[(kind, split)]), "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(rows)


def _crop_around(pixels: np.ndarray, shape: LesionShape) -> np.ndarray:
    """The lesion's bounding box plus a 15 % margin, cut out of the full image (the CBIS "cropped image")."""
    (c0, r0), (c1, r1) = shape.outline_xy.min(axis=0), shape.outline_xy.max(axis=0)
    margin = max(4.0, 0.15 * (r1 - r0))
    top, bottom = max(int(r0 - margin), 0), min(int(r1 + margin) + 1, pixels.shape[0])
    left, right = max(int(c0 - margin), 0), min(int(c1 + margin) + 1, pixels.shape[1])
    return np.ascontiguousarray(pixels[top:bottom, left:right])


def write_cbis_ddsm(out_dir: str, patients: int, seed: int, inject_faults: bool, scale: float) -> SynthSummary:
    """Write ``patients`` synthetic CBIS-DDSM patients (about 20 % of them in the Test CSVs) into ``out_dir``."""
    split_rng = rng_for(seed, LAYOUT, "split")
    test_count = max(1, int(round(0.2 * patients))) if patients >= 2 else 0
    test_numbers = set((split_rng.permutation(patients)[:test_count] + 1).tolist())
    scans = [scan for number in range(1, patients + 1)
             for scan in _plan_patient(seed, number, "test" if number in test_numbers else "train")]
    if inject_faults:
        scans += _plan_faults(seed, patients + 1)

    writer = _CbisWriter(out_dir, seed, scale)
    clean_rois = sum(len(scan.abnormalities) for scan in scans if scan.fault is None)
    swap_roi = 1 if clean_rois > 1 else 0
    for scan in scans:
        writer.write(scan, swap_roi=swap_roi, mismatched_roi=0)
    writer.write_csvs()
    return SynthSummary(LAYOUT, out_dir, patients, writer.images, writer.faults)
