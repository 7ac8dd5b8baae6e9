"""Model card (Markdown + JSON) for the gated whole-image model: data counts, gate results, profile, lineage.

Only the artifact type lives here, so that `components/__init__.py` can export it (KFP v2 step containers import
custom artifact classes back from their TYPE_NAME) without importing TFMA. The component is in `.component`.
"""
from tfx.types.artifact import Artifact


class ModelCard(Artifact):
    """`model_card.md` and `model_card.json` describing one gated model; custom properties `blessed`, `pushed`
    and, when pushed, `serving_copy` (the `assets.extra` folder of the served version holding a copy)."""

    TYPE_NAME = "components.ModelCard"


__all__ = ["ModelCard"]
