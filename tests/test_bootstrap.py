"""scripts/bootstrap.py: the project's own modules compiled to bytecode (compile_project)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
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
    module = tmp_path / "tap_exactonline" / "mod.py"
    module.parent.mkdir()
    module.write_text("VALUE = 1\n")
    elsewhere = tmp_path / "venv" / "lib" / "site.py"  # a user's venv beside the project: not its modules
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_text("X = 1\n")

    bootstrap.compile_project(tmp_path)
    assert pyc_is_current(module)
    assert not pyc_of(elsewhere).exists()

    module.write_text("VALUE = 22\n")
    os.utime(module, (1_700_000_000, 1_700_000_000))
    assert not pyc_is_current(module)
    bootstrap.compile_project(tmp_path)
    assert pyc_is_current(module)


def test_the_sources_are_every_module_of_the_checkout():
    """A new folder of modules that PROJECT_DIRS misses would go uncompiled: this names it."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=bootstrap.ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    sources = {str(path.relative_to(bootstrap.ROOT)) for path in bootstrap.project_sources()}
    assert set(tracked) <= sources, sorted(set(tracked) - sources)
