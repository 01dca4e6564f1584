"""The layers stay one-way (CONTRIBUTING.md): imports point down, modules stay small, no import tricks."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("exactonline_api", "tap_exactonline", "target_exactonline")
MAX_LINES = 600


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, type-checking imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("*.py"))


@pytest.mark.parametrize("path", modules("exactonline_api"), ids=lambda p: p.name)
def test_the_shared_client_knows_nothing_of_tap_or_target(path):
    bad = {m for m in imported_modules(path) if m.split(".")[0] in ("tap_exactonline", "target_exactonline")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize(("package", "entry"), [("tap_exactonline", "tap"), ("target_exactonline", "target")])
def test_only_the_entry_point_imports_the_plugin_object(package, entry):
    offenders = [p.name for p in modules(package)
                 if p.name not in (f"{entry}.py", "__main__.py") and f"{package}.{entry}" in imported_modules(p)]
    assert not offenders, f"{offenders} import {package}/{entry}.py"


@pytest.mark.parametrize("path", [p for package in PACKAGES for p in modules(package)],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_modules_stay_under_600_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def project_files(suffix: str) -> list[Path]:
    """The project's files, not the venvs', plugins' or run folders' (never walked into: they hold
    tens of thousands of files)."""
    skip = {".venv", ".venv-meltano", ".venv-orchestrate", ".meltano", ".git", ".demo", "__pycache__"}
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in skip]
        found += [Path(folder, name) for name in files if name.endswith(suffix)]
    return found


def test_no_sys_path_edits_anywhere():
    files = project_files(".py")
    assert ROOT / "tap_exactonline" / "tap.py" in files  # the walk reaches the packages
    offenders = [str(p.relative_to(ROOT)) for p in files if p.name != "test_layers.py" and "sys.path" in p.read_text()]
    assert not offenders, offenders
