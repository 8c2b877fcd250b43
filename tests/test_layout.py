"""The package's architecture, read from its source: imports flow one way (core up to cli), and every
module stays one idea (about 300 lines at most). Reads the checkout's files, imports nothing."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_toponets"
# A package may import only from packages of a lower level (same-package imports are free).
LEVELS = {"core": 0, "evaluation": 1, "hub": 1, "conversion": 2, "analysis": 3, "training": 4, "cli": 5}
MAX_LINES = 330


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)  # the top-level __init__ re-exports all


def imported_packages(source: str, rel: tuple[str, ...]) -> set[tuple[str, int]]:
    """``{(subpackage, line)}`` of every hf_toponets import in ``source``, a module of the package
    ``rel`` (e.g. ``("analysis",)``); imports inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = list(rel[: len(rel) - (node.level - 1)]) if node.level - 1 <= len(rel) else None
                assert base is not None, f"line {node.lineno}: import above hf_toponets"
                parts = base + (node.module.split(".") if node.module else [n.name for n in node.names][:1])
            elif node.module and node.module.split(".")[0] == "hf_toponets":
                parts = node.module.split(".")[1:] or [n.name for n in node.names][:1]
            else:
                continue
            found.add((parts[0] if parts else "", node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "hf_toponets":
                    found.add(((alias.name.split(".") + [""])[1], node.lineno))
    return found


def test_every_module_lives_in_a_known_package():
    assert {p.relative_to(PACKAGE).parts[0] for p in modules()} <= set(LEVELS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_flow_upward(path):
    own = path.relative_to(PACKAGE).parts[0]
    found = imported_packages(path.read_text(), path.relative_to(PACKAGE).parts[:-1])
    upward = [f"line {line}: imports {pkg or 'the top level'}" for pkg, line in found
              if pkg != own and (pkg not in LEVELS or LEVELS[pkg] > LEVELS[own])]
    assert not upward, f"{own} (level {LEVELS[own]}) may only import lower levels {LEVELS}: {upward}"


@pytest.mark.parametrize("path", [p for p in modules() if p.relative_to(PACKAGE).parts[0] in ("core", "analysis")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_and_analysis_never_import_the_trainer(path):
    text = path.read_text()
    assert "import Trainer" not in text and "transformers.Trainer" not in text.replace("``transformers.Trainer``", "")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path.name} grew past {MAX_LINES} lines: two ideas?"


@pytest.mark.parametrize("source, found", [
    ("def f():\n    from ..training.trainer import TopoTrainer\n", {("training", 2)}),
    ("from .. import cli\n", {("cli", 1)}),
    ("from hf_toponets.hub.push import push_folder\n", {("hub", 1)}),
    ("import hf_toponets.analysis.plots\n", {("analysis", 1)}),
    ("from .sheet import sheet_shape\nimport torch\n", {("core", 1)}),
])
def test_the_checker_resolves_every_import_form(source, found):
    """The checker's own oracle: hand-resolved imports of a module placed in core/."""
    assert imported_packages(source, ("core",)) == found


def test_public_names_resolve_to_their_modules():
    """Every lazily exported name is the object its module defines (a typo in the table fails here)."""
    import importlib

    import hf_toponets

    for name, module in hf_toponets._EXPORTS.items():
        assert getattr(hf_toponets, name) is getattr(importlib.import_module(f"hf_toponets.{module}"), name)
    assert set(hf_toponets.__all__) == {"__version__", *hf_toponets._EXPORTS}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hf_toponets.nope  # noqa: B018


def test_help_imports_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = "import sys, hf_toponets.cli as c; c.build_parser(); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)  # the checkout's hf_toponets (cwd first on sys.path)
    assert out.stdout.strip() == "[]"
