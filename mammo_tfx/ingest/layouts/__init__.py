"""Listers: dataset root -> ScanRecords (and QuarantineEntries for records that cannot be listed).

A lister raises BadInputError only when the root itself is unusable (no CSV/Info.txt/class folders);
problems of single records come back as QuarantineEntry items so the other records go on.
"""
from __future__ import annotations

from typing import Callable, Iterator, Union

from mammo_tfx.ingest.layouts.cbis_ddsm import list_cbis_ddsm
from mammo_tfx.ingest.layouts.folder import list_folder
from mammo_tfx.ingest.layouts.inbreast import list_inbreast
from mammo_tfx.ingest.layouts.mias import list_mias
from mammo_tfx.ingest.layouts.rsna import list_rsna
from mammo_tfx.ingest.layouts.vindr import list_vindr
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.records import QuarantineEntry, ScanRecord

Lister = Callable[[str, IngestOptions], Iterator[Union[ScanRecord, QuarantineEntry]]]

LISTERS: dict[str, Lister] = {
    "cbis-ddsm": list_cbis_ddsm,
    "inbreast": list_inbreast,
    "mias": list_mias,
    "folder": list_folder,
    "rsna": list_rsna,
    "vindr": list_vindr,
}


def list_records(layout: str, root: str, options: IngestOptions) -> Iterator[Union[ScanRecord, QuarantineEntry]]:
    """LISTERS[layout] with a clear error for an unknown layout name."""
    if layout not in LISTERS:
        raise ValueError(f"unknown dataset layout {layout!r}; known: {sorted(LISTERS)}")
    return LISTERS[layout](root, options)
