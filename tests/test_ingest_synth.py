"""Ingestion of the synthetic datasets of mammo_tfx.synth against their ground truth (SynthSummary)."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.lesion_classes import class_code
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.records import QuarantineEntry, ScanRecord
from mammo_tfx.synth import generate

OPTIONS = IngestOptions(height=96, width=72)


def feature(features, key):
    item = features[key]
    if item.bytes_list.value:
        return item.bytes_list.value[0].decode()
    return item.int64_list.value[0]


def ingest_all(layout: str, root: str) -> tuple[int, dict[str, object]]:
    """(number listed, record id -> features or QuarantineEntry)."""
    listed, results = 0, {}
    for item in list_records(layout, root, OPTIONS):
        listed += 1
        if isinstance(item, ScanRecord):
            result = process_record(item, OPTIONS)
            results[item.record_id] = result if isinstance(result, QuarantineEntry) else result.features.feature
        else:
            results[item.record] = item
    return listed, results


@pytest.mark.parametrize("layout,scale", [("cbis-ddsm", 0.1), ("inbreast", 0.1), ("mias", 1.0)])
def test_synthetic_dataset_matches_its_ground_truth(tmp_path, layout, scale):
    summary = generate(layout, tmp_path, patients=2, seed=7, inject_faults=True, scale=scale)
    listed, results = ingest_all(layout, str(tmp_path))
    assert listed == len(results) == summary.n_images  # ingested + quarantined + excluded == listed
    fault_files = {os.path.normpath(fault.path): fault.kind for fault in summary.faults}
    assert summary.faults
    patient_keys: dict[str, set[str]] = {}
    for image in summary.images:
        result = results[image.image_id]
        if image.fault is not None:
            assert isinstance(result, QuarantineEntry) and result.status == "quarantined", image.image_id
            assert fault_files.get(os.path.normpath(result.file)) is not None, (result.file, image.fault)
            continue
        if image.label is None:
            assert isinstance(result, QuarantineEntry) and result.status == "excluded"
            continue
        assert not isinstance(result, QuarantineEntry), result
        assert feature(result, "label") == image.label
        assert feature(result, "laterality") == image.laterality
        assert feature(result, "view") == image.view
        assert feature(result, "source_split") == image.source_split
        if layout != "mias":  # MIAS has BG F/G/D (-> 1..3); the synth summary leaves its density at 0
            assert feature(result, "density") == image.density
        assert feature(result, "mask_resized") == int(image.mask_size_mismatch)
        assert feature(result, "mask_complete") == int(all(lesion.located for lesion in image.lesions))
        assert (feature(result, "original_height"), feature(result, "original_width")) == (image.height, image.width)
        mask = np.asarray(Image.open(io.BytesIO(result["mask_png"].bytes_list.value[0])))
        assert set(np.unique(mask)) <= {0} | {class_code(l.kind, l.malignant) for l in image.lesions}
        for lesion in image.lesions:
            if lesion.located:
                row = lesion.center_rc[0] * OPTIONS.height / image.height
                col = lesion.center_rc[1] * OPTIONS.width / image.width
                reach = lesion.radius_px * OPTIONS.height / image.height + 2
                window = mask[max(0, int(row - reach)):int(row + reach) + 1, max(0, int(col - reach)):int(col + reach) + 1]
                assert window.any(), (image.image_id, lesion)
        patient_keys.setdefault(image.patient_id, set()).add(feature(result, "patient_key"))
    assert all(len(keys) == 1 for keys in patient_keys.values())
    assert len({next(iter(keys)) for keys in patient_keys.values()}) == len(patient_keys)
