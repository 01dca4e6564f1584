"""Helpers for the token and auth tests: a throw-away PostgreSQL database, a fake Exact token
endpoint for unit tests, and driving `tap-exactonline auth` like a person with a browser.
The worker process of the multi-process tests lives in tests/tokens_worker.py."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.tokens_worker import worker_command  # noqa: F401  (re-exported for the tests)


@pytest.fixture
def pg_url(pg_admin_dsn):
    """A fresh database (unique name) on the test PostgreSQL (tests/pg.py); dropped afterwards."""
    from tests.pg import throwaway_database

    with throwaway_database(pg_admin_dsn, "exact_tokens_test") as url:
        yield url


class Clock:
    """A clock the test moves by hand (``clock.t += 600``)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def store_with_tokens(path: Path, client_id: str, *, lock_timeout: float = 5):
    """A clock, a FakeExact on it and a file store holding a pair it just issued."""
    from exactonline_api.tokens import FileTokenStore

    clock = Clock()
    fake = FakeExact(clock=clock)
    store = FileTokenStore(path, client_id=client_id, lock_timeout=lock_timeout)
    with store.locked():
        store.write(fake.mint())
    return clock, fake, store


class FakeExact:
    """Exact's token rules in memory: rotation, the too-early window, expiry. Thread-safe.

    Stands in for the OAuthClient in unit tests of TokenManager (the sandbox covers the real HTTP).
    """

    def __init__(self, *, lifetime: float = 600, too_early: float = 570, clock=time.time) -> None:
        from exactonline_api.tokens import TokenSet

        self.TokenSet = TokenSet
        self.lifetime = lifetime
        self.too_early = too_early
        self.clock = clock
        self.base_url = "https://fake.exact"
        self.lock = threading.Lock()
        self.serial = 0
        self.live_refresh: str | None = None
        self.last_issue = -1e18
        self.calls: list[str] = []  # outcome of every refresh call
        self.delay = 0.0
        self.revoked = False

    def _new(self):
        self.serial += 1
        now = self.clock()
        self.last_issue = now
        refresh = f"fake-refresh-{self.serial:04d}-{uuid.uuid4().hex}"
        self.live_refresh = refresh
        return self.TokenSet(f"fake-access-{self.serial:04d}-{uuid.uuid4().hex}", now + self.lifetime, refresh, now)

    def mint(self):
        with self.lock:
            return self._new()

    def refresh(self, refresh_token: str):
        from exactonline_api.errors import InvalidGrant, OldRefreshTokenUsed, RefreshTooEarly

        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            if self.revoked:
                self.calls.append("revoked")
                raise InvalidGrant("Exact rejected the refresh token (HTTP 400 invalid_grant)", status=400,
                                   error="invalid_grant")
            if refresh_token != self.live_refresh:
                self.calls.append("old")
                raise OldRefreshTokenUsed("old", status=401, error="unauthorized_client",
                                          description="Old refresh token used.")
            if self.clock() - self.last_issue < self.too_early:
                self.calls.append("early")
                raise RefreshTooEarly("early", status=400, error="access_denied",
                                      description="Rate limit exceeded: access_token not expired")
            self.calls.append("ok")
            return self._new()


REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# Driving `tap-exactonline auth` like a person with a browser would
# --------------------------------------------------------------------------------------------------


def write_auth_config(tmp_path: Path, sandbox, **extra) -> Path:
    config = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "base_url": sandbox.url,
        "redirect_uri": extra.pop("redirect_uri", "https://example.com/callback"),
        "token_store": extra.pop("token_store", str(tmp_path / "tokens.json")),
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def consent(url: str) -> str:
    """What the browser does: open the consent URL and return where Exact redirects to."""
    import requests

    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code in (301, 302, 303, 307), (response.status_code, response.text[:200])
    return response.headers["Location"]


class AuthProcess:
    """The installed ``tap-exactonline auth --config ...`` command, with pipes for the person's side."""

    def __init__(self, config: Path, *args: str) -> None:
        import subprocess

        command = Path(sys.executable).with_name("tap-exactonline")
        self.proc = subprocess.Popen(
            [str(command), "auth", "--config", str(config), *args],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []

    def consent_url(self, base_url: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.strip().startswith(f"{base_url}/api/oauth2/auth?"):
                return line.strip()
        self.proc.kill()
        raise AssertionError(f"no consent URL printed: {self.lines} {self.proc.stderr.read()}")

    def finish(self, stdin_text: str = "") -> tuple[int, str, str]:
        # Not communicate(): it reads the raw pipe and would skip what readline() already buffered.
        if stdin_text:
            self.proc.stdin.write(stdin_text)
        self.proc.stdin.close()
        err_chunks: list[str] = []
        reader = threading.Thread(target=lambda: err_chunks.append(self.proc.stderr.read()), daemon=True)
        reader.start()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        reader.join(10)
        return self.proc.returncode, "".join(self.lines) + out, "".join(err_chunks)


def authorize_by_paste(sandbox, config: Path) -> tuple[int, str, str, str]:
    """The whole paste flow; returns (exit code, stdout, stderr, the authorization code used)."""
    from urllib.parse import parse_qs, urlsplit

    run = AuthProcess(config, "--paste")
    redirected = consent(run.consent_url(sandbox.url))
    code, out, err = run.finish(redirected + "\n")
    return code, out, err, parse_qs(urlsplit(redirected).query)["code"][0]

