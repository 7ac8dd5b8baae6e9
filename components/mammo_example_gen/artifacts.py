"""Typed artifacts produced by MammoExampleGen."""
from tfx.types.artifact import Artifact


class QuarantineReport(Artifact):
    """Records that did not become examples: `quarantine.csv` (one row per record) and `summary.json` (counts).

    The type name is the import path of this class as Kubeflow V2 containers resolve it (`package.Class`; see
    `components/__init__.py`). Custom artifact types may not declare PROPERTIES for the V2 compiler, so the counts
    are custom properties.
    """

    TYPE_NAME = "components.QuarantineReport"
