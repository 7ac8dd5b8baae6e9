"""Mask classes and precedence, outline rasterising, mask resizing, geometry, ROI-file identification."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mammo_tfx.ingest.masks import draw_outlines, merge_class_layers
from mammo_tfx.lesion_classes import class_code
from mammo_tfx.ingest.orientation import breast_side
from mammo_tfx.ingest.records import BadInputError, LesionRef
from mammo_tfx.ingest.resize import content_size, place_content, resize_binary_mask, resize_image
from mammo_tfx.ingest.roi_files import is_binary_valued, load_roi_mask


def test_class_codes_follow_the_seed_order():
    assert class_code("calcification", True) == 1
    assert class_code("calcification", False) == 2
    assert class_code("mass", True) == 3
    assert class_code("mass", False) == 4
    with pytest.raises(ValueError):
        class_code("cyst", True)


def test_precedence_malignant_then_mass():
    shape = (1, 4)
    everywhere = np.ones(shape, bool)
    layers = {2: everywhere, 4: np.array([[0, 1, 1, 1]], bool), 1: np.array([[0, 0, 1, 1]], bool),
              3: np.array([[0, 0, 0, 1]], bool)}
    np.testing.assert_array_equal(merge_class_layers(layers, shape), [[2, 4, 1, 3]])
    # Malignant calcification beats benign mass.
    np.testing.assert_array_equal(merge_class_layers({4: everywhere, 1: everywhere}, shape), [[1, 1, 1, 1]])


def test_disc_with_bottom_left_origin():
    lesion = LesionRef(kind="mass", malignant=True, outline="disc", points=((2.0, 5.0),), radius=1.0,
                       y_axis_up=True)
    drawn = draw_outlines([lesion], (10, 10), point_radius=3)
    rows, cols = np.nonzero(drawn)
    assert rows.mean() == pytest.approx(8.0)  # row = height - Y = 10 - 2
    assert cols.mean() == pytest.approx(5.0)


def test_point_annotation_uses_point_radius_and_polygon_fills():
    point = LesionRef(kind="calcification", malignant=False, outline="disc", points=((5.0, 5.0),))
    assert draw_outlines([point], (20, 20), point_radius=2).sum() >= 9
    square = LesionRef(kind="mass", malignant=False, outline="polygon",
                       points=((2.0, 2.0), (2.0, 7.0), (7.0, 7.0), (7.0, 2.0)))
    drawn = draw_outlines([square], (10, 10), point_radius=2)
    assert drawn[2:8, 2:8].all() and drawn.sum() == 36


def test_single_pixel_survives_strong_downscale():
    mask = np.zeros((4000, 3000), bool)
    mask[1234, 2345] = True
    small = resize_binary_mask(mask, (64, 48))
    assert small.sum() >= 1
    row, col = np.argwhere(small)[0]
    assert abs(row - 1234 * 64 / 4000) <= 1 and abs(col - 2345 * 48 / 3000) <= 1


def test_cropped_mask_resize_matches_full_box_resize():
    rng = np.random.default_rng(3)
    mask = np.zeros((301, 203), bool)
    mask[100:140, 50:90] = rng.random((40, 40)) > 0.7
    fast = resize_binary_mask(mask, (50, 37))
    full = np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize((37, 50), Image.Resampling.BOX)) > 0
    np.testing.assert_array_equal(fast, full)
    assert not resize_binary_mask(np.zeros((10, 10), bool), (5, 5)).any()


def test_pad_geometry_keeps_aspect_and_hugs_the_breast():
    assert content_size((4000, 2000), 64, 48, "stretch") == (64, 48)
    assert content_size((4000, 2000), 64, 48, "pad") == (64, 32)
    assert content_size((1000, 2000), 64, 48, "pad") == (24, 48)
    assert place_content((64, 32), 64, 48, "L").as_tuple() == (0, 0, 64, 32)
    assert place_content((64, 32), 64, 48, "R").as_tuple() == (0, 16, 64, 32)


def test_breast_side_and_image_resize():
    image = np.zeros((40, 30), np.uint16)
    image[:, :12] = 50000
    assert breast_side(image) == "L"
    assert breast_side(image[:, ::-1]) == "R"
    resized = resize_image(image, (20, 15))
    assert resized.shape == (20, 15) and resized.dtype == np.float32
    assert resized[:, 0].min() > 49000 and resized[:, -1].max() < 1000


def _save_png(path, pixels):
    Image.fromarray(pixels).save(path)
    return str(path)


def test_roi_mask_told_from_crop_by_content_even_when_swapped(tmp_path):
    mask = np.zeros((60, 40), np.uint8)
    mask[10:20, 5:15] = 255
    crop = np.random.default_rng(0).integers(0, 255, (10, 10), dtype=np.uint8)
    mask_path, crop_path = _save_png(tmp_path / "m.png", mask), _save_png(tmp_path / "c.png", crop)
    for files in ((mask_path, crop_path), (crop_path, mask_path)):
        roi, resized = load_roi_mask(files, (60, 40))
        assert not resized and roi.sum() == 100 and roi[10:20, 5:15].all()


def test_roi_mask_of_other_size_is_resized_and_flagged(tmp_path):
    mask = np.zeros((30, 20), np.uint8)
    mask[5:10, 2:8] = 255
    roi, resized = load_roi_mask([_save_png(tmp_path / "m.png", mask)], (60, 40))
    assert resized and roi.shape == (60, 40) and roi[10:20, 4:16].all() and roi.sum() == 10 * 12


def test_missing_or_crop_only_roi_row_names_the_mask_file(tmp_path):
    crop = np.random.default_rng(0).integers(0, 255, (10, 10), dtype=np.uint8)
    crop_path = _save_png(tmp_path / "c.png", crop)
    missing = str(tmp_path / "gone" / "000000.dcm")
    with pytest.raises(BadInputError) as caught:
        load_roi_mask((missing, crop_path), (60, 40))
    assert caught.value.file == missing
    assert "file not found" in caught.value.reason and "cropped ROI" in caught.value.reason


def test_binary_valued():
    assert is_binary_valued(np.array([[0, 255], [255, 0]], np.uint8))
    assert is_binary_valued(np.zeros((2, 2), np.uint8))
    assert not is_binary_valued(np.array([[0, 1, 2]], np.uint8))
