"""The folders of pipeline/ are layers, and each may import only the layers below it: the pure
model below all I/O, making a release (publishing) and consuming one (consume) independent of
each other, the command line on top. Read from the source with `ast`, so a forbidden import
fails here before anyone runs it; a new module at the top of pipeline/ fails too (it belongs in
a layer). The table is README.md's "Layout"."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"

# layer -> the layers it may import (itself always); None: anything
ALLOWED: dict[str, set[str] | None] = {
    "core": set(),
    "model": {"core"},
    "registry": {"core"},
    "boot": {"core"},
    "trust": {"core", "model", "registry"},
    "shared": {"core", "model", "registry", "trust"},
    "publishing": {"core", "model", "registry", "boot", "trust", "shared"},
    "consume": {"core", "model", "registry", "boot", "trust", "shared"},
    "cli": None,
}
TOP_LEVEL = {"__init__.py", "__main__.py"}  # the package and `python -m pipeline`


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, package: Path = PACKAGE) -> set[str]:
    """The pipeline modules (or packages) a file imports, lazily or not, absolute or relative."""
    name = module_name(path, package)
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here[: len(here) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            # `from pipeline import core` names a layer, `from pipeline.core import x` is core's
            found.update(f"{base}.{a.name}" if base == "pipeline" else base for a in node.names)
    return {m for m in found if m == "pipeline" or m.startswith("pipeline.")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if len(relative.parts) == 1:
            if relative.name not in TOP_LEVEL:
                found.append(
                    f"pipeline/{relative}: a module at the top of pipeline/ (put it "
                    f"in the layer it belongs to: {', '.join(ALLOWED)})"
                )
            continue
        layer = relative.parts[0]
        if layer not in ALLOWED:
            found.append(f"pipeline/{relative}: {layer}/ is no layer this test knows")
            continue
        allowed = ALLOWED[layer]
        if allowed is None:
            continue
        for module in sorted(imported(path, package)):
            target = layer_of(module)
            if target != layer and target not in allowed:
                found.append(f"pipeline/{relative} ({layer}) imports {module} ({target})")
    return found


def test_each_layer_imports_only_the_layers_below_it() -> None:
    assert violations() == []


def test_every_folder_of_pipeline_is_a_layer() -> None:
    # a folder holding no source (a checkout's leftover __pycache__ after a move) is no layer
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.rglob("*.py"))}
    assert folders == set(ALLOWED), "a folder of pipeline/ the layer table does not name"


def test_publishing_and_consume_are_independent() -> None:
    """The principle the table keeps, stated on its own: neither side imports the other."""
    for side, other in (("publishing", "consume"), ("consume", "publishing")):
        allowed = ALLOWED[side]
        assert allowed is not None and other not in allowed and "cli" not in allowed


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("model/x.py", "from pipeline.shared.context import Context\n", "imports pipeline.shared"),
        (
            "consume/x.py",
            "def f() -> None:\n    from pipeline.publishing import tags\n",
            "(consume) imports pipeline.publishing (publishing)",
        ),
        ("core/x.py", "from pipeline import model\n", "(core) imports pipeline.model"),
        ("publishing/x.py", "from ..consume import pull\n", "imports pipeline.consume"),
        ("x.py", "", "a module at the top of pipeline/"),
        ("extra/x.py", "", "extra/ is no layer"),
    ],
)
def test_a_forbidden_import_or_a_stray_module_fails(
    tmp_path: Path, where: str, source: str, expected: str
) -> None:
    """The check on a copy of the package with one bad file added: it names that file."""
    package = tmp_path / "pipeline"
    for path in PACKAGE.rglob("*.py"):
        copy = package / path.relative_to(PACKAGE)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text())
    bad = package / where
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(source)
    (found,) = violations(package)
    assert found.startswith(f"pipeline/{where}") and expected in found, found
