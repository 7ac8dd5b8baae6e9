"""The production-smoke profile end to end: the production geometry and architecture (1152x896, ResNet50 on
224-pixel S10 patches, [512-512-1024]x2 top blocks, breast gate) through every component to a pushed model that
answers a full-size 16-bit PNG."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from mammo_tfx import names, synth
from mammo_tfx.evaluation.calibration import read_screening_record
from mammo_tfx.serving.model_info import read_model_info
from trainer_module.inputs import transform_images
from pipeline.outputs import collect_outputs

# The CLI's pipeline run in a child process. `make test` runs it beside the other tests on the second core, where it
# takes longer than the suite's 20-minute limit per test (about 16 minutes alone on a loaded two-core machine).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]
RUN_TIMEOUT_S = 2700

ROWS, COLS = 1152, 896
# 4 patients of seed 41: eval holds 4 images (2 malignant), test 3 (2 malignant), train 2 (benign), so the gate and
# the calibration see both classes while the evaluations over ResNet50 at full size stay few.
PATIENTS, SEED = 4, 41


def _stand_in_backbone_weights(path: str) -> str:
    """A ResNet50 no-top weights file (random values) standing in for an ImageNet download."""
    tf_keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3)).save_weights(path)
    return path


def _training_summary(pipeline_root: str, trainer_id: str) -> dict:
    found = glob.glob(os.path.join(pipeline_root, trainer_id, "model_run", "*", names.TRAINING_SUMMARY_FILE))
    assert len(found) == 1, found
    with open(found[0]) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    # Scale 1: the source scans (~1600x960) are at least the working size, so ingestion really resizes to it.
    synth.generate("cbis-ddsm", root / "data", patients=PATIENTS, seed=SEED, scale=1.0)
    weights = _stand_in_backbone_weights(str(root / "resnet50_notop.h5"))
    out = root / "out"
    run = subprocess.run(
        [sys.executable, "-m", "mammo_tfx.cli", "run", "--profile", "production-smoke",
         "--data", f"cbis-ddsm={root / 'data'}", "--out", str(out),
         "--set", f"patch_training.backbone_weights={weights}"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return run, out


def test_the_production_smoke_run_trains_gates_and_pushes_a_full_size_model(smoke_run) -> None:
    run, out = smoke_run
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-5000:]
    pipeline_root = os.path.join(str(out), "pipeline_root")
    outputs = collect_outputs(os.path.join(str(out), "metadata.sqlite"))

    record = next(tf.data.TFRecordDataset(glob.glob(os.path.join(outputs.examples_uri, "Split-test", "*.gz")),
                                          "GZIP").as_numpy_iterator())
    image_png = tf.train.Example.FromString(record).features.feature[names.IMAGE_PNG].bytes_list.value[0]
    assert tf.io.decode_png(image_png, dtype=tf.uint16).shape == (ROWS, COLS, 1)
    assert re.search(r"PatchSampler: finished .* mass_malignant \d+", console)

    patch = _training_summary(pipeline_root, "Trainer_patch")
    assert patch["hparams"]["backbone"] == "resnet50" and patch["hparams"]["patch_size"] == 224
    assert patch["hparams"]["backbone_weights"].endswith("resnet50_notop.h5")
    assert [step["scope"] for step in patch["steps"]] == ["new_layers", "top_of_trunk", "all"]
    whole = _training_summary(pipeline_root, "Trainer_image")
    assert whole["patch_hparams"]["backbone"] == "resnet50"
    assert whole["hparams"]["image_size"] == [ROWS, COLS]
    assert whole["hparams"]["top_block"]["depths"] == [512, 512]
    assert whole["hparams"]["top_block"]["repetitions"] == [2, 2]
    assert [step["scope"] for step in whole["steps"]] == ["new_layers", "all"]

    with open(os.path.join(outputs.blessing_uri, names.GATE_RESULTS_FILE)) as f:
        gate = json.load(f)
    assert gate["blessed"] is True
    assert {result["unit"] for result in gate["gates"] if result["name"] == "overall_auc"} == {"breast"}
    assert outputs.pushed_uri and os.path.isdir(outputs.pushed_uri)

    _check_the_pushed_model_answers_as_its_export_promises(outputs.pushed_uri, image_png)


# ResNet50's trunk output has one cell per 32x32 input pixels; the patch head pools the cells of a 224-pixel patch.
RESNET50_STRIDE = 32


def _check_the_pushed_model_answers_as_its_export_promises(pushed_dir: str, image_png: bytes) -> None:
    """What a broken full-size model would fail: the exported geometry, `score` as the mean of the four flips'
    single-view probabilities and `probability` as its calibration, the same answer through `serving_examples`,
    and a heatmap on the patch grid of the full image."""
    info = read_model_info(pushed_dir)
    assert list(info.image_hparams["image_size"]) == [ROWS, COLS]
    loaded = tf.saved_model.load(pushed_dir)
    assert {names.DEFAULT_SIGNATURE, names.EXAMPLES_SIGNATURE, names.EXAM_SIGNATURE,
            names.HEATMAP_SIGNATURE} <= set(loaded.signatures)
    image_bytes = tf.constant([image_png])
    answer = {name: tensor.numpy()
              for name, tensor in loaded.signatures[names.DEFAULT_SIGNATURE](image_bytes=image_bytes).items()}
    # The reference: the export's Keras model on the Transform layer's output and its three flips.
    transformed = transform_images(loaded.tft_layer, image_bytes[:, None])
    flips = [transformed, tf.reverse(transformed, [2]), tf.reverse(transformed, [1]), tf.reverse(transformed, [1, 2])]
    single = loaded.model(tf.concat(flips, axis=0), training=False).numpy()[:, 1]
    assert np.all((single >= 0) & (single <= 1))
    np.testing.assert_allclose(answer[names.PROBABILITY_SINGLE], single[:1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(answer[names.SCORE], [np.mean(single)], rtol=1e-4, atol=1e-6)
    record = read_screening_record(pushed_dir)
    assert record is not None and record.fitted, record and record.reason
    np.testing.assert_allclose(answer[names.PROBABILITY], record.calibration.apply(answer[names.SCORE]), rtol=1e-4,
                               atol=1e-6)

    example = tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_PNG: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_png]))}))
    from_examples = loaded.signatures[names.EXAMPLES_SIGNATURE](
        **{names.EXAMPLES_INPUT: tf.constant([example.SerializeToString()])})
    for name in (names.PROBABILITY, names.SCORE, names.PROBABILITY_SINGLE):
        np.testing.assert_allclose(from_examples[name].numpy()[0], answer[name][0], rtol=1e-4, atol=1e-6,
                                   err_msg=name)

    heatmap = loaded.signatures[names.HEATMAP_SIGNATURE](image_bytes=image_bytes)
    window = 224 // RESNET50_STRIDE - 2 * info.patch_hparams["head_border_cells"]
    assert heatmap["heatmap"].shape == (1, ROWS // RESNET50_STRIDE - window + 1, COLS // RESNET50_STRIDE - window + 1)
