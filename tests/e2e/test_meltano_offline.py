"""Meltano itself reads the shipped project offline (no Hub), in a temporary copy."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.project import shipped_project

pytestmark = pytest.mark.e2e


def test_meltano_reads_the_project_offline(meltano_bin, tmp_path):
    """Meltano itself accepts the file: every plugin's settings list without the Hub."""
    project = shipped_project(tmp_path)
    env = {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def meltano(*args: str) -> str:
        proc = subprocess.run([str(meltano_bin), *args], cwd=project, capture_output=True, text=True,
                              timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    for name in ("tap-exactonline", "tap-exactonline-hourly", "tap-spreadsheets", "target-postgres",
                 "target-exactonline"):
        meltano("--environment=prod", "config", "list", name)
    listed = meltano("schedule", "list", "--format=json")
    job_names = {s["name"] for s in json.loads(listed[listed.index("{"):])["schedules"]["job"]}
    assert {"exact-to-warehouse-daily", "exact-transaction-lines-hourly"} <= job_names
