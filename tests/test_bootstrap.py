"""scripts/bootstrap.py: the project's own modules compiled to bytecode (compile_project)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from scripts import bootstrap


def pyc_of(source: Path) -> Path:
    return Path(importlib.util.cache_from_source(str(source)))


def pyc_is_current(source: Path) -> bool:
    """A timestamp .pyc holds the source's mtime and size (bytes 8-16): what the importer checks."""
    header = pyc_of(source).read_bytes()[8:16]
    st = source.stat()
    return header == (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")


def test_the_project_modules_are_compiled_and_a_changed_one_again(tmp_path):
    module = tmp_path / "pkg" / "mod.py"
    module.parent.mkdir()
    module.write_text("VALUE = 1\n")
    hidden = tmp_path / ".venv" / "lib" / "site.py"  # the venvs have their own step (compile_bytecode)
    hidden.parent.mkdir(parents=True)
    hidden.write_text("X = 1\n")

    bootstrap.compile_project(tmp_path)
    assert pyc_is_current(module)
    assert not pyc_of(hidden).exists()

    module.write_text("VALUE = 22\n")
    os.utime(module, (1_700_000_000, 1_700_000_000))
    assert not pyc_is_current(module)
    bootstrap.compile_project(tmp_path)
    assert pyc_is_current(module)


def test_the_sources_are_the_checkouts_modules():
    sources = {str(path.relative_to(bootstrap.ROOT)) for path in bootstrap.project_sources()}
    assert {"tap_exactonline/tap.py", "target_exactonline/target.py", "exactonline_api/http.py",
            "exact_sandbox/__main__.py", "scripts/demo.py", "tests/conftest.py"} <= sources
    assert not any(name.startswith(".") or "__pycache__" in name for name in sources)
