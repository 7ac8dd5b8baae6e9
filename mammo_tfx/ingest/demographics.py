"""Population slices from what a dataset says of a woman: an age band, never the age itself."""
from __future__ import annotations

import math
import re
from typing import Optional, Union

from mammo_tfx.ingest.records import UNKNOWN

# Lower bounds of the bands of records.AGE_GROUPS after "<50"; ages over 89 fall in the top band like any other 70+.
_BANDS = ((70, "70+"), (60, "60-69"), (50, "50-59"))
# DICOM Age String (AS): nnnD, nnnW, nnnM or nnnY.
_DICOM_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)


def age_group(age: Optional[Union[float, int, str]]) -> str:
    """The band of an age in years (a number, a numeric string such as RSNA's "61.0", or a DICOM age string such
    as "061Y"); "unknown" for a blank, unparsable or implausible value."""
    years = _years(age)
    if years is None:
        return UNKNOWN
    for lower, band in _BANDS:
        if years >= lower:
            return band
    return "<50"


def _years(age: Optional[Union[float, int, str]]) -> Optional[float]:
    if age is None or isinstance(age, bool):
        return None
    if isinstance(age, str):
        match = _DICOM_AGE.match(age)
        if match:
            value, unit = int(match.group(1)), match.group(2).upper()
            return value / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]
        try:
            age = float(age.strip())
        except ValueError:
            return None
    years = float(age)
    if math.isnan(years) or not 0 < years < 130:
        return None
    return years


def device_name(manufacturer: Optional[str], model: Optional[str] = None) -> str:
    """The device slice value from a manufacturer and model name (DICOM Manufacturer / ManufacturerModelName, or a
    dataset's columns of the same meaning): "HOLOGIC, Inc. Selenia Dimensions"; "unknown" when neither is given."""
    maker, model_name = (" ".join(str(part or "").split()) for part in (manufacturer, model))
    # Some model names already start with the maker's name ("Planmed Nuance"): no "Planmed Planmed Nuance".
    if maker and model_name.lower().startswith(maker.lower()):
        return model_name
    return " ".join(part for part in (maker, model_name) if part) or UNKNOWN
