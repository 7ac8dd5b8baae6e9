"""Synthetic CBIS-DDSM: the DICOM tree of a TCIA download plus the four case-description CSVs.

Layout and quirks follow the real release (the TCIA collection page and its retriever; docs/datasets.md): one
subject folder per (lesion type, split, patient, side, view) holding the full image, one per
abnormality holding the binary mask and the cropped lesion; the CSVs (in the output folder) name every file as
`<subject>/<study uid>/<series uid>/00000N.dcm`, with a trailing newline in every "ROI mask file path", a row
whose mask/crop paths are swapped, a mask a few pixels off its image's size, and a few RLE-compressed full images.

Where the files stand depends on the download mode (DOWNLOAD_LAYOUTS), as the NBIA Data Retriever writes them:
  csv:         exactly where the CSVs say (the old retriever's layout);
  classic:     manifest-NNNN/CBIS-DDSM/<subject>/<study uid>/<series uid>/1-1.dcm;
  descriptive: manifest-NNNN/CBIS-DDSM/<subject>/<MM-DD-YYYY>-DDSM[-NA]-<last 5 of study uid>/
               <series number>-<series description>-<last 5 of series uid>/1-1.dcm.
In classic and descriptive downloads half of the ROIs keep mask and crop in one `ROI mask images` series
(1-1.dcm, 1-2.dcm), the others have the crop in a `cropped images` series of its own (a series UID the CSVs do
not know), and the retriever's metadata.csv (one row per series) stands beside the CBIS-DDSM folder.
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
from mammo_tfx.synth.seeding import derive_hex, derive_uid, rng_for
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
DOWNLOAD_LAYOUTS = ("csv", "classic", "descriptive")
METADATA_HEADERS = ("title", "snake", "none")
COLLECTION = "CBIS-DDSM"
METADATA_FILE = "metadata.csv"
FULL_IMAGES, ROI_MASKS, CROPPED = "full mammogram images", "ROI mask images", "cropped images"
# The retriever's metadata.csv columns (some versions spell them in snake case: series_uid, file_location).
METADATA_COLUMNS = ("Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID",
                    "Study UID", "Study Description", "Study Date", "Series Description", "Manufacturer", "Modality",
                    "SOP Class Name", "SOP Class UID", "Number of Images", "File Size", "File Location",
                    "Download Timestamp")

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


@dataclasses.dataclass(frozen=True)
class _SeriesFile:
    """One DICOM file as TCIA serves it: where the CSVs say it is, and the series it belongs to."""

    csv_path: str
    subject: str
    study_uid: str
    series_uid: str
    series_number: int
    description: str
    instance: int  # 1-based position in its series


def _study_date(seed: int, subject: str) -> str:
    """YYYYMMDD (the DICOM StudyDate): the curation dates of CBIS-DDSM's subjects fall in 2016-2017."""
    rng = rng_for(seed, LAYOUT, "study-date", subject)
    return f"{int(rng.integers(2016, 2018))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"


def _retriever_date(study_date: str) -> str:
    """MM-DD-YYYY, as the retriever writes a study date in folder names and metadata.csv."""
    return f"{study_date[4:6]}-{study_date[6:]}-{study_date[:4]}"


class _Download:
    """Where each file lands in one download mode, and the retriever's metadata.csv rows for what was written."""

    def __init__(self, out_dir: str, seed: int, mode: str, metadata: str) -> None:
        if mode not in DOWNLOAD_LAYOUTS:
            raise ValueError(f"unknown download layout {mode!r}; choose one of {', '.join(DOWNLOAD_LAYOUTS)}")
        if metadata not in METADATA_HEADERS:
            raise ValueError(f"unknown metadata.csv header style {metadata!r}; choose one of {METADATA_HEADERS}")
        self.out_dir, self.seed, self.mode, self.metadata = out_dir, seed, mode, metadata
        # The retriever names its folder after the manifest file: manifest-<digits>.
        self.base = "" if mode == "csv" else f"manifest-{int(derive_hex(seed, LAYOUT, 'manifest', length=10), 16)}"
        self.series: dict[str, list] = {}  # series folder -> [first file, number of images, bytes]

    def _folder(self, file: _SeriesFile) -> str:
        if self.mode == "csv":
            return os.path.dirname(file.csv_path)
        if self.mode == "classic":
            return f"{COLLECTION}/{file.subject}/{file.study_uid}/{file.series_uid}"
        date = _retriever_date(_study_date(self.seed, file.subject))
        study_id = "DDSM-NA" if rng_for(self.seed, LAYOUT, "study-folder", file.subject).random() < 0.5 else "DDSM"
        return (f"{COLLECTION}/{file.subject}/{date}-{study_id}-{file.study_uid[-5:]}/"
                f"{file.series_number:.6f}-{file.description}-{file.series_uid[-5:]}")

    def path(self, file: _SeriesFile) -> str:
        """The file's path relative to the output folder."""
        if self.mode == "csv":
            return file.csv_path
        return f"{self.base}/{self._folder(file)}/1-{file.instance}.dcm"

    def written(self, file: _SeriesFile, size: int) -> None:
        entry = self.series.setdefault(self._folder(file), [file, 0, 0])
        entry[1] += 1
        entry[2] += size

    def write_metadata(self) -> None:
        """metadata.csv beside the CBIS-DDSM folder, one row per series downloaded."""
        if self.mode == "csv" or self.metadata == "none":
            return
        header = [column if self.metadata == "title" else column.lower().replace(" ", "_")
                  for column in METADATA_COLUMNS]
        stamp = rng_for(self.seed, LAYOUT, "download-time").integers(0, 10, size=3)
        timestamp = f"2024-0{stamp[0] + 1}-1{stamp[1]}T10:2{stamp[2]}:35.389"
        rows = []
        for folder, (file, images, size) in sorted(self.series.items()):
            date = _retriever_date(_study_date(self.seed, file.subject))
            rows.append([file.series_uid, COLLECTION, "NO", "https://doi.org/10.7937/K9/TCIA.2016.7O02S9CY",
                         file.subject, file.study_uid, "", date, file.description,
                         "", "MG", "Secondary Capture Image Storage", SECONDARY_CAPTURE_STORAGE, str(images),
                         f"{size / 1e6:.2f} MB", f"./{folder}", timestamp])
        with open(os.path.join(self.out_dir, self.base, METADATA_FILE), "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


class _CbisWriter:
    """Writes scans one by one and collects CSV rows, summary records and faults."""

    def __init__(self, out_dir: str, seed: int, scale: float, download: _Download) -> None:
        self.out_dir, self.seed, self.scale, self.download = out_dir, seed, scale, download
        self.rows: dict[tuple[str, str], list[list[str]]] = {key: [] for key in CSV_FILES}
        self.images: list[SynthImage] = []
        self.faults: list[SynthFault] = []
        self.roi_count = 0
        self.roi_series_count = 0
        self.scan_count = 0

    def _abs(self, relative: str) -> str:
        return os.path.join(self.out_dir, relative)

    def _uids(self, folder: str) -> tuple[str, str]:
        """(study, series) UIDs of a subject folder: every CBIS-DDSM subject is a study of its own."""
        return derive_uid(self.seed, LAYOUT, "study", folder), derive_uid(self.seed, LAYOUT, "series", folder)

    def _save(self, file: _SeriesFile, scan: _Scan, sop: str, body: np.ndarray | None, bits: int,
              rle: bool = False) -> str:
        """Write one file where the download mode puts it; its path relative to the output folder."""
        birth_rng = rng_for(self.seed, LAYOUT, "birth", scan.patient_id)
        tags = {
            "PatientID": file.subject,
            "PatientName": file.subject,
            "PatientBirthDate": f"19{int(birth_rng.integers(30, 75)):02d}0{int(birth_rng.integers(1, 10))}15",
            "Laterality": scan.side,
            "Modality": "MG",
            "BodyPartExamined": "BREAST",
            "StudyDate": _study_date(self.seed, file.subject),
            "StudyID": "DDSM",
            "SeriesDescription": file.description,
            "SeriesNumber": file.series_number,
            "InstanceNumber": file.instance,
        }
        identity = DicomIdentity(SECONDARY_CAPTURE_STORAGE, sop, file.study_uid, file.series_uid)
        relative = self.download.path(file)
        save_dicom(build_dicom(body, bits, identity, tags), self._abs(relative), rle=rle and body is not None)
        self.download.written(file, os.path.getsize(self._abs(relative)))
        return relative

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
            study, series = self._uids(folder)
            image = _SeriesFile(f"{folder}/{study}/{series}/000000.dcm", folder, study, series, 1, FULL_IMAGES, 1)
            if self.download.path(image) not in files:
                files.append(self.download.path(image))
                self._write_full_image(scan, image, pixels, rle)
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
                   str(abnormality.subtlety), image.csv_path, crop_path, mask_path + "\n"]
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

    def _write_full_image(self, scan: _Scan, image: _SeriesFile, pixels: np.ndarray, rle: bool) -> None:
        if scan.fault == "row_points_nowhere":
            return  # the CSV row is written, the file never is
        # The same scan under a mass and a calc folder is one image: same SOP Instance UID, same pixels.
        sop = derive_uid(self.seed, LAYOUT, "sop", scan.image_id)
        body = None if scan.fault == "non_image_dicom" else pixels
        self._save(image, scan, sop, body, 16, rle=rle)

    def _write_roi(
        self, scan: _Scan, roi_folder: str, pixels: np.ndarray, shape: LesionShape, swapped: bool, mismatched: bool
    ) -> tuple[str, str]:
        """Write mask (000000.dcm) and crop (000001.dcm); return the (crop, mask) paths as the CSV states them."""
        study, series = self._uids(roi_folder)
        mask_file = _SeriesFile(f"{roi_folder}/{study}/{series}/000000.dcm", roi_folder, study, series, 1, ROI_MASKS, 1)
        crop_path = f"{roi_folder}/{study}/{series}/000001.dcm"
        # TCIA serves some crops as a `cropped images` series of their own, under a series UID the CSVs never name.
        if self.download.mode != "csv" and self.roi_series_count % 2 == 1:
            crop_series = derive_uid(self.seed, LAYOUT, "crop-series", roi_folder)
            crop_file = _SeriesFile(crop_path, roi_folder, study, crop_series, 2, CROPPED, 1)
        else:
            crop_file = _SeriesFile(crop_path, roi_folder, study, series, 1, ROI_MASKS, 2)
        self.roi_series_count += 1
        if scan.fault == "row_points_nowhere":
            return crop_path, mask_file.csv_path
        mask = lesion_mask(shape, *pixels.shape)
        if mismatched:
            # Real masks are sometimes a few pixels off their image: 3 extra rows, 2 missing columns.
            mask = np.pad(mask, ((0, 3), (0, 0)))[:, :-2]
        # Masks come as 8-bit or 16-bit files (value 255 either way), alternating here.
        mask_pixels = mask.astype(np.uint8) * 255 if self.roi_count % 2 == 0 else mask.astype(np.uint16) * 255
        for file, body, bits in ((mask_file, mask_pixels, mask_pixels.dtype.itemsize * 8),
                                 (crop_file, _crop_around(pixels, shape), 16)):
            if file is mask_file and scan.fault == "missing_mask":
                self.faults.append(SynthFault(self._abs(self.download.path(file)), scan.fault))
                continue
            self._save(file, scan, derive_uid(self.seed, LAYOUT, "sop", file.csv_path), body, bits)
        return (mask_file.csv_path, crop_path) if swapped else (crop_path, mask_file.csv_path)

    def _apply_fault(self, scan: _Scan, files: list[str]) -> None:
        if scan.fault in (None, "missing_mask"):  # the missing mask is recorded where it is left out
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


def write_cbis_ddsm(out_dir: str, patients: int, seed: int, inject_faults: bool, scale: float,
                    download_layout: str = "csv", metadata: str = "title") -> SynthSummary:
    """Write ``patients`` synthetic CBIS-DDSM patients (about 20 % of them in the Test CSVs) into ``out_dir``.

    ``download_layout`` is one of DOWNLOAD_LAYOUTS; ``metadata`` the header style of the retriever's metadata.csv
    (`title`: `Series UID`, `snake`: `series_uid`, `none`: no metadata.csv) for the classic and descriptive modes.
    """
    download = _Download(out_dir, seed, download_layout, metadata)
    split_rng = rng_for(seed, LAYOUT, "split")
    test_count = max(1, int(round(0.2 * patients))) if patients >= 2 else 0
    test_numbers = set((split_rng.permutation(patients)[:test_count] + 1).tolist())
    scans = [scan for number in range(1, patients + 1)
             for scan in _plan_patient(seed, number, "test" if number in test_numbers else "train")]
    if inject_faults:
        scans += _plan_faults(seed, patients + 1)

    writer = _CbisWriter(out_dir, seed, scale, download)
    clean_rois = sum(len(scan.abnormalities) for scan in scans if scan.fault is None)
    swap_roi = 1 if clean_rois > 1 else 0
    for scan in scans:
        writer.write(scan, swap_roi=swap_roi, mismatched_roi=0)
    writer.write_csvs()
    download.write_metadata()
    return SynthSummary(LAYOUT, out_dir, patients, writer.images, writer.faults)
