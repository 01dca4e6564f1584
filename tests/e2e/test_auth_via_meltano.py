"""`meltano invoke tap-exactonline:auth` (the command defined in meltano.yml) fills the token
store, and the hourly job then runs on that store alone, with no refresh token in the config: it
syncs only the transaction lines, all of them, with a state of its own."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from tests.e2e.compare import diff_rows
from tests.e2e.conftest import ROOT
from tests.e2e.test_main_job import sandbox_rows, selected_streams

pytestmark = pytest.mark.e2e


def test_auth_command_through_meltano_then_the_hourly_job_on_the_stored_tokens(meltano, exact, warehouse, tmp_path):
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
    assert selected_streams("tap-exactonline-hourly") == ["transaction_lines"]
    run = meltano("run", "exact-transaction-lines-hourly", env={"EXACT_SANDBOX_REFRESH_TOKEN": ""})
    assert warehouse.tables() == {"transaction_lines"}
    assert set(run.record_counts()) == {"transaction_lines"}
    problems = diff_rows("transaction_lines", sandbox_rows(exact, "transaction_lines"),
                         warehouse.rows("transaction_lines"))
    assert not problems, "\n".join(problems)

    # Its state is its own: the main job has none, so it still starts from scratch.
    state_ids = meltano("state", "list").output
    assert "demo:tap-exactonline-hourly-to-target-postgres" in state_ids
    assert "demo:tap-exactonline-to-target-postgres" not in state_ids
