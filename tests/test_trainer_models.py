"""Model builders and the layer-wise schedule: shapes, cut points, trainable layers by name."""
import dataclasses

import numpy as np
import pytest
import tf_keras

from pipeline.config import load_config
from trainer_module.backbone_weights import BackboneWeightsUnavailable
from trainer_module.backbones import backbone_spec, build_trunk
from trainer_module.export import heatmap_window, patch_heatmap
from trainer_module.hparams import ImageHParams, PatchHParams, TopBlockSpec, TrainScope
from trainer_module.patch_model import PATCH_HEAD_NAME, build_patch_model
from trainer_module.schedule import set_trainable_scope, set_weight_decay, trainable_layer_names
from trainer_module.whole_image_model import IMAGE_HEAD_NAME, build_whole_image_model


def tiny_patch_model(dropout: float = 0.0):
    return build_patch_model(dataclasses.replace(load_config("test").patch_training, dropout=dropout))


def test_patch_and_whole_image_models_have_the_expected_outputs():
    patch_model = tiny_patch_model(dropout=0.5)
    patches = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32")
    probabilities = patch_model(patches).numpy()
    assert probabilities.shape == (3, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    image_model = build_whole_image_model(patch_model.get_layer("trunk"), load_config("test").image_training)
    images = np.random.default_rng(1).normal(size=(2, 64, 48, 1)).astype("float32")
    assert image_model(images).shape == (2, 2)
    # Small trunk of stride 8: 64x48 -> 8x6, then each resnet top stage halves.
    assert image_model.get_layer("top1_unit1_out").output_shape == (None, 4, 3, 16)
    assert image_model.get_layer("top2_unit1_out").output_shape == (None, 2, 2, 16)
    # The whole-image model shares (not copies) the patch trunk.
    assert image_model.get_layer("trunk") is patch_model.get_layer("trunk")


def test_paper_geometry_resnet50_top_blocks_at_1152x896():
    trunk = build_trunk("resnet50")
    assert trunk.output_shape == (None, None, None, 2048)
    model = build_whole_image_model(trunk, ImageHParams())
    assert model.get_layer("top1_unit2_out").output_shape == (None, 18, 14, 1024)
    assert model.get_layer("top2_unit2_out").output_shape == (None, 9, 7, 1024)
    assert model.get_layer("top1_unit1_0_conv").strides == (2, 2)  # projection shortcut, stride 2
    assert model.get_layer("top1_unit1_2_conv").kernel_size == (3, 3)


def test_vgg16_trunk_with_vgg_512x1_top():
    hparams = dataclasses.replace(ImageHParams(), image_size=(128, 96),
                                  top_block=TopBlockSpec("vgg", (512, 512), (1, 1)))
    model = build_whole_image_model(build_trunk("vgg16"), hparams)
    assert model.get_layer("trunk").output_shape[-1] == 512
    assert model.get_layer("top1_pool").output_shape == (None, 2, 2, 512)
    assert model.get_layer("top2_pool").output_shape == (None, 1, 1, 512)


def test_patch_schedule_trains_head_then_top_of_trunk_then_all_by_name():
    model = tiny_patch_model()
    spec = backbone_spec("small", (4, 8, 8))
    all_weighted = {"block1_conv1", "block1_bn1", "block1_conv2", "block1_bn2", "block2_conv1", "block2_bn1",
                    "block2_conv2", "block2_bn2", "block3_conv1", "block3_bn1", "block3_conv2", "block3_bn2",
                    PATCH_HEAD_NAME}
    set_trainable_scope(model, TrainScope.NEW_LAYERS, spec)
    assert trainable_layer_names(model) == {PATCH_HEAD_NAME}
    set_trainable_scope(model, TrainScope.TOP_OF_TRUNK, spec)
    assert trainable_layer_names(model) == {PATCH_HEAD_NAME, "block3_conv1", "block3_bn1", "block3_conv2", "block3_bn2"}
    set_trainable_scope(model, TrainScope.ALL, spec)
    assert trainable_layer_names(model) == all_weighted


def test_resnet50_top_of_trunk_starts_at_conv5_block1():
    model = build_patch_model(PatchHParams())
    set_trainable_scope(model, TrainScope.TOP_OF_TRUNK, backbone_spec("resnet50"))
    trunk_names = trainable_layer_names(model) - {PATCH_HEAD_NAME}
    assert "conv5_block1_1_conv" in trunk_names and "conv5_block3_3_bn" in trunk_names
    assert all(name.startswith("conv5_") for name in trunk_names)
    assert "conv4_block6_3_conv" not in trunk_names


def test_whole_image_new_layers_step_freezes_the_trunk():
    patch_model = tiny_patch_model()
    model = build_whole_image_model(patch_model.get_layer("trunk"), load_config("test").image_training)
    spec = backbone_spec("small", (4, 8, 8))
    set_trainable_scope(model, TrainScope.NEW_LAYERS, spec)
    names = trainable_layer_names(model)
    assert IMAGE_HEAD_NAME in names and "top1_unit1_1_conv" in names
    assert not any(name.startswith("block") for name in names)
    set_trainable_scope(model, TrainScope.ALL, spec)
    assert "block1_conv1" in trainable_layer_names(model)


def test_frozen_batch_norm_runs_in_inference_mode():
    model = tiny_patch_model()
    set_trainable_scope(model, TrainScope.NEW_LAYERS, backbone_spec("small", (4, 8, 8)))
    batch_norm = model.get_layer("trunk").get_layer("block1_bn1")
    moving_mean = batch_norm.moving_mean.numpy().copy()
    images = np.random.default_rng(2).normal(3.0, 2.0, size=(4, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(model(images, training=True), model(images, training=False), rtol=1e-5)
    np.testing.assert_array_equal(batch_norm.moving_mean.numpy(), moving_mean)


def test_weight_decay_is_reset_on_the_new_layers_only():
    model = tiny_patch_model()
    before = float(sum(model.losses))
    set_weight_decay(model, 10 * load_config("test").patch_training.weight_decay)
    assert float(sum(model.losses)) == pytest.approx(10 * before, rel=1e-5)
    assert all(layer.kernel_regularizer is None for layer in model.get_layer("trunk").layers
               if hasattr(layer, "kernel_regularizer"))


def test_missing_local_weights_file_is_a_clear_error(tmp_path):
    # 'imagenet' (the Keras cache, a download) and bucket files: tests/test_backbone_weights.py.
    missing = str(tmp_path / "resnet50_notop.h5")
    with pytest.raises(BackboneWeightsUnavailable, match="backbone_weights=.*resnet50_notop.h5"):
        build_trunk("resnet50", missing)


def test_demo_profile_keeps_the_paper_geometry_at_quarter_scale():
    patch = load_config("demo").patch_training
    assert heatmap_window(PatchHParams()) == 7
    # The demo head pools the central 3x3 of the 7x7 cells of a 56-px patch (see head_border_cells).
    assert heatmap_window(patch) == 3 and patch.head_border_cells == 2
    model = build_whole_image_model(build_patch_model(patch).get_layer("trunk"), load_config("demo").image_training)
    assert model.get_layer("trunk").output_shape == (None, None, None, 64)
    assert model.get_layer("top1_unit1_out").output_shape == (None, 18, 14, 64)
    assert model.get_layer("top2_unit1_out").output_shape == (None, 9, 7, 64)
    with pytest.raises(ValueError, match="multiple of"):
        heatmap_window(dataclasses.replace(patch, patch_size=60))


def test_with_the_head_border_cut_the_heatmap_equals_the_patch_classifier_on_each_crop():
    # The small trunk's receptive field is 36 px at stride 8: with 2 border cells cut from the 7x7 cells of a
    # 56-px patch, the head sees no zero padding, so running it convolutionally over a whole image (the heatmap,
    # stage 2's trunk) computes exactly what it computed on the patch crops it was trained on.
    # Seeded: with some random initial weights the unbordered head's disagreement can fall inside the tolerance.
    tf_keras.utils.set_random_seed(0)
    hparams = dataclasses.replace(load_config("test").patch_training, patch_size=56, head_border_cells=2)
    model = build_patch_model(hparams)
    assert model.get_layer("patch_centre").output_shape == (None, 3, 3, 8)
    image = np.random.default_rng(3).normal(size=(1, 96, 80, 1)).astype("float32")
    heatmap = patch_heatmap(model, image, heatmap_window(hparams)).numpy()[0]
    assert heatmap.shape == (96 // 8 - 3 + 1, 80 // 8 - 3 + 1)
    crops = [(0, 0), (8, 16), (40, 24)]
    patches = np.concatenate([image[:, r:r + 56, c:c + 56] for r, c in crops])
    probabilities = model(patches, training=False).numpy()
    malignant = probabilities[:, 1] + probabilities[:, 3]
    # Crop at (r, c) starts at cell (r/8, c/8); its pooled centre starts 2 cells further.
    expected = [heatmap[r // 8 + 2, c // 8 + 2] for r, c in crops]
    np.testing.assert_allclose(malignant, expected, rtol=1e-4, atol=1e-5)

    # Without the border the head pools cells that saw the patch's zero padding: crops and heatmap disagree.
    plain = dataclasses.replace(hparams, head_border_cells=0)
    plain_model = build_patch_model(plain)
    plain_heatmap = patch_heatmap(plain_model, image, heatmap_window(plain)).numpy()[0]
    plain_probabilities = plain_model(patches, training=False).numpy()
    plain_malignant = plain_probabilities[:, 1] + plain_probabilities[:, 3]
    assert not np.allclose(plain_malignant, [plain_heatmap[r // 8, c // 8] for r, c in crops], rtol=1e-4, atol=1e-5)


def test_a_head_border_that_leaves_no_cell_is_refused():
    with pytest.raises(ValueError, match="leaves no cell"):
        heatmap_window(dataclasses.replace(load_config("demo").patch_training, head_border_cells=4))
    with pytest.raises(ValueError, match="head_border_cells must be >= 0"):
        dataclasses.replace(load_config("demo").patch_training, head_border_cells=-1)


def test_the_training_seed_fixes_initial_weights_and_dropout_and_op_determinism_is_scoped():
    from tensorflow.python.framework import config as tf_config

    from trainer_module.runtime import reproducible

    hparams = dataclasses.replace(load_config("test").patch_training, dropout=0.5)
    patches = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype("float32")

    def built_and_dropped(seed: int) -> tuple[list, np.ndarray]:
        with reproducible(dataclasses.replace(hparams, seed=seed)):
            assert tf_config.is_op_determinism_enabled()
            model = build_patch_model(hparams)
            return model.get_weights(), model(patches, training=True).numpy()  # training: dropout draws

    weights, outputs = built_and_dropped(3)
    again_weights, again_outputs = built_and_dropped(3)
    other_weights, other_outputs = built_and_dropped(4)
    assert all(np.array_equal(one, other) for one, other in zip(weights, again_weights))
    np.testing.assert_array_equal(outputs, again_outputs)
    assert not all(np.array_equal(one, other) for one, other in zip(weights, other_weights))
    assert not np.array_equal(outputs, other_outputs)
    # Off again after the Trainer (later components in the LocalDagRunner's process run at full speed), and never
    # turned on when the configuration says not to.
    assert not tf_config.is_op_determinism_enabled()
    with reproducible(dataclasses.replace(hparams, deterministic_ops=False)):
        assert not tf_config.is_op_determinism_enabled()
