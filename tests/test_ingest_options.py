"""IngestOptions validation and its JSON round trip; salted keys."""
from __future__ import annotations

import json

import pytest
from tfx.utils import proto_utils

from components.mammo_example_gen.executor import decode_custom_config, encode_custom_config
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.phi import salted_key
from pipeline.config import load_config


def test_round_trip_through_json():
    options = IngestOptions(height=576, width=448, resize_mode="pad", patient_salt_file="gs://secrets/salt",
                            inbreast_positive_birads=("4C", "5"), png_compress_level=6)
    restored = IngestOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert restored == options
    # The salt never travels: the executor reads it where it runs.
    salted = IngestOptions(patient_salt="abc-secret")
    assert "abc-secret" not in json.dumps(salted.to_dict()) + repr(salted)
    assert IngestOptions.from_dict(salted.to_dict()).patient_salt == IngestOptions().patient_salt
    assert restored.inbreast_positive_birads == ("4c", "5")  # normalised to lower case
    assert IngestOptions.from_dict({}) == IngestOptions()


def test_unknown_keys_are_errors():
    with pytest.raises(ValueError, match=r"Unknown IngestOptions keys \['heigth'\]; "
                                         r"expected a subset of \['dicom_decoding_plugin', 'folder_requires_mammogram_header', 'height'"):
        IngestOptions.from_dict({"heigth": 10})


@pytest.mark.parametrize("bad", [dict(resize_mode="crop"), dict(height=4), dict(png_compress_level=10),
                                 dict(patient_salt=""), dict(inbreast_negative_birads=("1", "4a")),
                                 dict(inbreast_positive_birads="4a"), dict(point_lesion_radius_px=0),
                                 dict(max_source_pixels=0), dict(record_timeout_s=0), dict(record_timeout_s=-1.0)])
def test_invalid_values_are_rejected(bad):
    with pytest.raises(ValueError):
        IngestOptions(**bad)


def test_salted_key():
    key = salted_key("salt", "mias", "mdb001")
    assert len(key) == 32 and key == salted_key("salt", "mias", "mdb001")
    assert key != salted_key("pepper", "mias", "mdb001") != salted_key("salt", "inbreast", "mdb001")
    # Joining with a separator keeps (dataset, id) pairs that concatenate alike apart.
    assert salted_key("s", "ab", "c") != salted_key("s", "a", "bc")
    with pytest.raises(ValueError):
        salted_key("salt", "mias", "")


def test_input_limits_come_from_the_config_and_reach_the_example_gen():
    config = load_config("production", overrides=["ingest.max_source_pixels=80000000", "ingest.record_timeout_s=30"])
    assert (config.ingest.max_source_pixels, config.ingest.record_timeout_s) == (80_000_000, 30.0)
    assert load_config("demo").ingest.max_source_pixels == IngestOptions().max_source_pixels == 50_000_000
    shipped = decode_custom_config(proto_utils.proto_to_json(encode_custom_config(config.ingest)))
    assert shipped == config.ingest
