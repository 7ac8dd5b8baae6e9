"""The four listers on tiny hand-built datasets, through process_record: labels, quirks, bad input."""
from __future__ import annotations

import csv
import plistlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammo_tfx.ingest.layouts import LISTERS, list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import BadInputError, QuarantineEntry, ScanRecord
from tests.conftest import ingest, mask_of, phantom, value


# ---------------------------------------------------------------- CBIS-DDSM
MASS_HEADER = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]
CALC_HEADER = ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
               "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
               "image file path", "cropped image file path", "ROI mask file path"]


def cbis_row(patient, density, side, view, abn, kind, pathology, image, crop, mask):
    return [patient, density, side, view, abn, kind, "OVAL", "CIRCUMSCRIBED", 4, pathology, 3, image, crop, mask]


def build_cbis(root: Path, write_dicom) -> None:
    def image(name, side, shape=(80, 60)):
        write_dicom(root / name, phantom(*shape, side=side[0]), bits_stored=12)
        return name

    def roi(name, box, shape=(80, 60)):
        mask = np.zeros(shape, np.uint8)
        mask[box] = 255
        write_dicom(root / name, mask)
        return name

    def crop(name):
        write_dicom(root / name, np.random.default_rng(0).integers(0, 4000, (12, 9), dtype=np.uint16), bits_stored=12)
        return name

    a = image("Mass-Training_P_00001_LEFT_CC/1.1/1.2/000000.dcm", "LEFT")
    a_mass = roi("Mass-Training_P_00001_LEFT_CC_1/1.1/1.3/000001.dcm", np.s_[10:30, 5:20])
    a_crop = crop("Mass-Training_P_00001_LEFT_CC_1/1.1/1.3/000000.dcm")
    a_again = image("Calc-Training_P_00001_LEFT_CC/1.1/1.5/000000.dcm", "LEFT")  # same scan, calc folder
    a_calc = roi("Calc-Training_P_00001_LEFT_CC_1/1.1/1.4/000001.dcm", np.s_[20:40, 10:30])
    a_calc_crop = crop("Calc-Training_P_00001_LEFT_CC_1/1.1/1.4/000000.dcm")
    b = image("Mass-Test_P_00002_RIGHT_MLO/1.1/1.2/000000.dcm", "RIGHT")
    b_mask = roi("Mass-Test_P_00002_RIGHT_MLO_1/1.1/1.3/000000.dcm", np.s_[20:30, 20:30], shape=(40, 30))
    d = image("Mass-Test_P_00004_LEFT_CC/1.1/1.2/000000.dcm", "LEFT")
    d_crop = crop("Mass-Test_P_00004_LEFT_CC_1/1.1/1.3/000000.dcm")
    e = image("Calc-Test_P_00005_LEFT_MLO/1.1/1.2/000000.dcm", "LEFT")
    e_mask = roi("Calc-Test_P_00005_LEFT_MLO_1/1.1/1.3/000000.dcm", np.s_[40:41, 30:31])
    e_crop = crop("Calc-Test_P_00005_LEFT_MLO_1/1.1/1.3/000001.dcm")
    tables = {
        "mass_case_description_train_set.csv": (MASS_HEADER, [
            cbis_row("P_00001", 2, "LEFT", "CC", 1, "mass", "MALIGNANT", a + "  ", a_crop, a_mass + "\n")]),
        "calc_case_description_train_set.csv": (CALC_HEADER, [
            # The mass row's scan, stored again under the calc folder; mask and crop columns swapped.
            cbis_row("P_00001", 2, "LEFT", "CC", 1, "calcification", "BENIGN_WITHOUT_CALLBACK", a_again + "\n",
                     a_calc, a_calc_crop)]),
        "mass_case_description_test_set.csv": (MASS_HEADER, [
            cbis_row("P_00002", 3, "RIGHT", "MLO", 1, "mass", "BENIGN", b, b_mask, b_mask),
            cbis_row("P_00003", 1, "LEFT", "CC", 1, "mass", "MALIGNANT", "Mass-Test_P_00003_LEFT_CC/x/y/000000.dcm",
                     "nowhere/1.dcm", "nowhere/2.dcm"),
            cbis_row("P_00004", 1, "LEFT", "CC", 1, "mass", "MALIGNANT", d, d_crop,
                     "Mass-Test_P_00004_LEFT_CC_1/1.1/1.3/000001.dcm")]),
        "calc_case_description_test_set.csv": (CALC_HEADER, [
            cbis_row("P_00005", 4, "LEFT", "MLO", 1, "calcification", "MALIGNANT", e, e_mask, e_crop)]),
    }
    for name, (header, rows) in tables.items():
        with open(root / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def test_cbis_ddsm_layout(tmp_path, write_dicom, small_options):
    root = tmp_path / "CBIS-DDSM"
    root.mkdir()
    build_cbis(root, write_dicom)
    results = ingest("cbis-ddsm", tmp_path, small_options)  # the parent of the CBIS-DDSM folder works too
    assert len(results) == 5
    a = results["P_00001_LEFT_CC"]
    assert (value(a, "label"), value(a, "abnormality_type"), value(a, "pathology")) == (1, "mixed", "malignant")
    assert (value(a, "laterality"), value(a, "view"), value(a, "source_split"), value(a, "density")) == ("L", "CC", "train", 2)
    assert set(np.unique(mask_of(a))) == {0, 2, 3}  # benign calc + malignant mass; the mass wins the overlap
    assert value(a, "mask_resized") == 0 and value(a, "mask_complete") == 1
    b = results["P_00002_RIGHT_MLO"]
    assert (value(b, "label"), value(b, "pathology"), value(b, "source_split"), value(b, "mask_resized")) == (0, "benign", "test", 1)
    assert set(np.unique(mask_of(b))) == {0, 4}
    e = results["P_00005_LEFT_MLO"]
    assert value(e, "density") == 4  # from the calc file's "breast density" column
    assert mask_of(e).max() == 1 and (mask_of(e) == 1).sum() >= 1  # a one-pixel calcification survives
    nowhere = results["P_00003_LEFT_CC"]
    assert isinstance(nowhere, QuarantineEntry) and nowhere.file.endswith("Mass-Test_P_00003_LEFT_CC/x/y/000000.dcm")
    assert "file not found" in nowhere.reason
    no_mask = results["P_00004_LEFT_CC"]
    assert isinstance(no_mask, QuarantineEntry) and no_mask.file.endswith("Mass-Test_P_00004_LEFT_CC_1/1.1/1.3/000001.dcm")
    assert no_mask.status == "quarantined"


def test_cbis_ddsm_bad_rows_and_roots(tmp_path, small_options):
    with pytest.raises(BadInputError, match="no CBIS-DDSM case-description CSV"):
        list(LISTERS["cbis-ddsm"](str(tmp_path), small_options))
    with open(tmp_path / "mass_case_description_train_set.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MASS_HEADER)
        writer.writerow(cbis_row("P_9", 2, "LEFT", "CC", 1, "mass", "MALIGNANT", "img/1.dcm", "c.dcm", "m.dcm"))
        writer.writerow(cbis_row("P_9", 2, "LEFT", "CC", 2, "mass", "UNSURE", "img/1.dcm", "c2.dcm", "m2.dcm"))
        writer.writerow(cbis_row("P_8", 2, "MIDDLE", "CC", 1, "mass", "BENIGN", "img/2.dcm", "c.dcm", "m.dcm"))
    with open(tmp_path / "mass_case_description_test_set.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MASS_HEADER)
        writer.writerow(cbis_row("P_7", 2, "LEFT", "CC", 1, "mass", "BENIGN", "Mass-Test_7/1.dcm", "c.dcm", "m.dcm"))
    with open(tmp_path / "calc_case_description_train_set.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CALC_HEADER)
        writer.writerow(cbis_row("P_7", 2, "LEFT", "CC", 1, "calcification", "BENIGN", "Calc-Training_7/1.dcm",
                                 "c.dcm", "m.dcm"))
    for image in ("Mass-Test_7/1.dcm", "Calc-Training_7/1.dcm"):  # listing finds the files; their content is not read
        (tmp_path / image).parent.mkdir()
        (tmp_path / image).write_bytes(b"")
    entries = {item.record if isinstance(item, QuarantineEntry) else item.record_id: item
               for item in LISTERS["cbis-ddsm"](str(tmp_path), small_options)}
    # One bad row quarantines its whole scan, so no scan is ingested with a lesion missing.
    bad_pathology = entries["P_9_LEFT_CC"]
    assert isinstance(bad_pathology, QuarantineEntry) and "unknown pathology 'UNSURE'" in bad_pathology.reason
    assert bad_pathology.file.endswith("mass_case_description_train_set.csv") and "line 3" in bad_pathology.reason
    assert "unknown breast side 'MIDDLE'" in entries["img/2.dcm"].reason
    # A scan listed in a train and a test CSV is kept out of training.
    assert entries["P_7_LEFT_CC"].source_split == "test" and len(entries["P_7_LEFT_CC"].lesions) == 2


# ---------------------------------------------------------------- INbreast
def inbreast_xml(rois) -> bytes:
    return plistlib.dumps({"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": [
        {"Name": name, "NumberOfPoints": len(points), "Point_px": [f"({x}, {y})" for x, y in points]}
        for name, points in rois]}]})


def build_inbreast(root: Path, write_dicom) -> Path:
    release = root / "INbreast Release 1.0"
    (release / "AllXML").mkdir(parents=True)
    rows = [("111", "L", "CC", "1", "1"), ("222", "R", "MLO", "2", "4a"), ("333", "L", "CC", "3", "3"),
            ("444", "R", "CC", "", "2"), ("555", "L", "MLO", "4", "5")]
    lines = ["Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"]
    for name, side, view, acr, birads in rows:
        lines.append(f"removed;removed;{side} ;{view} ;201001;{name} ;{acr} ;{birads} ")
        if name != "555":
            dicom_view = "ML" if view == "MLO" else view
            write_dicom(release / "AllDICOMs" / f"{name}_abcdef012345678{name[0]}_MG_{side}_{dicom_view}_ANON.dcm",
                        phantom(80, 60, side), bits_stored=14, PatientName="Secret^Name")
    (release / "INbreast.csv").write_text("\n".join(lines) + "\n")
    (release / "AllXML" / "222.xml").write_bytes(inbreast_xml([
        ("Mass", [(20, 10), (40, 10), (40, 30), (20, 30)]), ("Calcification", [(10, 60)])]))
    (release / "AllXML" / "444.xml").write_bytes(b"<?xml version='1.0'?><plist><dict><key>Images")
    return release


def test_inbreast_layout(tmp_path, write_dicom, small_options):
    build_inbreast(tmp_path, write_dicom)
    results = ingest("inbreast", tmp_path, small_options)
    statuses = Counter(r.status if isinstance(r, QuarantineEntry) else "ingested" for r in results.values())
    assert statuses == {"ingested": 2, "excluded": 1, "quarantined": 2}
    negative, positive = results["111"], results["222"]
    assert (value(negative, "label"), value(negative, "pathology"), value(negative, "density")) == (0, "normal", 1)
    assert (value(positive, "label"), value(positive, "abnormality_type"), value(positive, "view")) == (1, "mixed", "MLO")
    assert value(positive, "laterality") == "R" and value(positive, "bits_stored") == 14
    assert set(np.unique(mask_of(positive))) == {0, 1, 3}
    assert mask_of(positive)[60 * 64 // 80, 10 * 48 // 60] == 1  # point (x=10, y=60) -> row 60, col 10
    assert results["333"].status == "excluded" and "BI-RADS 3" in results["333"].reason
    assert results["444"].file.endswith("AllXML/444.xml") and "cannot be parsed" in results["444"].reason
    assert "no DICOM file" in results["555"].reason


def test_inbreast_birads_rule_is_configurable(tmp_path, write_dicom):
    build_inbreast(tmp_path, write_dicom)
    options = IngestOptions(height=32, width=24, inbreast_negative_birads=("1", "2", "3"))
    labels = {r.record_id: r.label for r in LISTERS["inbreast"](str(tmp_path / "INbreast Release 1.0"), options)
              if isinstance(r, ScanRecord)}
    assert labels["333"] == 0


# ---------------------------------------------------------------- MIAS
def write_pgm(path: Path, pixels: np.ndarray) -> None:
    path.write_bytes(f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n255\n".encode() + pixels.astype(np.uint8).tobytes())


def test_mias_layout(tmp_path, small_options):
    for number, side in ((1, "L"), (2, "R"), (3, "L")):
        write_pgm(tmp_path / f"mdb00{number}.pgm", phantom(80, 80, side, bits=8))
    (tmp_path / "mdb005.pgm").write_bytes(b"P5\n80 80\n255\n" + bytes(10))
    write_pgm(tmp_path / "mdb099.pgm", phantom(80, 80, "L", bits=8))
    (tmp_path / "Info.txt").write_text(
        "REFNUM BG CLASS SEVERITY X Y RADIUS \n"
        "mdb001 G NORM \n"
        "mdb002 D CIRC B 60 20 6\n"
        "mdb003 F CALC M 20 70 3\n"
        "mdb003 F CALC M\n"
        "mdb004 F NORM\n"
        "mdb005 F NORM\n"
        "mdb006 X NORM\n")
    results = ingest("mias", tmp_path, small_options)
    assert set(results) == {"mdb001", "mdb002", "mdb003", "mdb004", "mdb005", "mdb006", "mdb099"}
    normal, benign, malignant = results["mdb001"], results["mdb002"], results["mdb003"]
    assert (value(normal, "label"), value(normal, "density"), value(normal, "laterality")) == (0, 2, "L")
    assert (value(benign, "pathology"), value(benign, "density"), value(benign, "laterality")) == ("benign", 3, "R")
    rows, cols = np.nonzero(mask_of(benign) == 4)
    # Circle at X=60, Y=20 with the origin bottom-left: row 80-20=60 of 80 -> 48 of 64; col 60 of 80 -> 36 of 48.
    assert abs(rows.mean() - 48) <= 1.5 and abs(cols.mean() - 36) <= 1.5
    assert (value(malignant, "label"), value(malignant, "abnormality_type"), value(malignant, "mask_complete")) == (1, "calcification", 0)
    assert value(malignant, "view") == "MLO" and value(malignant, "pixel_spacing_mm") == pytest.approx([0.2, 0.2])
    assert value(results["mdb001"], "patient_key") == value(results["mdb002"], "patient_key")
    assert value(results["mdb003"], "patient_key") != value(results["mdb002"], "patient_key")
    assert "file not found" in results["mdb004"].reason and results["mdb004"].file.endswith("mdb004.pgm")
    assert "truncated" in results["mdb005"].reason
    assert "bad BG" in results["mdb006"].reason and results["mdb006"].file.endswith("Info.txt")
    assert "no row in Info.txt" in results["mdb099"].reason


# ---------------------------------------------------------------- folder
def test_folder_layout(tmp_path, write_dicom, small_options):
    Image.fromarray(phantom(80, 60, "L", bits=8)).save(tmp_path / "x.png")
    (tmp_path / "train" / "neg").mkdir(parents=True)
    (tmp_path / "x.png").rename(tmp_path / "train" / "neg" / "case7_LEFT_CC.png")
    write_dicom(tmp_path / "train" / "pos" / "scan.dcm", phantom(80, 60, "R"), bits_stored=12,
                ImageLaterality="R", ViewPosition="MLO", PatientID="PAT-42")
    write_dicom(tmp_path / "test" / "pos" / "case9_R_MLO", phantom(80, 60, "R"), bits_stored=12, PatientID="")
    (tmp_path / "val" / "neg").mkdir(parents=True)
    Image.fromarray(phantom(80, 60, "R", bits=16)).save(tmp_path / "val" / "neg" / "other.png")
    (tmp_path / "val" / "neg" / "notes.txt").write_text("not an image")
    results = ingest("folder", tmp_path, small_options)
    png = results["train/neg/case7_LEFT_CC.png"]
    assert (value(png, "label"), value(png, "laterality"), value(png, "view"), value(png, "source_split")) == (0, "L", "CC", "train")
    assert value(png, "mask_complete") == 0 and mask_of(png).max() == 0 and value(png, "abnormality_type") == "none"
    tagged = results["train/pos/scan.dcm"]
    assert (value(tagged, "label"), value(tagged, "laterality"), value(tagged, "view"), value(tagged, "pathology")) == (1, "R", "MLO", "malignant")
    named = results["test/pos/case9_R_MLO"]
    assert (value(named, "laterality"), value(named, "view"), value(named, "source_split")) == ("R", "MLO", "test")
    assert value(results["val/neg/other.png"], "source_split") == "train"
    assert value(results["val/neg/other.png"], "bits_stored") == 16
    assert "unsupported file type" in results["val/neg/notes.txt"].reason
    with pytest.raises(BadInputError, match="no neg/ or pos/"):
        list(LISTERS["folder"](str(tmp_path / "train" / "neg"), small_options))


def test_unknown_layout_name(small_options):
    with pytest.raises(ValueError, match="unknown dataset layout"):
        list_records("ddsm", "/nowhere", small_options)
