"""The "log in" hint speaks the way the user runs us, and says "again" only when it is again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exactonline_api.connect import token_manager_from_config
from exactonline_api.errors import ReauthorizationRequired

MELTANO_VARS = ("MELTANO_PROJECT_ROOT", "MELTANO_ENVIRONMENT", "MELTANO_EXTRACTOR_NAME")


def _first_login_error(tmp_path) -> str:
    # An empty store and no refresh_token: the manager gives up before any HTTP call.
    config = {"client_id": "x", "client_secret": "y", "token_store": str(tmp_path / "tokens.json")}
    with pytest.raises(ReauthorizationRequired) as caught:
        token_manager_from_config(config, "http://127.0.0.1:9").access_token()
    return str(caught.value)


def test_a_first_login_outside_meltano(tmp_path, monkeypatch):
    for name in MELTANO_VARS:
        monkeypatch.delenv(name, raising=False)
    message = _first_login_error(tmp_path)
    assert message.endswith("Run `tap-exactonline auth --config <your config.json>` to log in to Exact Online.")
    assert "again" not in message


def test_inside_meltano_the_hint_is_meltano_invoke(tmp_path, monkeypatch):
    # What Meltano sets for a plugin it runs (meltano.core.project.Project.env, info_env).
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("MELTANO_ENVIRONMENT", "prod")
    monkeypatch.setenv("MELTANO_EXTRACTOR_NAME", "tap-exactonline-hourly")
    message = _first_login_error(tmp_path)
    assert "Run `meltano --environment=prod invoke tap-exactonline-hourly:auth` to log in to Exact Online." in message


def test_a_lost_token_says_again(monkeypatch):
    for name in MELTANO_VARS:
        monkeypatch.delenv(name, raising=False)
    message = str(ReauthorizationRequired("Exact refused the refresh token (invalid_grant)"))
    assert message.endswith("to log in to Exact Online again.")


def test_help_says_how_to_log_in():
    proc = subprocess.run([str(Path(sys.executable).parent / "tap-exactonline"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "tap-exactonline auth --config FILE" in proc.stdout
    assert "meltano invoke tap-exactonline:auth" in " ".join(proc.stdout.split())
