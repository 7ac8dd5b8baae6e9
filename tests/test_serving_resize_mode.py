"""Every serving path prepares an image as ingestion did, in both resize modes: an image served raw and the same
image ingested then served give the same answer, and predict's DICOM path is ingestion's own."""
from __future__ import annotations


import numpy as np
import pytest
import tensorflow as tf

from mammo_tfx import names
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.serving.limits import ImageLimits
from mammo_tfx.serving.model_info import read_serving_geometry
from tests.conftest import encode_png16, export_untrained_whole_image_model
from trainer_module.image_decoding import to_working_png

WORKING_SIZE = (64, 48)
SOURCE_SHAPE = (300, 140)  # tall and narrow: pad leaves 18 of the 48 columns empty


def _breast_on_the_right(rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    pixels = rng.normal(6000, 500, (rows, cols))
    column = np.arange(cols)[None, :]
    row = np.arange(rows)[:, None]
    breast = (cols - column) ** 2 / (0.8 * cols) ** 2 + (row - rows / 2) ** 2 / (0.45 * rows) ** 2 < 1
    pixels[breast] += 30000
    pixels[120:130, 100:110] += 15000  # a bright finding inside the breast
    return pixels.clip(0, 65535)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict:
    """The raw PNG, and what ingestion makes of it in each mode (its `image_png`)."""
    folder = tmp_path_factory.mktemp("raw_cases")
    (folder / "pos").mkdir()
    raw_path = folder / "pos" / "P1_RIGHT_CC.png"
    raw_path.write_bytes(encode_png16(_breast_on_the_right(*SOURCE_SHAPE)))
    pngs = {}
    for mode in names.RESIZE_MODES:
        options = IngestOptions(height=WORKING_SIZE[0], width=WORKING_SIZE[1], resize_mode=mode)
        (record,) = list(list_records("folder", str(folder), options))
        example = process_record(record, options)
        pngs[mode] = example.features.feature[names.IMAGE_PNG].bytes_list.value[0]
    return {"raw": raw_path.read_bytes(), "pngs": pngs}


def _pixels(png: bytes) -> np.ndarray:
    return tf.io.decode_png(png, dtype=tf.uint16).numpy()[..., 0].astype(np.float64)


@pytest.mark.parametrize("mode", names.RESIZE_MODES)
def test_the_graph_prepares_a_raw_image_as_ingestion_did(ingested, mode):
    graph = _pixels(to_working_png(tf.constant(ingested["raw"]), *WORKING_SIZE, limits=ImageLimits(), resize_mode=mode)
                    .numpy())
    ingestion = _pixels(ingested["pngs"][mode])
    # The same geometry (PIL's and TF's bicubic differ by a few grey levels at edges): the zero padding lies on
    # the same columns, and the pixels agree within 1% of the range on average.
    np.testing.assert_array_equal(graph == 0, ingestion == 0)
    assert np.mean(np.abs(graph - ingestion)) < 0.01 * 65535
    other = next(other for other in names.RESIZE_MODES if other != mode)
    assert np.mean(np.abs(_pixels(ingested["pngs"][other]) - ingestion)) > 0.05 * 65535  # the modes differ


@pytest.mark.e2e
@pytest.mark.parametrize("mode", names.RESIZE_MODES)
def test_an_image_served_raw_and_ingested_then_served_give_the_same_probability(ingested, mode, tmp_path):
    export_dir = tmp_path / "export"
    export_untrained_whole_image_model(str(tmp_path), str(export_dir), WORKING_SIZE, resize_mode=mode)
    assert read_serving_geometry(str(export_dir)).resize_mode == mode
    loaded = tf.saved_model.load(str(export_dir))
    served = loaded.signatures[names.DEFAULT_SIGNATURE](
        **{names.IMAGE_BYTES_INPUT: tf.constant([ingested["raw"], ingested["pngs"][mode]])})
    raw, ingested_then_served = served[names.SCORE].numpy()
    assert raw == pytest.approx(ingested_then_served, abs=2e-3)
