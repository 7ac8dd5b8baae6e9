"""Tests of mammo_tfx.synth: determinism, on-disk layouts, lesion visibility, laterality and injected faults."""
from __future__ import annotations

import csv
import os
import plistlib
import re
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless
from scipy import ndimage

from mammo_tfx.synth import LAYOUTS, SynthSummary, generate
from mammo_tfx.synth.cbis_ddsm import CALC_HEADER, CSV_FILES, MASS_HEADER
from mammo_tfx.synth.inbreast import RELEASE_DIR
from mammo_tfx.synth.phantom import LesionRequest, PhantomRequest, lesion_mask, render_phantom
from mammo_tfx.synth.raster import fill_polygon_mask

SCALE = 0.25
SEED = 6  # a seed whose CBIS-DDSM run has scans with both mass and calcification rows
EXPECTED_FAULT_KINDS = {
    "cbis-ddsm": {"truncated_dicom", "non_image_dicom", "row_points_nowhere", "missing_mask"},
    "inbreast": {"truncated_dicom", "non_image_dicom", "bad_xml"},
    "mias": {"bad_pgm", "row_points_nowhere"},
    "rsna": {"truncated_dicom", "missing_image", "unknown_view", "unknown_laterality", "bad_label",
             "non_mammogram_dicom"},
    "vindr": {"truncated_dicom", "missing_image", "unknown_value", "non_mammogram_dicom", "for_processing_dicom",
              "no_box_finding"},
}
PATIENTS = {"cbis-ddsm": 5, "inbreast": 5, "mias": 3, "rsna": 4, "vindr": 3}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SynthSummary]:
    """Each layout generated once with faults; shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("synth")
    return {
        layout: generate(layout, root / layout, PATIENTS[layout], SEED, inject_faults=True, scale=SCALE)
        for layout in LAYOUTS
    }


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _ring_mean(image: np.ndarray, mask: np.ndarray, width: int) -> float:
    ring = ndimage.binary_dilation(mask, iterations=width) & ~ndimage.binary_dilation(mask, iterations=2)
    return float(image[ring].mean())


def _breast_side(pixels: np.ndarray) -> str:
    """Which image edge the breast hangs on: the brighter outer third of columns."""
    third = pixels.shape[1] // 3
    return "L" if pixels[:, :third].mean() > pixels[:, -third:].mean() else "R"


# --------------------------------------------------------------------------------------------- generic


@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_arguments_give_same_bytes_and_faults_leave_clean_records_alone(
    layout: str, tmp_path: Path, datasets: dict[str, SynthSummary]
) -> None:
    first = generate(layout, tmp_path / "a", PATIENTS[layout], SEED, scale=SCALE)
    second = generate(layout, tmp_path / "b", PATIENTS[layout], SEED, scale=SCALE)
    first_bytes = _tree_bytes(tmp_path / "a")
    assert first_bytes == _tree_bytes(tmp_path / "b")
    assert first.images == second.images and not first.faults

    # The faulty run adds records but every clean image file is byte-identical to the fault-free run.
    faulty = datasets[layout]
    faulty_root = Path(faulty.out_dir)
    for image in first.images:
        for relative in image.files:
            assert (faulty_root / relative).read_bytes() == first_bytes[relative]
    assert [i for i in faulty.images if i.fault is None] == first.images


def test_other_seed_gives_other_pixels(tmp_path: Path) -> None:
    generate("mias", tmp_path / "a", 1, 1)
    generate("mias", tmp_path / "b", 1, 2)
    assert (tmp_path / "a" / "mdb001.pgm").read_bytes() != (tmp_path / "b" / "mdb001.pgm").read_bytes()


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown layout 'ddsm'"):
        generate("ddsm", tmp_path, 1, 0)
    with pytest.raises(ValueError, match="patients"):
        generate("mias", tmp_path, 0, 0)
    with pytest.raises(ValueError, match="seed"):
        generate("mias", tmp_path, 1, -1)
    with pytest.raises(ValueError, match="cbis-ddsm only"):
        generate("mias", tmp_path, 1, 0, download_layout="classic")
    with pytest.raises(ValueError, match="unknown download layout 'flat'"):
        generate("cbis-ddsm", tmp_path, 1, 0, download_layout="flat")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_injects_its_faults(layout: str, datasets: dict[str, SynthSummary]) -> None:
    summary = datasets[layout]
    assert {fault.kind for fault in summary.faults} == EXPECTED_FAULT_KINDS[layout]
    assert {image.fault for image in summary.images if image.fault} == EXPECTED_FAULT_KINDS[layout]
    for fault in summary.faults:
        path = Path(fault.path)
        if fault.kind in ("missing_mask", "row_points_nowhere", "missing_image"):
            assert not path.exists(), fault
        elif fault.kind == "truncated_dicom":
            with pytest.raises(Exception):
                pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is what must fail
        elif fault.kind == "non_image_dicom":
            dataset = pydicom.dcmread(path)
            assert "PixelData" not in dataset and dataset.Modality == "MG"
        elif fault.kind == "bad_xml":
            with pytest.raises(Exception):
                plistlib.loads(path.read_bytes())
        elif fault.kind == "bad_pgm":
            data = path.read_bytes()
            assert not data.startswith(b"P5\n1024 1024\n255\n") or len(data) < 1024 * 1024, fault


# --------------------------------------------------------------------------------------------- phantom


@pytest.mark.parametrize("seed", range(4))
def test_malignant_calcification_clusters_show_more_specks_than_benign(seed: int) -> None:
    counts = {}
    for malignant in (False, True):
        request = PhantomRequest(1152, 896, "L", "CC", 2, (LesionRequest("calcification", malignant),))
        phantom = render_phantom(request, np.random.default_rng(seed))
        (lesion,) = phantom.lesions
        mask = ndimage.binary_dilation(lesion_mask(lesion, 1152, 896), iterations=3)
        # Specks are small and bright: a top-hat removes the tissue underneath, a threshold finds them.
        tophat = ndimage.white_tophat(phantom.image, size=15)
        specks, count = ndimage.label((tophat > 0.12) & mask)
        counts[malignant] = count
        assert abs(count - lesion.speck_count) <= max(2, lesion.speck_count // 4), (count, lesion.speck_count)
    assert 3 <= counts[False] <= 7 and counts[True] >= 10 and counts[True] > counts[False]


def test_lesions_stay_inside_the_breast_and_right_breasts_are_mirrored() -> None:
    lesions = tuple(LesionRequest(kind, malignant) for kind in ("mass", "calcification") for malignant in (False, True))
    for laterality in ("L", "R"):
        request = PhantomRequest(600, 400, laterality, "MLO", 3, lesions)
        phantom = render_phantom(request, np.random.default_rng(3))
        assert _breast_side(phantom.image) == laterality
        assert phantom.image.dtype == np.float32 and 0 <= phantom.image.min() and phantom.image.max() <= 1
        for lesion in phantom.lesions:
            row, col = (int(round(v)) for v in lesion.center_rc)
            assert phantom.breast_mask[row, col], lesion


# --------------------------------------------------------------------------------------------- CBIS-DDSM


def _cbis_rows(root: Path) -> list[dict[str, str]]:
    rows = []
    for (kind, split), name in CSV_FILES.items():
        with open(root / name, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            assert header == (MASS_HEADER if kind == "mass" else CALC_HEADER)
            rows += [dict(zip(header, row), split=split) for row in reader]
    return rows


def test_cbis_ddsm_csvs_and_dicoms_look_like_the_real_release(datasets: dict[str, SynthSummary]) -> None:
    summary = datasets["cbis-ddsm"]
    root = Path(summary.out_dir)
    rows = _cbis_rows(root)
    broken = {Path(fault.path) for fault in summary.faults}
    assert {row["split"] for row in rows} == {"train", "test"}
    assert all(row["ROI mask file path"].endswith("\n") for row in rows)
    transfer_syntaxes = set()
    for row in rows:
        folder, study, series, name = row["image file path"].split("/")
        prefix = ("Mass" if row["abnormality type"] == "mass" else "Calc") + (
            "-Training" if row["split"] == "train" else "-Test"
        )
        assert folder == f"{prefix}_{row['patient_id']}_{row['left or right breast']}_{row['image view']}"
        assert name == "000000.dcm" and study.startswith("2.25.") and series.startswith("2.25.")
        assert row["pathology"] in ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
        path = root / row["image file path"]
        if path in broken:
            continue
        ds = pydicom.dcmread(path)
        assert ds.PatientID == folder and str(ds.PatientName) == folder and ds.PatientBirthDate
        assert ds.Laterality == row["left or right breast"][0] and ds.Modality == "MG"
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 16 and ds.BitsStored == 16
        transfer_syntaxes.add(ds.file_meta.TransferSyntaxUID)
    assert RLELossless in transfer_syntaxes and len(transfer_syntaxes) == 2


def test_cbis_ddsm_roi_files_have_the_real_quirks_and_masks_cover_visible_masses(
    datasets: dict[str, SynthSummary],
) -> None:
    summary = datasets["cbis-ddsm"]
    root = Path(summary.out_dir)
    broken = {Path(fault.path) for fault in summary.faults}
    swapped = resized = masses = 0
    for row in _cbis_rows(root):
        image_path = root / row["image file path"]
        listed_mask = root / row["ROI mask file path"].strip()
        listed_crop = root / row["cropped image file path"]
        if image_path in broken or listed_mask in broken:
            continue
        image = pydicom.dcmread(image_path).pixel_array.astype(np.float64)
        candidates = [pydicom.dcmread(p).pixel_array for p in (listed_mask, listed_crop)]
        # The mask is the big binary one; the crop is small with many grey levels.
        mask_index = int(np.argmax([c.size for c in candidates]))
        swapped += mask_index == 1
        mask_pixels, crop = candidates[mask_index], candidates[1 - mask_index]
        assert set(np.unique(mask_pixels)) == {0, 255}
        assert crop.size < mask_pixels.size / 4 and len(np.unique(crop)) > 10
        if mask_pixels.shape != image.shape:
            resized += 1
            assert max(abs(a - b) for a, b in zip(mask_pixels.shape, image.shape)) <= 5
            continue
        if row["abnormality type"] == "mass":
            mask = mask_pixels > 0
            masses += 1
            assert image[mask].mean() > _ring_mean(image, mask, 12) + 0.03 * 65535
    assert swapped >= 1 and resized >= 1 and masses >= 2


def test_cbis_ddsm_summary_labels_and_laterality(datasets: dict[str, SynthSummary]) -> None:
    summary = datasets["cbis-ddsm"]
    rows = _cbis_rows(Path(summary.out_dir))
    for image in summary.clean_images:
        image_rows = [r for r in rows if f"{r['patient_id']}_{r['left or right breast']}_{r['image view']}" == image.image_id]
        assert len(image_rows) == len(image.lesions) >= 1
        assert image.label == int(any(r["pathology"] == "MALIGNANT" for r in image_rows))
        pixels = pydicom.dcmread(Path(summary.out_dir) / image.files[0]).pixel_array
        assert pixels.shape == (image.height, image.width)
        assert _breast_side(pixels) == image.laterality
    assert {i.source_split for i in summary.images} == {"train", "test"}
    mixed = [image for image in summary.clean_images if len(image.files) > 1]
    assert mixed, "expected scans listed in both the mass and the calc CSVs"
    for image in mixed:
        first_copy, second_copy = (pydicom.dcmread(Path(summary.out_dir) / f) for f in image.files)
        assert first_copy.SOPInstanceUID == second_copy.SOPInstanceUID and first_copy.PatientID != second_copy.PatientID
        assert np.array_equal(first_copy.pixel_array, second_copy.pixel_array)
        assert {lesion.kind for lesion in image.lesions} == {"mass", "calcification"}


DESCRIPTIVE_PATH = re.compile(
    r"^manifest-\d+/CBIS-DDSM/(?P<subject>[^/]+)/(?P<date>\d\d-\d\d-\d{4})-DDSM(?P<na>-NA)?-(?P<study>\d{5})/"
    r"(?P<number>\d\.000000)-(?P<description>full mammogram images|ROI mask images|cropped images)-(?P<series>\d{5})/"
    r"1-[12]\.dcm$")
CLASSIC_PATH = re.compile(r"^manifest-\d+/CBIS-DDSM/(?P<subject>[^/]+)/(?P<study>2\.25\.\d+)/(?P<series>2\.25\.\d+)/1-[12]\.dcm$")


@pytest.mark.parametrize("mode", ["classic", "descriptive"])
def test_cbis_ddsm_download_modes_look_like_the_retriever_wrote_them(tmp_path: Path, mode: str) -> None:
    summary = generate("cbis-ddsm", tmp_path, 5, SEED, inject_faults=True, scale=0.1, download_layout=mode)
    assert {fault.kind for fault in summary.faults} == EXPECTED_FAULT_KINDS["cbis-ddsm"]
    files = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.dcm"))
    pattern = DESCRIPTIVE_PATH if mode == "descriptive" else CLASSIC_PATH
    series_files: dict[str, list[str]] = {}
    variants = set()
    for relative in files:
        match = pattern.match(relative)
        assert match, relative
        ds = pydicom.dcmread(tmp_path / relative, stop_before_pixels=True)
        assert ds.PatientID == match["subject"] and ds.StudyID == "DDSM"
        if mode == "descriptive":
            assert ds.StudyInstanceUID[-5:] == match["study"] and ds.SeriesInstanceUID[-5:] == match["series"]
            assert ds.SeriesDescription == match["description"] and f"{ds.SeriesNumber}.000000" == match["number"]
            assert f"{ds.StudyDate[4:6]}-{ds.StudyDate[6:]}-{ds.StudyDate[:4]}" == match["date"]
            variants.add(bool(match["na"]))
        else:
            assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (match["study"], match["series"])
        series_files.setdefault(str(Path(relative).parent), []).append(ds.SeriesDescription)
    # Both ROI arrangements: mask and crop in one series, or the crop in a `cropped images` series of its own.
    assert ["ROI mask images", "ROI mask images"] in series_files.values()
    assert ["cropped images"] in series_files.values()
    assert mode == "classic" or variants == {True, False}
    # The CSVs keep the original UID paths with 000000.dcm/000001.dcm names.
    rows = _cbis_rows(tmp_path)
    assert all(row["image file path"].endswith("/000000.dcm") for row in rows)
    (metadata,) = tmp_path.glob("manifest-*/metadata.csv")
    with open(metadata, newline="", encoding="utf-8") as handle:
        entries = list(csv.DictReader(handle))
    assert {"Series UID", "Subject ID", "Study UID", "Series Description", "Number of Images", "File Location",
            "Download Timestamp"} <= set(entries[0])
    assert len(entries) == len(series_files)
    for entry in entries:
        folder = metadata.parent / entry["File Location"]
        assert entry["File Location"].startswith("./CBIS-DDSM/" + entry["Subject ID"] + "/")
        in_folder = sorted(folder.iterdir())
        assert len(in_folder) == int(entry["Number of Images"])
        assert pydicom.dcmread(in_folder[0], stop_before_pixels=True).SeriesInstanceUID == entry["Series UID"]


# --------------------------------------------------------------------------------------------- INbreast

POINT_PATTERN = re.compile(r"^\(-?\d+\.\d+, -?\d+\.\d+\)$")


def test_inbreast_release_folder_csv_dicoms_and_xml(datasets: dict[str, SynthSummary]) -> None:
    summary = datasets["inbreast"]
    release = Path(summary.out_dir) / RELEASE_DIR
    lines = (release / "INbreast.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
    broken = {Path(fault.path) for fault in summary.faults}
    windowed = 0
    for line in lines[1:]:
        patient, age, side, view, date, file_name, acr, birads = line.split(";")
        assert (patient, age) == ("removed", "removed") and re.fullmatch(r"20(08|09|10)(0[1-9]|1[0-2])", date)
        assert acr.strip() in ("", "1", "2", "3", "4") and birads in ("1", "2", "3", "4a", "4b", "4c", "5", "6")
        (dicom_path,) = (release / "AllDICOMs").glob(f"{file_name}_*.dcm")
        assert re.fullmatch(rf"{file_name}_[0-9a-f]{{16}}_MG_{side}_{'CC' if view == 'CC' else 'ML'}_ANON\.dcm", dicom_path.name)
        image = summary.image(file_name)
        assert image.label == {"1": 0, "2": 0, "3": None}.get(birads, 1)
        assert all(lesion.malignant == (image.label == 1) for lesion in image.lesions if lesion.kind == "mass")
        assert (image.label == 1) == any(lesion.malignant for lesion in image.lesions)
        xml_path = release / "AllXML" / f"{file_name}.xml"
        assert xml_path.exists() == bool(image.lesions)
        if dicom_path in broken or xml_path in broken:
            continue
        ds = pydicom.dcmread(dicom_path)
        assert (ds.BitsAllocated, ds.BitsStored, ds.PhotometricInterpretation) == (16, 14, "MONOCHROME2")
        assert ds.ImageLaterality == side and ds.PatientName and ds.PatientBirthDate
        pixels = ds.pixel_array
        assert pixels.max() < 2**14 and _breast_side(pixels) == side
        windowed += "WindowCenter" in ds
        if image.lesions:
            _check_inbreast_xml(xml_path, pixels.astype(np.float64), image.lesions)
    assert 0 < windowed < len(lines) - 1


def _check_inbreast_xml(xml_path: Path, pixels: np.ndarray, lesions: tuple) -> None:
    document = plistlib.loads(xml_path.read_bytes())
    (entry,) = document["Images"]
    rois = entry["ROIs"]
    assert entry["ImageIndex"] == 0 and entry["NumberOfROIs"] == len(rois)
    points = 0
    for roi in rois:
        assert roi["NumberOfPoints"] == len(roi["Point_px"]) and all(POINT_PATTERN.match(p) for p in roi["Point_px"])
        xy = np.array([[float(v) for v in p.strip("()").split(",")] for p in roi["Point_px"]])
        if roi["Name"] == "Calcification":
            assert 1 <= len(xy) <= 2
            points += 1
        elif roi["Name"] == "Mass":
            mask = fill_polygon_mask(xy, *pixels.shape)
            assert pixels[mask].mean() > _ring_mean(pixels, mask, 8) + 0.03 * 16383
    assert points == sum(lesion.speck_count for lesion in lesions)
    assert sum(roi["Name"] == "Mass" for roi in rois) == sum(lesion.kind == "mass" for lesion in lesions)


# --------------------------------------------------------------------------------------------- MIAS


PGM_HEADER = b"P5\n1024 1024\n255\n"


def _read_pgm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data.startswith(PGM_HEADER) and len(data) == len(PGM_HEADER) + 1024 * 1024, path
    return np.frombuffer(data[len(PGM_HEADER) :], dtype=np.uint8).reshape(1024, 1024)


def test_mias_info_txt_and_pgms(datasets: dict[str, SynthSummary]) -> None:
    summary = datasets["mias"]
    root = Path(summary.out_dir)
    lines = (root / "Info.txt").read_text(encoding="ascii").splitlines()
    assert lines[0] == "REFNUM BG CLASS SEVERITY X Y RADIUS"
    without_coordinates = 0
    for line in lines[1:]:
        fields = line.split(" ")
        refnum, background, mias_class = fields[:3]
        assert re.fullmatch(r"mdb\d{3}", refnum) and background in "FGD"
        if mias_class == "NORM":
            assert len(fields) == 3
            continue
        assert mias_class in ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM") and fields[3] in "BM"
        if len(fields) == 4:
            without_coordinates += 1
            continue
        x, y, radius = (int(v) for v in fields[4:])
        pixels = _read_pgm(root / f"{refnum}.pgm")
        # Origin bottom-left: the lesion centre is at row 1024 - Y, inside the breast.
        assert pixels[1024 - y, x] > 30 and 0 < radius < 200
    assert without_coordinates == 1
    clean = summary.clean_images
    assert len(clean) == 2 * PATIENTS["mias"] and sum(not image.lesions for image in clean) >= 1
    for image in clean:
        pixels = _read_pgm(root / image.files[0])
        # The publisher's rule: odd numbers are right breasts, even numbers left.
        assert _breast_side(pixels) == ("R" if int(image.image_id[3:]) % 2 else "L") == image.laterality
        assert image.label == int(any(lesion.malignant for lesion in image.lesions))
