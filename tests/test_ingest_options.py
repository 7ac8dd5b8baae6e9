"""IngestOptions validation and its JSON round trip; salted keys."""
from __future__ import annotations

import json

import pytest

from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.phi import salted_key


def test_round_trip_through_json():
    options = IngestOptions(height=576, width=448, resize_mode="pad", patient_salt="abc",
                            inbreast_positive_birads=("4C", "5"), png_compress_level=6)
    restored = IngestOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert restored == options
    assert restored.inbreast_positive_birads == ("4c", "5")  # normalised to lower case
    assert IngestOptions.from_dict({}) == IngestOptions()


def test_unknown_keys_are_errors():
    with pytest.raises(ValueError, match=r"unknown IngestOptions keys \['heigth'\]"):
        IngestOptions.from_dict({"heigth": 10})


@pytest.mark.parametrize("bad", [dict(resize_mode="crop"), dict(height=4), dict(png_compress_level=10),
                                 dict(patient_salt=""), dict(inbreast_negative_birads=("1", "4a")),
                                 dict(inbreast_positive_birads="4a"), dict(point_lesion_radius_px=0)])
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
