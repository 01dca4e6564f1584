"""Meltano itself reads the shipped project offline (no Hub), in a temporary copy."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.project import shipped_project

pytestmark = pytest.mark.e2e

PLUGINS = {"extractors": {"tap-exactonline", "tap-exactonline-hourly", "tap-spreadsheets"},
           "loaders": {"target-postgres", "target-exactonline"}, "utilities": {"dbt-postgres"}}


def test_meltano_compiles_the_project_offline(meltano_bin, tmp_path):
    """One `meltano compile` resolves every plugin and setting of every environment; a plugin
    that needed Meltano Hub would fail it (nothing but PyPI is reachable here)."""
    project = shipped_project(tmp_path)
    env = {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([str(meltano_bin), "compile", "--no-lint", "--directory", "manifests"], cwd=project,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    prod = json.loads((project / "manifests" / "meltano-manifest.prod.json").read_text())
    for kind, names in PLUGINS.items():
        plugins = {p["name"]: p for p in prod["plugins"][kind]}
        assert names <= set(plugins), kind
        for name in names:
            assert plugins[name].get("settings") or plugins[name].get("inherit_from") in plugins, name
    tap = next(p for p in prod["plugins"]["extractors"] if p["name"] == "tap-exactonline")
    assert tap["config"]["client_secret"] == "${EXACT_CLIENT_SECRET}"  # the prod environment's config
    assert {"exact-to-warehouse-daily", "exact-transaction-lines-hourly"} <= {s["name"] for s in prod["schedules"]}
