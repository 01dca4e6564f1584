"""The Meltano project as we ship it, apart from the user's working copy.

Users edit ``meltano.yml`` (``meltano select`` adds streams, as our docs suggest), so the
project tests read the version git would commit: the index (what is staged), falling back
to the file itself outside a git checkout. Meltano commands run in a temporary copy, so
they never write into the user's project either.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def shipped_meltano_yml() -> str:
    try:
        proc = subprocess.run(["git", "show", ":meltano.yml"], cwd=ROOT, capture_output=True, text=True,
                              timeout=30)
    except OSError:  # no git on this machine
        proc = None
    if proc is not None and proc.returncode == 0:
        return proc.stdout
    return (ROOT / "meltano.yml").read_text()


def shipped_project_config() -> dict:
    return yaml.safe_load(shipped_meltano_yml())


def shipped_project(tmp: Path) -> Path:
    """A directory holding a copy of the shipped meltano.yml, to run Meltano in."""
    project = tmp / "project"
    project.mkdir()
    (project / "meltano.yml").write_text(shipped_meltano_yml())
    return project
