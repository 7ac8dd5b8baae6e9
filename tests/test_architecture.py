"""The import rules of docs/architecture.md, checked on the source (every import, also those inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("mammo_tfx", "trainer_module", "components", "pipeline")

BASE = "names/options/storage/lesion_classes"
LIBRARIES = ("ingest", "patches", "evaluation", "serving", "synth", "example_files", "monitoring")
# unit -> the units it may import (besides itself), as docs/architecture.md states them.
ALLOWED = {
    BASE: set(),
    "ingest": {BASE},
    "patches": {BASE},
    "synth": {BASE},
    "evaluation": {BASE, "serving"},
    "serving": {BASE, "example_files"},
    "example_files": {BASE},
    "monitoring": {BASE, "ingest", "serving"},
    "report": {BASE, "evaluation", "monitoring"},
    "predict": {BASE, "ingest", "serving", "evaluation"},
    "trainer_module": {BASE, *LIBRARIES},
    "components": {BASE, *LIBRARIES, "report", "predict", "trainer_module"},
    "pipeline": {BASE, *LIBRARIES, "report", "predict", "trainer_module", "components"},
    "cli": {BASE, *LIBRARIES, "report", "predict", "trainer_module", "components", "pipeline"},
}
_MAMMO_TFX_UNITS = {
    "names": BASE, "options": BASE, "storage": BASE, "lesion_classes": BASE,
    "ingest": "ingest", "patches": "patches", "evaluation": "evaluation", "serving": "serving", "synth": "synth",
    "example_files": "example_files", "monitoring": "monitoring", "report": "report", "predict": "predict", "predict_overlay": "predict",
    "cli": "cli",
}


def unit_of(module: str) -> str:
    """The architecture unit of a dotted module name of this project."""
    parts = module.split(".")
    if parts[0] != "mammo_tfx":
        return parts[0]
    if len(parts) == 1:
        return BASE  # the package itself holds nothing
    if parts[1] not in _MAMMO_TFX_UNITS:
        raise AssertionError(f"mammo_tfx.{parts[1]} has no place in docs/architecture.md; add it there and here")
    return _MAMMO_TFX_UNITS[parts[1]]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in PROJECT_PACKAGES:  # `from mammo_tfx import names`: the imported names are modules
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT_PACKAGES]


def _source_files() -> list[Path]:
    return sorted(path for package in PROJECT_PACKAGES for path in (REPO / package).rglob("*.py"))


def test_every_import_follows_the_layers() -> None:
    violations = []
    for path in _source_files():
        importer = unit_of(_module_name(path))
        for line, imported in _imported_modules(ast.parse(path.read_text(), str(path))):
            target = unit_of(imported)
            if target != importer and target not in ALLOWED[importer]:
                violations.append(f"{path.relative_to(REPO)}:{line} ({importer}) imports {imported} ({target})")
    assert not violations, "imports against docs/architecture.md:\n" + "\n".join(violations)


def test_units_of_the_rules() -> None:
    assert unit_of("mammo_tfx.names") == BASE
    assert unit_of("mammo_tfx.ingest.layouts.cbis_ddsm") == "ingest"
    assert unit_of("mammo_tfx.predict_overlay") == "predict"
    assert unit_of("trainer_module.export") == "trainer_module"
    with pytest.raises(AssertionError, match="mammo_tfx.nowhere"):
        unit_of("mammo_tfx.nowhere")


def test_nested_imports_are_seen() -> None:
    tree = ast.parse("def f():\n    from pipeline.config import load_config\n    from mammo_tfx import names\n")
    assert _imported_modules(tree) == [(2, "pipeline.config"), (3, "mammo_tfx.names")]


def test_kfp_is_not_a_package() -> None:
    # A kfp/__init__.py would shadow the kfp library for everything run from the repository root.
    assert not (REPO / "kfp" / "__init__.py").exists()
    assert not list((REPO / "kfp").glob("*.py"))
