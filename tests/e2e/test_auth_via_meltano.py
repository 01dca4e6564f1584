"""`meltano invoke tap-exactonline:auth` (the command defined in meltano.yml) fills the token
store, and the main job then runs on that store alone, with no refresh token in the config."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_auth_command_through_meltano_then_sync_on_the_stored_tokens(meltano, exact, warehouse, tmp_path):
    # redirect_uri is a setting of the plugin in meltano.yml, here set the Meltano way.
    env = {**meltano.env, "EXACT_SANDBOX_REFRESH_TOKEN": "",
           "TAP_EXACTONLINE_REDIRECT_URI": "https://example.com/callback"}
    proc = subprocess.Popen(
        [str(meltano.bin), "--environment=demo", "invoke", "tap-exactonline:auth", "--paste"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    consent_url = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith(f"{exact.url}/api/oauth2/auth?"):
            consent_url = line.strip()
            break
    if consent_url is None:
        proc.kill()
        pytest.fail(f"no consent URL printed:\n{''.join(lines)}\n{proc.stderr.read()[-3000:]}", pytrace=False)
    # The browser: the sandbox consents at once and redirects with a code.
    answer = requests.get(consent_url, allow_redirects=False, timeout=10)
    assert answer.status_code in (301, 302, 303, 307), answer.text[:300]
    out, err = proc.communicate(answer.headers["Location"] + "\n", timeout=60)
    assert proc.returncode == 0, (out + err)[-3000:]
    assert (tmp_path / "tokens.json").exists()
    for division in exact.divisions:
        assert str(division) in out

    # The sync needs nothing but the store now.
    run = meltano("run", "exact-transaction-lines-hourly", env={"EXACT_SANDBOX_REFRESH_TOKEN": ""})
    assert run.record_counts().get("transaction_lines", 0) > 0
    assert warehouse.count("transaction_lines") > 0
