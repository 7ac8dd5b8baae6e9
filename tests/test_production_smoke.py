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
    image = tf.io.decode_png(tf.train.Example.FromString(record).features.feature[names.IMAGE_PNG].bytes_list.value[0],
                             dtype=tf.uint16)
    assert image.shape == (ROWS, COLS, 1)
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

    exported = tf.saved_model.load(outputs.model_export_dir)
    assert {names.DEFAULT_SIGNATURE, names.EXAMPLES_SIGNATURE, names.EXAM_SIGNATURE,
            names.HEATMAP_SIGNATURE} <= set(exported.signatures)

    with open(os.path.join(outputs.blessing_uri, names.GATE_RESULTS_FILE)) as f:
        gate = json.load(f)
    assert gate["blessed"] is True
    assert {result["unit"] for result in gate["gates"] if result["name"] == "overall_auc"} == {"breast"}
    assert outputs.pushed_uri and os.path.isdir(outputs.pushed_uri)

    served = tf.saved_model.load(outputs.pushed_uri).signatures[names.DEFAULT_SIGNATURE]
    pixels = np.random.default_rng(0).integers(0, 65535, (ROWS, COLS, 1), dtype=np.uint16)
    answer = served(**{names.IMAGE_BYTES_INPUT: tf.constant([tf.io.encode_png(pixels).numpy()])})
    probability = float(answer[names.PROBABILITY][0])
    assert 0.0 <= probability <= 1.0
