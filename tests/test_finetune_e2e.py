"""A fine-tune run (`mammo-tfx run --profile finetune --base-model MODEL`) from a pushed whole-image model on a
labels-only dataset (a `folder` export): no patch stage runs, the Trainer starts from MODEL's weights, the gate compares with MODEL and
the blessed model is pushed as MODEL's next version."""
import json
import os

import numpy as np
import pytest
import yaml

from mammo_tfx.evaluation.gates import BASELINE_GATE, read_gate_report
from mammo_tfx.names import TRAINING_SUMMARY_FILE
from mammo_tfx.serving.repository import ModelRepository, find_model_folder, list_complete_versions
from pipeline.outputs import collect_outputs, latest_output_uri, open_store
from pipeline.pipeline import IMAGE_TRAINER_ID, PATCH_TRAINER_ID
from pipeline.runners import LocalRunLayout
from tests.conftest import encode_png16, export_untrained_whole_image_model, phantom, user_console
from trainer_module import image_trainer

pytestmark = pytest.mark.e2e

WORKING_SIZE = (64, 48)  # the test profile's ingestion size
BASE_VERSION = "1700000000"

# The test profile's mechanics-sized values on top of the finetune profile; the finetune profile's own schedule
# (all layers), augmentation and the must-beat-the-base-model gate rule stay.
SMALL_RUN = {
    "ingest": {"height": WORKING_SIZE[0], "width": WORKING_SIZE[1]},
    "splits": {"train": 6, "eval": 2, "test": 2},
    "beam": {"direct_running_mode": "in_memory", "direct_num_workers": 1},
    "image_training": {"schedule": [{"scope": "all", "learning_rate": 3e-3, "epochs": 4}], "steps_per_epoch": 4,
                       "batch_size": 4, "shuffle_buffer": 16, "early_stopping_patience": None,
                       "mixed_precision": False},
    "evaluation": {"gate_unit": "image", "min_overall_auc": 0.0, "min_dataset_auc": {}, "min_slice_size": 1,
                   "min_examples_per_class": 1, "insufficient_blocks_blessing": False,
                   "compute_confidence_intervals": False, "bootstrap_samples": 20},
}


def _site_dataset(root, per_class: int = 40, seed: int = 5) -> None:
    """A site's labels-only export in the `folder` layout (one PNG per patient under neg/ and pos/): phantom breasts,
    the malignant ones with a bright mass, a signal a few steps of training pick up."""
    rng = np.random.default_rng(seed)
    rows, cols = 4 * WORKING_SIZE[0], 4 * WORKING_SIZE[1]
    r, c = np.mgrid[0:rows, 0:cols]
    for label in ("neg", "pos"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            image = phantom(rows, cols, bits=16).astype(np.float64) * 0.5
            image += rng.normal(0, 1500, image.shape) * (image > 0)
            if label == "pos":
                centre = (rng.uniform(0.3, 0.7) * rows, rng.uniform(0.05, 0.3) * cols)
                image[(r - centre[0]) ** 2 + (c - centre[1]) ** 2 <= (rows / 10) ** 2] = 65000
            (root / label / f"site-{label}-{index:03d}.png").write_bytes(encode_png16(image.clip(0, 65535)
                                                                                      .astype(np.uint16)))


def _pushed_base_model(base_dir: str, work_dir: str) -> tuple:
    """A whole-image export (tiny untrained models, trainer_module's real export) pushed as version BASE_VERSION of a
    base folder, whose output layer answers the same for every image (AUC 0.5 on any data); and the digest of the
    weights of the model it exported, taken from the model in memory."""
    version_dir = os.path.join(base_dir, BASE_VERSION)
    model = export_untrained_whole_image_model(work_dir, version_dir, WORKING_SIZE, image_head_scale=0.0)
    return version_dir, image_trainer.weights_digest(model)


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    base_dir = str(root / "serving" / "mammo")
    version_dir, base_digest = _pushed_base_model(base_dir, str(root / "base_work"))
    _site_dataset(root / "site")
    config_file = root / "small.yaml"
    config_file.write_text(yaml.safe_dump(SMALL_RUN))
    out = root / "run"
    run = user_console("run", "--profile", "finetune", "--base-model", base_dir, f"--data=folder={root / 'site'}",
                       "--config", str(config_file), "--out", str(out), timeout=1100)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    layout = LocalRunLayout(str(out))
    return {"base_dir": base_dir, "version_dir": version_dir, "base_digest": base_digest, "layout": layout,
            "outputs": collect_outputs(layout.metadata_path), "run": run}


def _executed_nodes(metadata_path: str) -> set:
    store = open_store(metadata_path)
    nodes = set()
    for context in store.get_contexts_by_type("node"):
        if store.get_executions_by_context(context.id):
            nodes.add(context.name.split(".")[-1])
    return nodes


def test_a_fine_tune_trains_no_patch_stage(finetune_run):
    nodes = _executed_nodes(finetune_run["layout"].metadata_path)
    assert IMAGE_TRAINER_ID in nodes and "MammoExampleGen" in nodes and "Transform" in nodes
    assert PATCH_TRAINER_ID not in nodes and "PatchSampler" not in nodes


def test_the_trainer_starts_from_the_base_models_weights(finetune_run):
    run_dir = latest_output_uri(open_store(finetune_run["layout"].metadata_path), IMAGE_TRAINER_ID, "model_run")
    with open(os.path.join(run_dir, TRAINING_SUMMARY_FILE)) as handle:
        summary = json.load(handle)
    assert summary["hparams"]["init_from"] == finetune_run["version_dir"]
    # The weights the Trainer started from are those of the model the base export was written from.
    assert summary["initial_weights_sha256"] == finetune_run["base_digest"]
    # ...and trained from there.
    assert summary["steps"] and summary["steps"][0]["scope"] == "all"


def test_the_gate_compares_with_the_base_model_and_the_blessed_model_is_its_next_version(finetune_run):
    outputs = finetune_run["outputs"]
    report = read_gate_report(outputs.blessing_uri)
    gate = {g.name: g for g in report.gates}[BASELINE_GATE]
    assert gate.status in ("passed", "failed") and gate.bound == 0.0 and "must beat it" in gate.detail
    assert report.blessed, [g.detail for g in report.gates]
    versions = list_complete_versions(finetune_run["base_dir"])
    assert len(versions) == 2 and str(versions[0]) == BASE_VERSION
    newest = find_model_folder(finetune_run["base_dir"])
    assert newest.version == versions[-1] and outputs.pushed_uri.rstrip("/") == newest.path
    # What `mammo-tfx serve` on the base folder loads (and warms up): the new version.
    assert ModelRepository(finetune_run["base_dir"]).poll_once() == newest.version
    card = json.loads(open(os.path.join(newest.path, "assets.extra", "model_card.json")).read())
    assert card["baseline"]["path"] == finetune_run["version_dir"] and card["baseline"]["version"] == BASE_VERSION
    assert card["baseline"]["candidate_auc"] > card["baseline"]["baseline_auc"] == pytest.approx(0.5)
    assert card["profile"]["base_model"] == finetune_run["base_dir"]
    assert sum(card["data"]["split_counts"]["train"].values()) > 0
