"""Synthetic mammogram phantoms written in the on-disk layout of CBIS-DDSM, INbreast, MIAS, RSNA or VinDr-Mammo.

The ingestion readers read these folders with the same code as the real downloads; the returned
``SynthSummary`` says what was written (labels, lesions, injected faults) so that tests can check them.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from mammo_tfx.synth.cbis_ddsm import write_cbis_ddsm
from mammo_tfx.synth.inbreast import write_inbreast
from mammo_tfx.synth.mias import write_mias
from mammo_tfx.synth.rsna import write_rsna
from mammo_tfx.synth.summary import FAULT_KINDS, SynthFault, SynthImage, SynthLesion, SynthSummary
from mammo_tfx.synth.vindr import write_vindr

LAYOUTS: tuple[str, ...] = ("cbis-ddsm", "inbreast", "mias", "rsna", "vindr")

_WRITERS: dict[str, Callable[[str, int, int, bool, float], SynthSummary]] = {
    "cbis-ddsm": write_cbis_ddsm,
    "inbreast": write_inbreast,
    "mias": write_mias,
    "rsna": write_rsna,
    "vindr": write_vindr,
}

__all__ = ["FAULT_KINDS", "LAYOUTS", "SynthFault", "SynthImage", "SynthLesion", "SynthSummary", "generate"]


def generate(
    layout: str,
    out_dir: str | os.PathLike,
    patients: int,
    seed: int,
    inject_faults: bool = False,
    scale: float = 1.0,
    download_layout: str | None = None,
) -> SynthSummary:
    """Write a synthetic dataset of ``patients`` patients in ``layout``'s own folder layout under ``out_dir``.

    The same arguments always give the same bytes. ``inject_faults`` adds a few extra, deliberately broken
    records (listed in ``SynthSummary.faults``) without changing the others' pixels. ``scale`` shrinks the
    image sizes (for tests); MIAS images stay 1024x1024 whatever the scale. ``download_layout`` (CBIS-DDSM only)
    is how TCIA's retriever laid the files out: "csv" (default: where the CSVs say), "classic" or "descriptive".
    """
    if layout not in _WRITERS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.05 <= scale <= 4.0:
        raise ValueError(f"scale must be in [0.05, 4], got {scale}")
    if download_layout is not None and layout != "cbis-ddsm":
        raise ValueError(f"download_layout applies to cbis-ddsm only, not {layout!r}")
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    if download_layout is not None:
        return write_cbis_ddsm(out, patients, seed, inject_faults, scale, download_layout=download_layout)
    return _WRITERS[layout](out, patients, seed, inject_faults, scale)
