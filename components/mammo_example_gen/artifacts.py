"""Typed artifacts produced by MammoExampleGen."""
from tfx.types.artifact import Artifact, Property, PropertyType


class QuarantineReport(Artifact):
    """Records that did not become examples: `quarantine.csv` (one row per record) and `summary.json` (counts)."""

    TYPE_NAME = "MammoQuarantineReport"
    PROPERTIES = {
        "span": Property(type=PropertyType.INT),
    }
