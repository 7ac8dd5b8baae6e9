"""The lesion-class contract: ingestion's masks, the patch sampler's labels and the patch classifier's outputs all
follow mammo_tfx/lesion_classes.py."""
from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from mammo_tfx import lesion_classes
from mammo_tfx.ingest.masks import merge_class_layers
from mammo_tfx.lesion_classes import (CLASS_NAMES, CLASS_PRIORITY, LESION_CLASSES, LESION_KINDS, MALIGNANT_CLASSES,
                                      NUM_CLASSES, class_code)
from mammo_tfx.patches.regions import majority_class
from trainer_module.export import malignant_probability
from trainer_module.hparams import PatchHParams
from trainer_module.patch_model import build_patch_model


def test_every_lesion_kind_and_pathology_has_one_code_and_the_codes_are_the_classes():
    codes = {class_code(kind, malignant) for kind in LESION_KINDS for malignant in (True, False)}
    assert codes == set(LESION_CLASSES) == set(CLASS_NAMES) - {lesion_classes.BACKGROUND}
    assert sorted(CLASS_NAMES) == list(range(NUM_CLASSES))
    assert {class_code(kind, True) for kind in LESION_KINDS} == MALIGNANT_CLASSES
    assert sorted(CLASS_PRIORITY) == sorted(LESION_CLASSES)


def test_ingestion_masks_and_patch_labels_resolve_every_overlap_alike():
    """Where two lesion classes overlap, the painted pixel (ingestion) and a region with equally many pixels of both
    classes (patch sampling) take the same class: the one first in CLASS_PRIORITY."""
    for first, second in itertools.combinations(LESION_CLASSES, 2):
        painted = merge_class_layers({first: np.ones((1, 1), bool), second: np.ones((1, 1), bool)}, (1, 1))[0, 0]
        labelled = majority_class(np.array([[first, second]], np.uint8))
        expected = min((first, second), key=CLASS_PRIORITY.index)
        assert painted == labelled == expected, (first, second)


def test_the_patch_classifier_has_one_output_per_code_and_sums_the_malignant_ones():
    model = build_patch_model(PatchHParams.from_dict({"backbone": "small", "patch_size": 32,
                                                      "small_backbone_widths": [4]}))
    assert model.output_shape[-1] == NUM_CLASSES
    one_hot = tf.one_hot(list(CLASS_NAMES), NUM_CLASSES)
    np.testing.assert_array_equal(malignant_probability(one_hot).numpy(),
                                  [float(code in MALIGNANT_CLASSES) for code in CLASS_NAMES])
