"""A dead refresh token ends the run with one clear line and leaves the store as it was."""

from __future__ import annotations

import time

import pytest

from tests.tokens_support import REPO_ROOT, worker_command  # noqa: F401


def _run(sandbox, store, **kw):
    import json
    import subprocess

    proc = subprocess.run(
        worker_command(base_url=sandbox.url, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
                       store=store, calls=1, division=sandbox.divisions[0], **kw),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_dead_refresh_token_fails_clearly_and_keeps_the_store(how, sandbox_factory, tmp_path):
    sandbox = sandbox_factory(access_token_lifetime=1, refresh_too_early_seconds=0.9, refresh_token_lifetime=2)
    store = tmp_path / "tokens.json"
    code, result, err = _run(sandbox, store, seed=sandbox.mint_refresh_token())
    assert code == 0, err
    if how == "revoked":
        sandbox.admin("POST", "/oauth/revoke", {})
        time.sleep(1.1)
    else:
        time.sleep(2.2)  # past the refresh token's life (2 s here, 30 days at Exact)
    before = store.read_bytes()
    code, result, err = _run(sandbox, store)
    assert code == 1 and result["calls"] == 0
    (message,) = result["errors"]
    assert message.startswith(("RefreshTokenExpired: " if how == "expired" else "ReauthorizationRequired: "))
    assert ("has expired" if how == "expired" else "no longer accepts the stored refresh token") in message
    assert message.endswith("Run `tap-exactonline auth --config <your config.json>` to log in to Exact Online again.")
    assert store.read_bytes() == before
    calls = [r for r in sandbox.requests() if r["path"] == "oauth2/token"]
    assert [c["status"] for c in calls] == [200, 400]  # one refused try, no retry
