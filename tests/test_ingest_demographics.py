import pytest

from mammo_tfx.ingest.demographics import age_group
from mammo_tfx.ingest.records import AGE_GROUPS, ScanRecord


@pytest.mark.parametrize("age, band", [
    (49.9, "<50"), (50, "50-59"), ("61.0", "60-69"), ("070Y", "70+"), (93, "70+"), ("048Y", "<50"),
    ("600M", "50-59"), (None, "unknown"), ("", "unknown"), ("n/a", "unknown"), (float("nan"), "unknown"),
    (0, "unknown"), (150, "unknown"), (True, "unknown"),
])
def test_age_bands_never_keep_the_age(age, band):
    assert age_group(age) == band
    assert band in AGE_GROUPS


def test_records_default_to_unknown_population_values_and_refuse_others():
    record = ScanRecord(dataset="folder", record_id="r", image_path="x.dcm", patient_id="p", image_id="i", label=0)
    assert (record.age_group, record.site, record.device, record.implant) == ("unknown",) * 4
    with pytest.raises(ValueError, match="age_group '61'"):
        ScanRecord(dataset="folder", record_id="r", image_path="x.dcm", patient_id="p", image_id="i", label=0,
                   age_group="61")
    with pytest.raises(ValueError, match="implant 'maybe'"):
        ScanRecord(dataset="folder", record_id="r", image_path="x.dcm", patient_id="p", image_id="i", label=0,
                   implant="maybe")
